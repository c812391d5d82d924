"""Slots, waiting and retries: the policy between the ledger and the API client.

One deadline (`max-wait`) bounds all waiting. Before reserving we peek: a slot beyond the deadline
fails at once with the ETA instead of burning runner minutes in vain. A 429 reserves a later slot
at the server's indicated time; a transient failure retries on a fresh slot, a full interval later
when the request may have reached the server (it may have used the account's window).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from .api import Result, StreampixelClient, TooManyRequests
from .clock import Clock
from .errors import DistributeError, LedgerError, RateLimited
from .ledger import Ledger, LedgerContext, account_key, open_ledger
from .ledger.none import NoLedger
from .settings import Settings

HEARTBEAT_SECONDS = 30.0  # GitHub shows a step as alive; users see what it waits for
GROUP_THRESHOLD = 5.0  # shorter waits are not worth a collapsible group
# Streampixel starts its window when a call *arrives*. Two back-to-back slots whose calls arrive
# with different delays (network, TLS handshake) could land closer than the interval, so slots
# are spaced a little wider than the limit: 2 %, at least 100 ms (the jitter of a busy
# runner), at most one second.
GUARD_FRACTION, GUARD_MIN, GUARD_MAX = 0.02, 0.1, 1.0
MAX_LATE_SLOTS = 3  # reservations that came back already past, before calling anyway
MAX_BACKOFF = 30.0


class Log(Protocol):
    """What the coordinator may say while working (implemented in report/)."""

    def info(self, message: str) -> None: ...
    def warning(self, message: str, title: str = "") -> None: ...
    def notice(self, message: str, title: str = "") -> None: ...
    def group(self, title: str) -> AbstractContextManager[None]: ...


@dataclass
class Progress:
    """What has happened so far, kept current so a failure or cancellation can still report it."""

    ledger: str = "none"
    slot_at: float | None = None
    position: int | None = None
    attempts: int = 0
    waited: float = 0.0
    http_status: int | None = None
    triggered_at: float | None = None
    result: Result | None = None
    warnings: list[str] = field(default_factory=list)


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _retries_spent(retries: int) -> str:
    if retries <= 0:
        return "It was not retried (`retries: 0`)."
    return f"It was retried {retries} time{'s' if retries > 1 else ''}."


def _hms(seconds: float) -> str:
    seconds = max(0, math.ceil(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, sec = divmod(seconds, 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


class Coordinator:
    def __init__(
        self,
        settings: Settings,
        *,
        ledger: Ledger,
        client: StreampixelClient,
        clock: Clock,
        log: Log,
        progress: Progress | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.client = client
        self.clock = clock
        self.log = log
        self.progress = progress or Progress()
        self.progress.ledger = ledger.description
        self.key = account_key(settings.api_url, settings.user_id)
        self.jitter = jitter
        interval = settings.rate_limit_interval
        self.spacing = interval + min(GUARD_MAX, max(GUARD_MIN, GUARD_FRACTION * interval))

    # -- public -----------------------------------------------------------------------------

    def dry_run(self) -> None:
        now = self.clock.time()
        slot = max(now, self.ledger.peek(self.key, self.spacing))
        self._note_slot(slot, now)
        self.log.info(
            f"Dry run: inputs are valid; the next slot on ledger {self.ledger.description} is "
            f"{iso(slot)} (in {_hms(slot - now)}). Nothing was reserved or sent."
        )

    def run(self) -> Result:
        s = self.settings
        start = self.clock.time()
        deadline = start + s.max_wait
        not_before = 0.0
        failures = 0
        self.client.prepare()  # import and set up HTTP now, not after a slot has begun
        while True:
            slot = self._reserve(not_before, deadline)
            self._wait_until(slot)
            self.progress.attempts += 1
            late = self.clock.time() - slot
            self.log.info(f"Calling distribute-file (attempt {self.progress.attempts}, "
                          f"{late:.2f} s after its slot) for project {s.project_id}, "
                          f"upload {s.upload_id}.")
            try:
                result = self.client.distribute(
                    api_key=s.api_key, user_id=s.user_id,
                    project_id=s.project_id, upload_id=s.upload_id,
                )
            except TooManyRequests as exc:
                self.progress.http_status = exc.http_status
                wait = exc.retry_after if exc.retry_after is not None else s.rate_limit_interval
                not_before = self.clock.time() + wait
                self.log.warning(
                    "Rate limited by Streampixel (HTTP 429, "
                    f"{exc.server_message or 'no message'}); "
                    f"the server asks to wait {_hms(wait)} ({exc.source}). Reserving a later slot.",
                    title="Rate limited",
                )
                if not_before > deadline:
                    raise self._too_late(not_before, deadline, exc) from None
                continue
            except DistributeError as exc:
                self.progress.http_status = exc.http_status
                if not exc.retryable:
                    raise
                if failures >= s.retries:
                    exc.hint = _retries_spent(failures) + " " + exc.hint
                    raise
                failures += 1
                now = self.clock.time()
                if exc.reached_server:
                    # The server may have counted the call: waiting less than a full interval
                    # would likely earn a 429 instead of a retry.
                    pause = s.rate_limit_interval
                else:
                    pause = min(MAX_BACKOFF, 2.0**failures) * (0.5 + self.jitter() / 2)
                not_before = now + pause
                if not_before > deadline:
                    exc.detail += f" (no retry fits in max-wait {s.max_wait:g} s)"
                    exc.hint = _retries_spent(failures - 1) + " " + exc.hint
                    raise
                self.log.warning(
                    f"{exc}. Retry {failures} of {s.retries} in about {_hms(pause)} "
                    "on a fresh slot.",
                    title="Transient failure",
                )
                continue
            now = self.clock.time()
            self.progress.http_status = result.http_status
            self.progress.triggered_at = now
            self.progress.result = result
            self.progress.warnings.extend(result.warnings)
            return result

    # -- steps ------------------------------------------------------------------------------

    def _reserve(self, not_before: float, deadline: float) -> float:
        interval = self.spacing
        guard = interval - self.settings.rate_limit_interval
        started = self.clock.time()
        # Peek first: a slot past the deadline fails now, and reserves nothing others would skip.
        peeked = self.ledger.peek(self.key, interval)
        now = self.clock.time()
        # A slot handed out "now" is already past by the time a slow ledger (a git push to
        # GitHub, retries after lost races) has stored it, and our call would land closer than
        # one interval to the next job's. A reservation costs about two peeks (read, then
        # write), so ask for a slot that starts after it has been stored.
        lead = 2.0 * (now - started)
        for attempt in range(1, MAX_LATE_SLOTS + 1):
            earliest = max(not_before, now + lead)
            eta = max(now, earliest, peeked)
            if eta > deadline:
                raise self._too_late(eta, deadline, None)
            asked = self.clock.time()
            slot = max(self.ledger.reserve(self.key, interval, earliest), now)
            stored = self.clock.time()
            self._note_slot(slot, max(now, earliest))
            if slot > deadline:  # lost a race between peek and reserve
                raise self._too_late(slot, deadline, None)
            if stored - slot <= guard or attempt == MAX_LATE_SLOTS:
                break
            # Calling now would crowd the job after us: give this slot up (it only leaves a
            # gap) and take one that starts after the ledger's measured answer time.
            self.log.warning(
                f"The ledger took {stored - asked:.1f} s to store slot {iso(slot)}, longer than "
                "the guard between slots; reserving a later one so calls stay one interval "
                "apart.",
                title="Slow ledger",
            )
            lead, now, peeked = 1.5 * (stored - asked), stored, 0.0
        if slot - now >= 1:
            self.log.info(
                f"Reserved slot {iso(slot)} on ledger {self.ledger.description} "
                f"(position {self.progress.position}, {_hms(slot - now)} from now)."
            )
        return slot

    def _note_slot(self, slot: float, earliest: float) -> None:
        self.progress.slot_at = slot
        # Position = how many reservations are ahead of ours. Reservations are `spacing` apart,
        # so it is the distance past the earliest time we could have had, in whole spacings;
        # rounding to the nearest one absorbs clock noise between jobs and ledgers.
        self.progress.position = max(0, math.floor((slot - earliest) / self.spacing + 0.5))

    def _wait_until(self, slot: float) -> None:
        remaining = slot - self.clock.time()
        if remaining <= 0:
            return
        if remaining < GROUP_THRESHOLD:
            self._sleep(remaining)
            return
        with self.log.group(f"Waiting {_hms(remaining)} for the rate-limit slot at {iso(slot)}"):
            while (remaining := slot - self.clock.time()) > 0:
                self.log.info(
                    f"Waiting for the account's rate-limit slot at {iso(slot)} "
                    f"(position {self.progress.position}); ETA {_hms(remaining)}."
                )
                self._sleep(min(HEARTBEAT_SECONDS, remaining))

    def _sleep(self, seconds: float) -> None:
        before = self.clock.time()
        try:
            self.clock.sleep(seconds)
        finally:
            self.progress.waited += max(0.0, self.clock.time() - before)

    def _too_late(self, eta: float, deadline: float, cause: TooManyRequests | None) -> RateLimited:
        now = self.clock.time()
        s = self.settings
        detail = (
            f"the next free slot is {iso(eta)}, {_hms(eta - now)} from now, past the "
            f"max-wait deadline {iso(deadline)}"
        )
        error = RateLimited(
            detail,
            eta=eta,
            hint=(
                f"Raise `max-wait` (now {s.max_wait:g} s) to at least {math.ceil(eta - now) + 1} "
                "s, or distribute fewer builds at once: the account allows one call per "
                f"{s.rate_limit_interval:g} s across all its projects and jobs."
            ),
            http_status=cause.http_status if cause else None,
            server_message=cause.server_message if cause else None,
        )
        self.progress.slot_at = eta
        return error


# -- choosing the ledger ------------------------------------------------------------------------


class FallbackLedger(Ledger):
    """`auto` mode: a ledger that refuses or is unreachable degrades to `none` with a warning."""

    def __init__(self, primary: Ledger, on_degrade: Callable[[LedgerError], None],
                 now: Callable[[], float]) -> None:
        self.primary: Ledger | None = primary
        self.fallback = NoLedger("none", LedgerContext(now=now))
        self.on_degrade = on_degrade
        self.description = primary.description

    def _call(self, op: Callable[[Ledger], float]) -> float:
        if self.primary is not None:
            try:
                return op(self.primary)
            except LedgerError as exc:
                self.primary.close()
                self.primary = None
                self.description = "none (auto: the ledger was unavailable)"
                self.on_degrade(exc)
        return op(self.fallback)

    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        return self._call(lambda ledger: ledger.reserve(key, interval, not_before))

    def peek(self, key: str, interval: float) -> float:
        return self._call(lambda ledger: ledger.peek(key, interval))

    def close(self) -> None:
        if self.primary is not None:
            self.primary.close()


def choose_ledger(settings: Settings, environ: Mapping[str, str], clock: Clock, log: Log) -> Ledger:
    context = LedgerContext(environ=environ, github_token=settings.github_token, now=clock.time)
    if settings.ledger != "auto":
        ledger = open_ledger(settings.ledger, context)
        if ledger.warning:
            log.warning(ledger.warning, title="Ledger")
        return ledger
    if settings.on_github and settings.github_token and environ.get("GITHUB_REPOSITORY"):

        def degrade(exc: LedgerError) -> None:
            log.warning(
                f"Coordination disabled: {exc}. Falling back to `ledger: none` (429 handling "
                "only). To coordinate parallel jobs, give the job `permissions: contents: write` "
                "or set `ledger` to a Redis URL.",
                title="Ledger unavailable",
            )

        try:
            primary = open_ledger("github", context)
        except LedgerError as exc:
            degrade(exc)
            return NoLedger("none", context)
        return FallbackLedger(primary, degrade, clock.time)
    log.notice(
        "Parallel jobs are not coordinated (`ledger: none`): only 429 handling protects the "
        "account's rate limit. Inside GitHub Actions give the job `permissions: contents: write` "
        "(uses `ledger: github`), or set `ledger` to a Redis URL.",
        title="No ledger",
    )
    return NoLedger("none", context)


@contextmanager
def closing(ledger: Ledger) -> Iterator[Ledger]:
    try:
        yield ledger
    finally:
        ledger.close()
