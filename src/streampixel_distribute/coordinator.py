"""Slots, waiting and retries: the one path every write call of an account takes.

A `WriteCall` (distribute-file, upload-file, or none for `reserve`) is made in a slot of the
account's rate limit that this job reserved in the shared ledger. One deadline (`max-wait`) bounds
all waiting. Before reserving we peek: a slot beyond the deadline fails at once with the ETA
instead of burning runner minutes in vain. A 429 reserves a later slot at the server's indicated
time; a transient failure retries on a fresh slot, a full interval later when the request may
have reached the server (it may have used the account's window).

Each reservation names its holder (this job: command, project, CI run), so the wait can say who
is ahead, the summary can draw the queue, and a job cancelled while it waits gives its slot back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext, suppress
from typing import Protocol

from .answers import Result, TooManyRequests
from .clock import Clock, backoff, from_now, hms, iso
from .errors import Cancelled, DistributeError, LedgerError, RateLimited
from .ledger import Ledger, account_key
from .ledger.queue import Holder, Slot
from .settings import Account

HEARTBEAT_SECONDS = 30.0  # GitHub shows a step as alive; users see what it waits for
GROUP_THRESHOLD = 5.0  # shorter waits are not worth a collapsible group
# Streampixel starts its window when a call *arrives*. Two back-to-back slots whose calls arrive
# with different delays (network, TLS handshake) could land closer than the interval, so slots
# are spaced a little wider than the limit: 2 %, at least 100 ms (the jitter of a busy
# runner), at most one second.
GUARD_FRACTION, GUARD_MIN, GUARD_MAX = 0.02, 0.1, 1.0
MAX_LATE_SLOTS = 3  # reservations that came back already past, before calling anyway
MAX_BACKOFF = 30.0
#: How long before its slot a waiting job sets up its HTTP client. Jobs that start together
#: compete for the CPU; only the one whose slot is now should spend it on imports.
PREPARE_LEAD = 3.0
#: A waiting job looks for a slot given back ahead of it at least this often (and a quarter of
#: the interval at most, HEARTBEAT_SECONDS at most).
MOVE_CHECK_MIN = 1.0
#: How much later than its slot another tool's call may start (`reserve`): the time for this
#: process to exit and for the CI system to start the step that makes the call.
CALLER_ALLOWANCE = 10.0


class Log(Protocol):
    """What the coordinator may say while working (implemented in report/ and listener/log)."""

    def info(self, message: str) -> None: ...
    def warning(self, message: str, title: str = "") -> None: ...
    def notice(self, message: str, title: str = "") -> None: ...
    def group(self, title: str) -> AbstractContextManager[None]: ...


class WriteCall(Protocol):
    """One write call of the account, made in a reserved slot."""

    @property
    def name(self) -> str:
        """What is called, for the log: `distribute-file`."""
        ...

    def describe(self) -> str:
        """What it is about, for the log: `for project …, upload …`."""
        ...

    def prepare(self) -> None:
        """Set up (imports, HTTP session) so the call leaves the moment its slot starts."""
        ...

    def prepare_cost(self) -> float:
        """About how many seconds `prepare` will take (0 once prepared)."""
        ...

    def send(self) -> Result:
        """Make the call; a Result, or a typed error (retryable or not)."""
        ...


class Progress:
    """What has happened so far, kept current so a failure or cancellation can still report it."""

    def __init__(self) -> None:
        self.ledger = "none"
        self.slot_at: float | None = None
        self.position: int | None = None
        self.attempts = 0
        self.waited = 0.0
        self.http_status: int | None = None
        self.called_at: float | None = None
        self.warnings: list[str] = []
        self.holder_id = ""  # this job's current reservation, as the queue names it
        self.queue: dict[str, Slot] = {}  # what the ledger showed, by holder id
        self.gave_back = ""  # `released` or `marked` when a cancelled job gave its slot back

    def saw(self, slots: list[Slot]) -> None:
        """Merge a fresh look at the queue: newer facts about a holder replace older ones.
        Slots without a holder (an older release's) are known by their time only: the fresh
        look replaces them all."""
        self.queue = {key: slot for key, slot in self.queue.items() if slot.holder} | {
            slot.holder.id if slot.holder else f"@{slot.at!r}": slot for slot in slots}


def _random() -> float:
    import random  # noqa: PLC0415 - only a transient failure needs it; start-up stays light

    return random.random()  # noqa: S311 - jitter, not security


def spacing(interval: float) -> float:
    """The distance between two reserved slots: the interval plus the guard."""
    return interval + min(GUARD_MAX, max(GUARD_MIN, GUARD_FRACTION * interval))


def _retries_spent(retries: int) -> str:
    if retries <= 0:
        return "It was not retried (`retries: 0`)."
    return f"It was retried {retries} time{'s' if retries > 1 else ''}."


class Coordinator:
    def __init__(
        self,
        account: Account,
        *,
        ledger: Ledger,
        clock: Clock,
        log: Log,
        progress: Progress | None = None,
        jitter: Callable[[], float] | None = None,
        holder: Holder | None = None,
    ) -> None:
        self.account = account
        #: Who this job is, for the queue; each reservation gets its own id.
        self.holder = holder or Holder("")
        self.ledger = ledger
        self.clock = clock
        self.log = log
        self.progress = progress or Progress()
        self.progress.ledger = ledger.description
        self.key = account_key(account.api_url, account.user_id)
        self.jitter = jitter or _random
        self.spacing = spacing(account.rate_limit_interval)
        self._ledger_time = 0.0  # how long the last reservation took to store

    # -- public -----------------------------------------------------------------------------

    def dry_run(self, name: str) -> None:
        """Show the slot a call named `name` would get; reserve nothing, call nothing."""
        now = self.clock.time()
        slot = max(now, self.ledger.peek(self.key, self.spacing))
        self._note_slot(slot, now)
        self.log.info(
            f"Dry run: inputs are valid; the next slot for {name} on ledger "
            f"{self.ledger.description} is {iso(slot)} ({from_now(slot - now)}). Nothing was "
            "reserved or sent."
        )

    def look(self) -> None:
        """Read the account's queue for the summary; best effort (a ledger that cannot show it
        costs the picture, never the run)."""
        with suppress(LedgerError):
            self.progress.saw(self.ledger.queue(self.key, self.spacing))

    def reserve(self) -> float:
        """Wait for the account's next slot and return it: another tool makes the call.

        The slot is held `CALLER_ALLOWANCE` seconds longer than a call of ours, so that the
        caller's call, which starts a little after this process ends, still keeps one interval
        from the next job's.
        """
        slot = self._turn(None, 0.0, self.clock.time() + self.account.max_wait)
        self.progress.called_at = self.clock.time()
        return slot

    def run(self, call: WriteCall) -> Result:
        account = self.account
        deadline = self.clock.time() + account.max_wait
        not_before = 0.0
        failures = 0
        while True:
            slot = self._turn(call, not_before, deadline)
            self.progress.attempts += 1
            late = self.clock.time() - slot
            self.log.info(f"Calling {call.name} (attempt {self.progress.attempts}, {late:.2f} s "
                          f"after its slot) {call.describe()}.")
            try:
                result = call.send()
            except TooManyRequests as exc:  # the server turned it away: its window is unused
                self.progress.http_status = exc.http_status
                wait = exc.retry_after if exc.retry_after is not None else \
                    account.rate_limit_interval
                not_before = self.clock.time() + wait
                self.log.warning(
                    "Rate limited by Streampixel (HTTP 429, "
                    f"{exc.server_message or 'no message'}); the server asks to wait "
                    f"{hms(wait)} ({exc.source}). Reserving a later slot.",
                    title="Rate limited",
                )
                if not_before > deadline:
                    raise self._too_late(not_before, deadline, exc) from None
                continue
            except DistributeError as exc:
                self.progress.http_status = exc.http_status
                if exc.reached_server:
                    self._stretch(slot)
                if not exc.retryable:
                    raise
                if failures >= account.retries:
                    exc.hint = f"{_retries_spent(failures)} {exc.hint}"
                    raise
                failures += 1
                if exc.reached_server:
                    # The server may have counted the call: waiting less than a full interval
                    # would likely earn a 429 instead of a retry.
                    pause = account.rate_limit_interval
                else:
                    pause = backoff(failures, unit=1.0, cap=MAX_BACKOFF) * (
                        0.5 + self.jitter() / 2)
                not_before = self.clock.time() + pause
                if not_before > deadline:
                    exc.detail += f" (no retry fits in max-wait {account.max_wait:g} s)"
                    exc.hint = f"{_retries_spent(failures - 1)} {exc.hint}"
                    raise
                self.log.warning(
                    f"{exc}. Retry {failures} of {account.retries} in about {hms(pause)} on a "
                    "fresh slot.",
                    title="Transient failure",
                )
                continue
            self.progress.http_status = result.http_status
            self.progress.called_at = self.clock.time()
            self._stretch(slot)
            self.progress.warnings.extend(result.warnings)
            return result

    # -- steps ------------------------------------------------------------------------------

    def _turn(self, call: WriteCall | None, not_before: float, deadline: float) -> float:
        """Reserve a slot and sleep until it (None: for another tool's call); a slot whose
        call would now crowd the next job's is given up for a later one."""
        hold = CALLER_ALLOWANCE if call is None else 0.0
        while True:
            self._not_before = not_before  # _move_up takes no slot given back before it
            setup = 0.0 if call is None else call.prepare_cost()
            try:
                slot = self._reserve(not_before, deadline, setup=setup, hold=hold)
                slot, ready = self._wait_until(slot, call, deadline)
            except Cancelled:
                self._give_back()
                raise
            if not self._crowds_the_next(slot, ready, hold):
                return slot
            not_before = 0.0

    def _give_back(self) -> None:
        """Cancelled before our slot began: give it back, so the jobs behind need not wait for a
        call that never comes. The runner kills us seconds after its signal: one try, shielded
        from a second signal, and whatever happens the cancellation goes on."""
        holder_id = self.progress.holder_id
        if not holder_id or self.progress.called_at is not None:
            return
        self.clock.shield()
        try:
            outcome = self.ledger.give_back(self.key, holder_id)
        except LedgerError as exc:
            self.log.warning(f"Could not give the slot back: {exc}", title="Slot kept")
            return
        self.progress.gave_back = "" if outcome == "absent" else outcome
        if outcome == "released":
            self.log.info("Gave the slot back: the next job may call in it.")
        elif outcome == "marked":
            self.log.info("Gave the slot back; jobs already queued behind it keep their turns, "
                          "and the next job to reserve may take it.")

    def _reserve(self, not_before: float, deadline: float, *, setup: float = 0.0,
                 hold: float = 0.0) -> float:
        interval = self.spacing
        guard = interval - self.account.rate_limit_interval
        started = self.clock.time()
        # Peek first: a slot past the deadline fails now, and reserves nothing others would skip.
        peeked = self.ledger.peek(self.key, interval)
        now = self.clock.time()
        # A slot handed out "now" is already past by the time a slow ledger (a git push to
        # GitHub, retries after lost races) has stored it, and our call would land closer than
        # one interval to the next job's. A reservation costs about two peeks (read, then
        # write), so ask for a slot that starts after it has been stored, and after the call
        # has been set up (`setup`: jobs reserve before they import the HTTP stack, so that
        # only the one whose slot is near spends the CPU on it), less the guard between slots,
        # which absorbs that much lateness anyway.
        lead = 2.0 * (now - started) + max(0.0, setup - guard)
        for attempt in range(1, MAX_LATE_SLOTS + 1):
            earliest = max(not_before, now + lead)
            eta = max(now, earliest, peeked)
            if eta > deadline:
                raise self._too_late(eta, deadline, None)
            asked = self.clock.time()
            mine = self.holder._replace(id=os.urandom(6).hex())  # `secrets` costs ~10 ms to import
            self.progress.holder_id = mine.id
            slot = max(self.ledger.reserve(self.key, interval + hold, earliest, mine), now)
            stored = self.clock.time()
            self._ledger_time = stored - asked
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
            ahead = self._ahead(slot)
            if self.progress.holder_id in self.progress.queue:  # a queue that knows us
                self.progress.position = len(ahead)
            names = "; ".join(f"{self._label(s)} at {iso(s.at)}" for s in ahead[:3])
            more = f" and {len(ahead) - 3} more" if len(ahead) > 3 else ""
            self.log.info(
                f"Reserved slot {iso(slot)} on ledger {self.ledger.description} "
                f"(position {self.progress.position}, {from_now(slot - now)})"
                + (f"; ahead: {names}{more}." if names else "."))
        return slot

    def _ahead(self, slot: float, *, refresh: bool = True) -> list[Slot]:
        """The reservations still to run before `slot`, as the ledger shows them now; never our
        own (a Redis ledger converts its clock anew on each answer: the queue may show our slot
        a few microseconds before the time `reserve` gave)."""
        if refresh:
            self.look()
        now = self.clock.time()
        return [s for s in sorted(self.progress.queue.values())
                if s.at < slot and s.until > now and not s.released and not self._mine(s)]

    def _mine(self, slot: Slot) -> bool:
        return slot.holder is not None and slot.holder.id == self.progress.holder_id

    def _label(self, slot: Slot) -> str:
        return slot.holder.label() if slot.holder else "a job of an older release"

    def _crowds_the_next(self, slot: float, ready: float, hold: float) -> bool:
        """Would calling now, later than the guard after the time our call was due (`ready`: the
        slot, or the end of a stretched slot before it), land closer than one interval to the
        call of a job that reserved the slot after ours? (The set-up took longer than
        estimated.) Then our slot is given up for a later one; alone, we call late. (The job
        after ours waits for our stretched slot just as we waited for the one before.)"""
        late = self.clock.time() - ready
        if late <= self.spacing - self.account.rate_limit_interval:
            return False
        # A peek is never before now: later than a whole spacing, a free account's peek is now.
        if self.ledger.peek(self.key, self.spacing) <= max(
                self.clock.time(), slot + self.spacing + hold) + 0.001:
            return False  # nobody reserved after us
        self.log.warning(
            f"Setting up the call took until {late:.1f} s after its slot, longer than the guard "
            "between slots, and another job holds the next one; reserving a later slot so calls "
            "stay one interval apart.", title="Late slot")
        return True

    def _note_slot(self, slot: float, earliest: float) -> None:
        self.progress.ledger = self.ledger.description  # `auto` may have degraded to `none`
        self.progress.slot_at = slot
        # Position = how many reservations are ahead of ours. Reservations are `spacing` apart,
        # so it is the distance past the earliest time we could have had, in whole spacings;
        # rounding to the nearest one absorbs clock noise between jobs and ledgers.
        self.progress.position = max(0, math.floor((slot - earliest) / self.spacing + 0.5))

    def _wait_until(self, slot: float, call: WriteCall | None,
                    deadline: float) -> tuple[float, float]:
        """Sleep until `slot`, setting the call up `PREPARE_LEAD` seconds before it, and move up
        into a slot given back ahead of ours on the way; then on until the slot before ours has
        ended, if its job stretched it (`_previous_end`). Returns the slot finally held and the
        time the call was due."""
        slot = self._sleep_until(PREPARE_LEAD, slot, call)
        if call is not None:
            call.prepare()
        # Read the queue as late as the ledger's speed allows: a stretch is written up to then.
        slot = self._sleep_until(self._ledger_time, slot, call, move=False)
        ready = self._previous_end(slot)
        if ready > deadline:
            raise self._too_late(ready, deadline, None)
        self._sleep_until(0.0, ready, call, move=False)
        return slot, ready

    def _previous_end(self, slot: float) -> float:
        """When the call in `slot` may start: the slot, or later when a job ahead stretched its
        own (its call was answered late). Best effort: a ledger that cannot show the queue
        leaves the slot as it is."""
        try:
            slots = self.ledger.queue(self.key, self.spacing)
        except LedgerError:
            return slot
        self.progress.saw(slots)
        ready = max([slot, *(s.until for s in slots
                             if s.at < slot and not s.released and not self._mine(s))])
        if ready > slot:
            self.log.info(
                f"The call before ours was answered late and its job stretched its slot to "
                f"{iso(ready)}: calling then, {ready - slot:.2f} s after our slot, so the calls "
                "reach Streampixel one interval apart.")
        return ready

    def _stretch(self, slot: float) -> None:
        """Streampixel starts its window when our call *arrives*, which we know only to lie
        before the answer. An answer later than the guard after our slot: stretch the slot to
        one interval after the answer, so that the job behind ours waits for it. Best effort."""
        until = self.clock.time() + self.account.rate_limit_interval
        if until <= slot + self.spacing:
            return
        try:
            stretched = self.ledger.stretch(self.key, self.progress.holder_id, until)
        except LedgerError as exc:
            self.log.warning(f"Could not stretch the slot to one interval after the late answer: "
                             f"{exc}", title="Slot not stretched")
            return
        if stretched:
            self.log.info(f"The answer came {until - self.account.rate_limit_interval - slot:.2f}"
                          f" s after our slot: the slot now lasts until {iso(until)}, one "
                          "interval after it, and the next job calls no earlier.")

    def _sleep_until(self, lead: float, slot: float, call: WriteCall | None, *,
                     move: bool = True) -> float:
        """Sleep until `lead` seconds before `slot`, with a heartbeat when the wait is long;
        every step looks for a slot given back ahead (`_move_up`). Returns the slot."""
        if slot - lead - self.clock.time() <= 0:
            return slot
        grouped = slot - self.clock.time() >= GROUP_THRESHOLD
        # Often enough to take a given-back slot while it is still ahead; a heartbeat at most
        # every HEARTBEAT_SECONDS.
        step = min(HEARTBEAT_SECONDS, max(MOVE_CHECK_MIN, self.spacing / 4))
        title = f"Waiting {hms(slot - self.clock.time())} for the rate-limit slot at {iso(slot)}"
        with self.log.group(title) if grouped else nullcontext():
            first = True  # the reservation has just read the queue
            while (remaining := slot - lead - self.clock.time()) > 0:
                if not first and move:
                    slot = self._move_up(slot, call)
                    if (remaining := slot - lead - self.clock.time()) <= 0:
                        break
                if grouped:
                    ahead = self._ahead(slot, refresh=False if move else not first)
                    next_one = (f"; next: {self._label(ahead[-1])} until "
                                f"{iso(ahead[-1].until)}" if ahead else "")
                    self.log.info(
                        f"Waiting for the account's rate-limit slot at {iso(slot)} (position "
                        f"{self.progress.position}); ETA {hms(slot - self.clock.time())}"
                        f"{next_one}.")
                first = False
                self._sleep(min(step, remaining))
        return slot

    def _move_up(self, slot: float, call: WriteCall | None) -> float:
        """A slot given back ahead of ours (a job ahead was cancelled): take it, atomically in
        the ledger, which gives ours back in turn for the job behind. Best effort."""
        self.look()
        now = self.clock.time()
        earliest = max(self._not_before,  # after a 429, the time the server asked for
                       now + 2 * self._ledger_time + (0.0 if call is None else call.prepare_cost()))
        if not any(s.released and earliest <= s.at < slot for s in self.progress.queue.values()):
            return slot
        try:
            moved = self.ledger.advance(self.key, self.progress.holder_id, earliest)
        except LedgerError:
            return slot
        if moved is None or moved >= slot:
            return slot
        self.look()
        self.progress.slot_at = moved
        self.progress.position = len(self._ahead(moved, refresh=False))
        self.log.info(f"Moved up to slot {iso(moved)} ({from_now(moved - now)}): a job ahead "
                      "gave its slot back.")
        return moved

    def _sleep(self, seconds: float) -> None:
        before = self.clock.time()
        try:
            self.clock.sleep(seconds)
        finally:
            self.progress.waited += max(0.0, self.clock.time() - before)

    def _too_late(self, eta: float, deadline: float, cause: TooManyRequests | None) -> RateLimited:
        now = self.clock.time()
        account = self.account
        error = RateLimited(
            f"the next free slot is {iso(eta)}, {from_now(eta - now)}, past the max-wait "
            f"deadline {iso(deadline)}",
            eta=eta,
            hint=(
                f"Raise `max-wait` (now {account.max_wait:g} s) to at least "
                f"{math.ceil(eta - now) + 1} s, or make fewer write calls at once: the account "
                f"allows one call per {account.rate_limit_interval:g} s across all its projects "
                "and jobs."
            ),
            http_status=cause.http_status if cause else None,
            server_message=cause.server_message if cause else None,
        )
        self.progress.slot_at = eta
        return error
