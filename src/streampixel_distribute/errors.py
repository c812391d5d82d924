"""The error tree: one class per cause, each with a title, a fix, an exit code and an output kind.

Every expected failure is one of these; `cli.main` is the one place that catches them, reports
them and turns them into an exit code. Anything else is a bug (exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: which input, what is wrong, how to fix it."""

    input: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"`{self.input}`: {self.message} Fix: {self.fix}"


class DistributeError(Exception):
    """Base of every expected failure. Text given here must already be free of secrets."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1
    default_title: ClassVar[str] = "Distribution failed"
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


class InvalidInput(DistributeError):
    kind = "invalid-input"
    exit_code = 2
    default_title = "Invalid input"

    def __init__(self, problems: list[Problem], *, title: str | None = None) -> None:
        self.problems = list(problems)
        detail = "; ".join(str(p) for p in self.problems)
        hint = " ".join(p.fix for p in self.problems)
        super().__init__(detail, title=title, hint=hint)


class Unauthorized(DistributeError):
    kind = "unauthorized"
    exit_code = 3
    default_title = "Unauthorized"


class Forbidden(DistributeError):
    kind = "forbidden"
    exit_code = 3
    default_title = "Access denied"


class NotFound(DistributeError):
    kind = "not-found"
    exit_code = 4
    default_title = "Not found"


class NotReady(DistributeError):
    kind = "not-ready"
    exit_code = 4
    default_title = "Build not ready"


class RateLimited(DistributeError):
    kind = "rate-limited"
    exit_code = 5
    default_title = "Rate limit: no slot within max-wait"

    def __init__(self, detail: str, *, eta: float | None = None, **kwargs: object) -> None:
        super().__init__(detail, **kwargs)  # type: ignore[arg-type]
        self.eta = eta


class ServerError(DistributeError):
    kind = "server-error"
    exit_code = 6
    default_title = "Streampixel server error"


class NetworkError(DistributeError):
    kind = "network-error"
    exit_code = 6
    default_title = "Network error"


class LedgerError(DistributeError):
    kind = "ledger-error"
    exit_code = 7
    default_title = "Rate-limit ledger unavailable"


class Cancelled(DistributeError):
    """The job was cancelled (SIGTERM/SIGINT). Exit code is 128 + the signal number."""

    kind = "cancelled"
    default_title = "Cancelled"

    def __init__(self, signum: int, detail: str) -> None:
        super().__init__(detail, hint="The job was cancelled; nothing more was sent.")
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum


def exit_code_of(error: DistributeError) -> int:
    return error.code if isinstance(error, Cancelled) else error.exit_code
