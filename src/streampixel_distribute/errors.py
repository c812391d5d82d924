"""The error tree: one class per cause, each with a title, a fix, an exit code and an output kind.

Every expected failure is one of these; `cli.main` is the one place that catches them, reports
them and turns them into an exit code. Anything else is a bug: `InternalError`, exit 1.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar, NamedTuple


class ErrorKind(StrEnum):
    """The `error` output: one word per cause, part of the public contract."""

    INVALID_INPUT = "invalid-input"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not-found"
    NOT_READY = "not-ready"
    RATE_LIMITED = "rate-limited"
    SERVER_ERROR = "server-error"
    NETWORK_ERROR = "network-error"
    LEDGER_ERROR = "ledger-error"
    CANCELLED = "cancelled"
    INTERNAL_ERROR = "internal-error"
    WEBHOOK_FAILED = "webhook-failed"  # test-webhook only
    QUEUE_ERROR = "queue-error"  # the listener's queue


class Problem(NamedTuple):
    """One thing wrong with one input: which input, what is wrong, how to fix it."""

    input: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"`{self.input}`: {self.message} Fix: {self.fix}"


class DistributeError(Exception):
    """Base of every expected failure. Text given here must already be free of secrets."""

    kind: ClassVar[ErrorKind] = ErrorKind.INTERNAL_ERROR
    exit_code: ClassVar[int] = 1
    default_title: ClassVar[str] = "Failed"
    default_hint: ClassVar[str] = ""

    def __init__(
        self,
        detail: str,
        *,
        title: str | None = None,
        hint: str | None = None,
        http_status: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.title = title or self.default_title
        self.hint = hint if hint is not None else self.default_hint
        self.http_status = http_status
        self.server_message = server_message
        # Set by the API client: may a retry help, and may the request have reached the server
        # (then the call may have used the account's rate-limit window)?
        self.retryable = False
        self.reached_server = False

    def __str__(self) -> str:
        return f"{self.title}: {self.detail}"

    @property
    def code(self) -> int:
        """The process exit code."""
        return self.exit_code


class InvalidInput(DistributeError):
    kind = ErrorKind.INVALID_INPUT
    exit_code = 2
    default_title = "Invalid input"

    def __init__(self, problems: list[Problem], *, title: str | None = None,
                 http_status: int | None = None, server_message: str | None = None) -> None:
        self.problems = list(problems)
        detail = "; ".join(str(p) for p in self.problems)
        hint = " ".join(p.fix for p in self.problems)
        super().__init__(detail, title=title, hint=hint, http_status=http_status,
                         server_message=server_message)


class Unauthorized(DistributeError):
    kind = ErrorKind.UNAUTHORIZED
    exit_code = 3
    default_title = "Unauthorized"


class Forbidden(DistributeError):
    kind = ErrorKind.FORBIDDEN
    exit_code = 3
    default_title = "Access denied"


class NotFound(DistributeError):
    kind = ErrorKind.NOT_FOUND
    exit_code = 4
    default_title = "Not found"


class NotReady(DistributeError):
    kind = ErrorKind.NOT_READY
    exit_code = 4
    default_title = "Build not ready"


class RateLimited(DistributeError):
    kind = ErrorKind.RATE_LIMITED
    exit_code = 5
    default_title = "Rate limit: no slot within max-wait"

    def __init__(self, detail: str, *, eta: float | None = None, **kwargs: object) -> None:
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
        self.eta = eta


class ServerError(DistributeError):
    kind = ErrorKind.SERVER_ERROR
    exit_code = 6
    default_title = "Streampixel server error"


class NetworkError(DistributeError):
    kind = ErrorKind.NETWORK_ERROR
    exit_code = 6
    default_title = "Network error"


class LedgerError(DistributeError):
    kind = ErrorKind.LEDGER_ERROR
    exit_code = 7
    default_title = "Rate-limit ledger unavailable"


class WebhookNotDelivered(DistributeError):
    """test-webhook: Streampixel reached no receiver, or it did not answer 2xx."""

    kind = ErrorKind.WEBHOOK_FAILED
    exit_code = 8
    default_title = "Webhook test failed"


class QueueError(DistributeError):
    """The listener's durable queue cannot be opened or written."""

    kind = ErrorKind.QUEUE_ERROR
    exit_code = 2
    default_title = "Queue unavailable"


class Cancelled(DistributeError):
    """The job was cancelled (SIGTERM/SIGINT). Exit code is 128 + the signal number."""

    kind = ErrorKind.CANCELLED
    default_title = "Cancelled"

    def __init__(self, signum: int, detail: str) -> None:
        super().__init__(detail, hint="The job was cancelled; nothing more was sent.")
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum


class InternalError(DistributeError):
    """An unexpected exception: a bug. Its text is scrubbed; a traceback only with --debug."""

    kind = ErrorKind.INTERNAL_ERROR
    exit_code = 1
    default_title = "Internal error (a bug)"
    default_hint = (
        "Please report it at https://github.com/streampixel-distribute/streampixel-distribute/"
        "issues with the log (run with RUNNER_DEBUG=1 or --debug for a traceback)."
    )
