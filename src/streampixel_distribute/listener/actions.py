"""What a queued delivery turns into: a distribute-file call or a GitHub repository_dispatch.

`distribute` goes through the same Coordinator and ledger as the action and the CLI, so the
listener and CI jobs of one account take turns on one rate limit (point both at the same ledger).
`dispatch` hands the event to a GitHub workflow: `client_payload` is the webhook body, which the
action reads to fill in `project-id` and `upload-id`.

Each returns an `Outcome`: done, failed (no retry can help), retry (transient; try again later)
or requeue (the listener is stopping and the item was not acted on).
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from ..answers import Result, TooManyRequests, excerpt
from ..api import HttpClient, StreampixelClient
from ..ci import origin
from ..commands import Distribute
from ..coordinator import Coordinator, Progress
from ..errors import Cancelled, DistributeError, InvalidInput, LedgerError, RateLimited
from ..ledger import Ledger
from ..ledger.queue import Holder
from ..redact import scrub
from ..settings import Account, target_for
from .log import JsonLog
from .metrics import Metrics
from .queue import Item

if TYPE_CHECKING:
    import requests

OutcomeState = Literal["done", "failed", "retry", "requeue"]


class Outcome(NamedTuple):
    """What became of a delivery: done, failed (no retry can help), retry (transient; try again
    later) or requeue (the listener is stopping and the item was not acted on)."""

    state: OutcomeState
    result: dict[str, Any]


class StopClock:
    """Real time, but a sleep ends at once with `Cancelled` when the listener is stopping."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if self.stop.is_set() or (seconds > 0 and self.stop.wait(seconds)):
            raise Cancelled(signal.SIGTERM, "the listener is stopping")

    def shield(self) -> None:
        """Nothing to shield: stopping ends sleeps only, never a ledger call in flight."""


class CountingClient(StreampixelClient):
    """Counts 429 answers for /metrics; the coordinator still handles them."""

    def __init__(self, api_url: str, *, timeout: float, metrics: Metrics) -> None:
        super().__init__(api_url, timeout=timeout)
        self.metrics = metrics

    def distribute(self, *, api_key: str, user_id: str, project_id: str, upload_id: str) -> Result:
        try:
            return super().distribute(api_key=api_key, user_id=user_id, project_id=project_id,
                                      upload_id=upload_id)
        except TooManyRequests:
            self.metrics.rate_limit_hit()
            raise


def error_result(exc: DistributeError) -> dict[str, Any]:
    return {"error": exc.kind.value, "title": scrub(exc.title), "detail": scrub(exc.detail),
            "hint": scrub(exc.hint), "http_status": exc.http_status}


class DistributeAction:
    kind = "distribute"

    def __init__(self, account: Account, *, ledger: Ledger, client: StreampixelClient,
                 clock: StopClock, metrics: Metrics, environ: Mapping[str, str]) -> None:
        self.account = account
        self.ledger = ledger
        self.client = client
        self.clock = clock
        self.metrics = metrics
        where = origin(environ)
        self.holder = Holder("", "listener", "", f"listener {where.text}", where.url)

    def run(self, item: Item, log: JsonLog) -> Outcome:
        try:
            target = target_for(self.account, project_id=item.project_id,
                                upload_id=item.upload_id)
        except InvalidInput as exc:
            return Outcome("failed", error_result(exc))
        progress = Progress()
        coordinator = Coordinator(self.account, ledger=self.ledger, clock=self.clock, log=log,
                                  progress=progress, holder=self.holder._replace(
                                      project=target.project_id))
        try:
            result = coordinator.run(Distribute(self.client, self.account, target))
        except Cancelled:
            self.metrics.waited(progress.waited)
            return Outcome("requeue", {"waited": round(progress.waited, 3)})
        except DistributeError as exc:
            self.metrics.waited(progress.waited)
            out = error_result(exc) | {"attempts": progress.attempts,
                                        "waited": round(progress.waited, 3)}
            # A slot beyond max-wait, an unreachable ledger or a persistent 5xx may all pass.
            transient = exc.retryable or isinstance(exc, (LedgerError, RateLimited))
            return Outcome("retry" if transient else "failed", out)
        self.metrics.waited(progress.waited)
        return Outcome("done", {
            "status": "triggered", "http_status": result.http_status,
            "message": scrub(result.message), "attempts": progress.attempts,
            "waited": round(progress.waited, 3),
        })


class DispatchAction(HttpClient):
    """`POST /repos/{owner}/{repo}/dispatches`; GitHub answers 204 No Content on success."""

    kind = "dispatch"

    def __init__(self, *, token: str, api_url: str, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        super().__init__(api_url, timeout=timeout, session=session)
        self.token = token

    def run(self, item: Item, log: JsonLog) -> Outcome:
        import requests  # noqa: PLC0415

        repository = str(item.rule.get("repository", ""))
        event_type = str(item.rule.get("event_type", ""))
        url = f"{self.api_url}/repos/{repository}/dispatches"
        payload = {"event_type": event_type, "client_payload": dict(item.body)}
        try:
            response = self.session.post(
                url, data=json.dumps(payload).encode(), timeout=self.timeout,
                allow_redirects=False,  # the token goes to the configured host only
                headers={
                    "Authorization": f"Bearer {self.token}",
                    "Accept": "application/vnd.github+json",
                    "X-GitHub-Api-Version": "2022-11-28",
                    "Content-Type": "application/json",
                },
            )
            status, text, headers = response.status_code, response.text[:4096], response.headers
        except requests.exceptions.RequestException as exc:
            return Outcome("retry", {"error": "network-error", "title": "GitHub unreachable",
                                     "detail": excerpt(str(exc), 160),
                                     "hint": "Usually transient; it will be retried."})
        message = ""
        try:
            parsed = json.loads(text) if text.strip() else {}
            if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
                message = scrub(parsed["message"])[:300]
        except ValueError:
            message = excerpt(text, 160)
        base = {"http_status": status, "repository": repository, "event_type": event_type,
                "message": message}
        if 200 <= status < 300:
            return Outcome("done", base | {"status": "dispatched"})
        hint = _DISPATCH_HINTS.get(status)
        rate_limited = status == 429 or (status == 403 and (
            headers.get("Retry-After") or headers.get("X-RateLimit-Remaining") == "0"))
        if rate_limited or status >= 500:
            return Outcome("retry", base | {
                "error": "rate-limited" if rate_limited else "server-error",
                "title": f"GitHub answered HTTP {status}",
                "hint": "Transient on GitHub's side; it will be retried."})
        return Outcome("failed", base | {
            "error": "dispatch-refused",
            "title": f"GitHub refused the repository_dispatch (HTTP {status})",
            "hint": (hint or "Check the repository name and the token.").format(
                repository=repository)})


_DISPATCH_HINTS = {
    401: "GitHub rejected the token (expired, revoked or mistyped). Update "
         "STREAMPIXEL_GITHUB_TOKEN with a valid token.",
    403: "The token may not write {repository}. A fine-grained token needs the repository "
         "selected with Contents: read and write; a classic token needs the `repo` scope.",
    404: "{repository} does not exist or the token cannot see it (GitHub answers 404 for "
         "private repositories the token has no access to). Check `repository` in the actions "
         "config and the token's repository access.",
    422: "GitHub refused the request body: `event_type` must be 1 to 100 characters and "
         "client_payload at most 10 top-level properties.",
}
