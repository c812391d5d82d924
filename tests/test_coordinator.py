"""Waiting and retry policy, driven by an injected clock: no test here sleeps.

The API client is a scripted stand-in (its HTTP behaviour is tested against the emulator in
test_action.py); the ledgers are the real `none` and `file` backends.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streampixel_distribute.answers import Result, TooManyRequests
from streampixel_distribute.clock import iso
from streampixel_distribute.coordinator import (
    CALLER_ALLOWANCE,
    HEARTBEAT_SECONDS,
    PREPARE_LEAD,
    Coordinator,
    Progress,
)
from streampixel_distribute.errors import (
    Cancelled,
    DistributeError,
    LedgerError,
    NetworkError,
    RateLimited,
    ServerError,
    Unauthorized,
)
from streampixel_distribute.ledger import Ledger, LedgerContext, account_key, open_ledger
from streampixel_distribute.ledger.none import NoLedger
from streampixel_distribute.ledger.policy import FallbackLedger
from streampixel_distribute.ledger.queue import Holder, Slot
from streampixel_distribute.settings import Account
from support.clock import FakeClock
from support.redis_server import RedisServer

USER = "663d0a1b2c3e4f5a6b7c8d9e"


API = "http://127.0.0.1:9/pixelStripeApi"
KEY = account_key(API, USER)


def file_ledger(tmp_path: Path, clock: FakeClock) -> Ledger:
    """The real file ledger, on the fake clock."""
    return open_ledger(f"file://{tmp_path}/l.json", LedgerContext(now=clock.time))


def make_settings(**kw: Any) -> Account:
    base = Account(
        api_key="sk-test-key-123456", user_id=USER, api_url=API,
        ledger="none", github_token="", rate_limit_interval=120.0, max_wait=900.0, timeout=30.0,
        retries=3, strict_ids=True,
    )
    return base._replace(**kw)


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self.titled: list[tuple[str, str]] = []  # (title, message) of warnings and notices
        self.groups: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def warning(self, message: str, title: str = "") -> None:
        self.lines.append(("warning", message))
        self.titled.append((title, message))

    def notice(self, message: str, title: str = "") -> None:
        self.lines.append(("notice", message))
        self.titled.append((title, message))

    def starting(self, prefix: str) -> list[str]:
        return [message for _, message in self.lines if message.startswith(prefix)]

    @contextlib.contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.groups.append(title)
        yield


class ScriptedClient:
    """A WriteCall answered from a script of results or errors; records the clock at each call
    and when it was prepared. Its first set-up takes `prepare_takes` s (whatever prepare_cost()
    says) and each answer `answer_takes` s (a slow network, a busy runner or server); `meanwhile`
    is what other jobs do as it starts getting ready."""

    name = "distribute-file"

    def __init__(self, clock: FakeClock, script: list[Result | DistributeError], *,
                 prepare_takes: float = 0.0, answer_takes: float = 0.0,
                 meanwhile: Callable[[], object] = lambda: None) -> None:
        self.clock = clock
        self.script = list(script)
        self.calls: list[float] = []
        self.prepared = False
        self.setup = 0.0  # what prepare_cost() says before prepare()
        self.prepare_takes, self.answer_takes, self.meanwhile = (
            prepare_takes, answer_takes, meanwhile)

    def describe(self) -> str:
        return "for the test"

    def prepare(self) -> None:
        if not self.prepared:  # only the first set-up costs anything (the imports)
            self.meanwhile()
            self.clock.now += self.prepare_takes
        self.prepared = True
        self.prepared_at = self.clock.time()

    def prepare_cost(self) -> float:
        return 0.0 if self.prepared else self.setup

    def send(self) -> Result:
        self.calls.append(self.clock.time())
        item = self.script.pop(0)
        self.clock.now += self.answer_takes
        if isinstance(item, DistributeError):
            raise item
        return item


OK = Result(200, "Distribution triggered")


def at(when: float | list[float]) -> object:
    """Equal to an epoch time to the microsecond (pytest.approx's default relative tolerance
    would accept anything within half an hour of a value this large)."""
    return pytest.approx(when, rel=0, abs=1e-6)


def too_many(retry_after: float | None) -> TooManyRequests:
    return TooManyRequests("HTTP 429", retry_after=retry_after, source="test", http_status=429)


def transient(reached: bool) -> DistributeError:
    err: DistributeError = ServerError("HTTP 503", http_status=503) if reached else \
        NetworkError("connection refused")
    err.retryable = True
    err.reached_server = reached
    return err


def run(settings: Account, script: list[Result | DistributeError], *,
        ledger: Ledger | None = None, clock: FakeClock | None = None, jitter: float = 0.5,
        ) -> tuple[Coordinator, ScriptedClient, Log]:
    clock = clock or FakeClock()
    client = ScriptedClient(clock, script)
    log = Log()
    coordinator = Coordinator(settings, ledger=ledger or NoLedger("none", LedgerContext(
        now=clock.time)), clock=clock, log=log, jitter=lambda: jitter)
    return coordinator, client, log


def test_free_slot_calls_at_once() -> None:
    coordinator, client, log = run(make_settings(), [OK])
    assert coordinator.run(client) is OK
    progress = coordinator.progress
    assert progress.attempts == 1
    assert progress.waited == 0
    assert progress.position == 0
    assert (progress.http_status, progress.called_at) == (200, client.calls[0])
    # A slot that is now needs no "Reserved slot" line, nor a wait group.
    assert log.lines == [("info", "Calling distribute-file (attempt 1, 0.00 s after its slot) "
                                  "for the test.")]
    assert log.groups == []


def test_a_fresh_progress_reports_that_nothing_happened_yet() -> None:
    """What a failure before the first reservation (bad input, an unreachable ledger) reports."""
    progress = Progress()
    assert (progress.ledger, progress.slot_at, progress.position) == ("none", None, None)
    assert (progress.attempts, progress.waited, progress.http_status) == (0, 0.0, None)
    assert (progress.called_at, progress.holder_id, progress.gave_back) == (None, "", "")
    assert (progress.queue, progress.warnings) == ({}, [])


def test_the_backoff_before_a_retry_is_exact_with_a_fixed_jitter() -> None:
    """2 s, then 4 s, scaled by 0.5 + jitter / 2: with jitter 0.2, 1.2 s then 2.4 s."""
    coordinator, client, log = run(make_settings(), [transient(False), transient(False), OK],
                                   jitter=0.2)
    start = coordinator.clock.time()
    coordinator.run(client)
    assert client.calls == at([start, start + 1.2, start + 3.6])
    assert coordinator.clock.sleeps == at([1.2, 2.4])  # type: ignore[attr-defined]
    assert coordinator.progress.waited == pytest.approx(3.6, abs=1e-6)
    assert log.titled == [
        ("Transient failure", "Network error: connection refused. Retry 1 of 3 in about 2 s on "
                              "a fresh slot."),
        ("Transient failure", "Network error: connection refused. Retry 2 of 3 in about 3 s on "
                              "a fresh slot."),
    ]
    assert log.starting("Calling") == [
        f"Calling distribute-file (attempt {n}, 0.00 s after its slot) for the test."
        for n in (1, 2, 3)]
    assert log.groups == []  # waits this short get no group and no heartbeat
    assert not log.starting("Waiting")


def test_a_one_second_pause_is_slept_in_full() -> None:
    """jitter 0: the first backoff is exactly 1 s; the retry leaves 1 s later, not at once."""
    coordinator, client, log = run(make_settings(), [transient(False), OK], jitter=0.0)
    start = coordinator.clock.time()
    coordinator.run(client)
    assert client.calls == at([start, start + 1.0])
    assert coordinator.clock.sleeps == [1.0]  # type: ignore[attr-defined]
    assert log.starting("Reserved slot") == [
        f"Reserved slot {iso(start + 1)} on ledger none (position 0, in 1 s)."]


@pytest.mark.parametrize(("wait", "sleeps"), [(5.0, [2.0, 3.0]), (20.0, [17.0, 3.0]),
                                              (33.5, [30.0, 0.5, 3.0])])
def test_a_wait_is_slept_in_heartbeat_steps_up_to_the_set_up_lead(wait: float,
                                                                  sleeps: list[float]) -> None:
    """Steps of at most 30 s until PREPARE_LEAD before the slot, then the rest: never past it;
    a wait of 5 s or more gets a group named after it, and a heartbeat per step."""
    coordinator, client, log = run(make_settings(), [too_many(wait), OK])
    start = coordinator.clock.time()
    coordinator.run(client)
    slot = start + wait
    assert client.calls == at([start, slot])
    assert client.prepared_at == at(slot - PREPARE_LEAD)
    assert coordinator.clock.sleeps == at(sleeps)  # type: ignore[attr-defined]
    assert coordinator.progress.waited == pytest.approx(wait, abs=1e-6)
    assert log.groups == [f"Waiting {math.ceil(wait)} s for the rate-limit slot at {iso(slot)}"]
    etas = [math.ceil(wait - sum(sleeps[:n])) for n in range(len(sleeps) - 1)]
    assert log.starting("Waiting") == [
        f"Waiting for the account's rate-limit slot at {iso(slot)} (position 0); ETA {eta} s."
        for eta in etas]


def test_the_heartbeat_steps_are_a_quarter_of_a_short_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, client, _ = run(make_settings(rate_limit_interval=51), [OK], ledger=ledger,
                                 clock=clock)
    ledger.reserve(KEY, coordinator.spacing, 0)  # one job ahead: our slot is 52 s away
    start = clock.now
    coordinator.run(client)
    assert client.calls == [start + 52]
    assert clock.sleeps == [13, 13, 13, 10, 3]  # 52 / 4, until 3 s before the slot


@pytest.mark.parametrize("first", [too_many(60), transient(True)], ids=["429", "transient"])
def test_a_retry_due_exactly_at_the_deadline_is_made(first: DistributeError) -> None:
    """max-wait is inclusive: a retry whose slot is the deadline itself still goes out."""
    max_wait = 60.0 if isinstance(first, TooManyRequests) else 120.0
    coordinator, client, _ = run(make_settings(max_wait=max_wait), [first, OK])
    start = coordinator.clock.time()
    assert coordinator.run(client) is OK
    assert client.calls == at([start, start + max_wait])
    assert coordinator.progress.slot_at == at(start + max_wait)


@pytest.mark.parametrize(("message", "said"), [("Try again in 2 minutes", "Try again in 2 minutes"),
                                               (None, "no message")])
def test_a_429_past_max_wait_says_what_the_server_said_and_when(message: str | None,
                                                                said: str) -> None:
    err = TooManyRequests("HTTP 429", retry_after=120, source="Retry-After header",
                          http_status=429, server_message=message)
    coordinator, client, log = run(make_settings(max_wait=60), [err, OK])
    start = coordinator.clock.time()
    with pytest.raises(RateLimited) as info:
        coordinator.run(client)
    assert log.titled == [("Rate limited", f"Rate limited by Streampixel (HTTP 429, {said}); the "
                           "server asks to wait 2 min 00 s (Retry-After header). Reserving a "
                           "later slot.")]
    error = info.value
    assert error.detail == (f"the next free slot is {iso(start + 120)}, in 2 min 00 s, past the "
                            f"max-wait deadline {iso(start + 60)}")
    assert error.hint == ("Raise `max-wait` (now 60 s) to at least 121 s, or make fewer write "
                          "calls at once: the account allows one call per 120 s across all its "
                          "projects and jobs.")
    assert (error.eta, error.http_status, error.server_message) == (start + 120, 429, message)
    assert (coordinator.progress.http_status, coordinator.progress.slot_at) == (429, start + 120)


def test_a_retry_that_no_longer_fits_says_how_often_it_was_retried() -> None:
    """The second failure's retry would end past max-wait: the error says so, and that the call
    was retried once (not the retry it would have been)."""
    failures: list[Result | DistributeError] = []
    for _ in range(3):
        err = ServerError("HTTP 503", http_status=503, hint="Try again later.")
        err.retryable = err.reached_server = True
        failures.append(err)
    coordinator, client, log = run(make_settings(max_wait=200), [*failures, OK])
    start = coordinator.clock.time()
    with pytest.raises(ServerError) as info:
        coordinator.run(client)
    assert client.calls == at([start, start + 120])
    assert info.value.detail == "HTTP 503 (no retry fits in max-wait 200 s)"
    assert info.value.hint == "It was retried 1 time. Try again later."
    assert coordinator.progress.http_status == 503
    assert log.titled == [("Transient failure", "Streampixel server error: HTTP 503. Retry 1 of 3 "
                           "in about 2 min 00 s on a fresh slot.")]


def test_a_set_up_longer_than_max_wait_fails_before_reserving(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, client, _ = run(make_settings(max_wait=1), [OK], ledger=ledger, clock=clock)
    client.setup = 3.0  # the slot could start 2 s from now at the earliest (1 s is the guard)
    with pytest.raises(RateLimited) as info:
        coordinator.run(client)
    assert info.value.eta == at(clock.now + 2)
    assert info.value.detail == (f"the next free slot is {iso(clock.now + 2)}, in 2 s, past the "
                                 f"max-wait deadline {iso(clock.now + 1)}")
    assert ledger.peek(KEY, 121) == clock.now  # nothing reserved, no gap left for the others
    assert coordinator.progress.ledger == ledger.description


def test_waits_for_the_reserved_slot_with_heartbeats(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 120, 0)  # two other jobs are ahead
    ledger.reserve(KEY, 120, 0)
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    assert client.prepared  # HTTP set up before the wait, not after the slot began
    assert client.calls == [start + 240]  # the two reservations ahead, 120 s each
    assert sum(clock.sleeps) == pytest.approx(240)
    assert coordinator.progress.waited == pytest.approx(240)
    assert coordinator.progress.position == 2
    assert max(clock.sleeps) <= HEARTBEAT_SECONDS
    heartbeats = [m for k, m in log.lines if "ETA" in m]
    assert len(heartbeats) >= 240 / HEARTBEAT_SECONDS
    assert log.groups and "slot" in log.groups[0]


def test_slot_past_deadline_fails_at_once_without_reserving(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    for _ in range(5):
        ledger.reserve(KEY, 120, 0)
    before = ledger.peek(KEY, 120)
    coordinator, client, _ = run(make_settings(max_wait=300), [OK], ledger=ledger, clock=clock)
    with pytest.raises(RateLimited) as info:
        coordinator.run(client)
    assert client.calls == []
    assert clock.sleeps == []  # did not wait in vain
    assert ledger.peek(KEY, 120) == before  # reserved nothing
    assert info.value.eta == at(clock.now + 600)
    assert "max-wait" in info.value.hint and info.value.exit_code == 5


def test_429_waits_as_the_server_says_then_succeeds() -> None:
    coordinator, client, log = run(make_settings(), [too_many(45), OK])
    coordinator.run(client)
    assert client.calls[1] - client.calls[0] == pytest.approx(45)
    assert coordinator.progress.attempts == 2
    assert any("429" in m for k, m in log.lines if k == "warning")


def test_429_without_hint_waits_one_interval() -> None:
    coordinator, client, _ = run(make_settings(rate_limit_interval=90), [too_many(None), OK])
    coordinator.run(client)
    assert client.calls[1] - client.calls[0] == pytest.approx(90)


def test_429_beyond_max_wait_exits_5_with_eta() -> None:
    coordinator, client, _ = run(make_settings(max_wait=60), [too_many(120), OK])
    with pytest.raises(RateLimited) as info:
        coordinator.run(client)
    assert len(client.calls) == 1
    assert info.value.http_status == 429
    assert info.value.eta == at(client.calls[0] + 120)  # when the server said


def test_transient_before_send_backs_off_briefly() -> None:
    coordinator, client, _ = run(make_settings(), [transient(False), transient(False), OK])
    coordinator.run(client)
    gaps = [b - a for a, b in zip(client.calls, client.calls[1:], strict=False)]
    assert all(gap < 30 for gap in gaps)
    assert coordinator.progress.attempts == 3


def test_transient_that_reached_the_server_waits_a_full_interval() -> None:
    coordinator, client, _ = run(make_settings(), [transient(True), OK])
    coordinator.run(client)
    assert client.calls[1] - client.calls[0] == pytest.approx(120)


def test_retries_are_bounded() -> None:
    coordinator, client, _ = run(make_settings(retries=2, max_wait=10_000),
                                 [transient(True)] * 5)
    with pytest.raises(ServerError):
        coordinator.run(client)
    assert len(client.calls) == 3


def test_auth_errors_are_never_retried() -> None:
    coordinator, client, _ = run(make_settings(), [Unauthorized("HTTP 401"), OK])
    with pytest.raises(Unauthorized):
        coordinator.run(client)
    assert len(client.calls) == 1


def test_dry_run_peeks_and_calls_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 120, 0)
    coordinator, client, log = run(make_settings(), [], ledger=ledger, clock=clock)
    coordinator.dry_run(client.name)
    assert client.calls == []
    assert log.lines == [("info", f"Dry run: inputs are valid; the next slot for distribute-file "
                                  f"on ledger {ledger.description} is {iso(clock.now + 120)} (in "
                                  "2 min 00 s). Nothing was reserved or sent.")]
    assert coordinator.progress.slot_at == at(clock.now + 120)
    assert coordinator.progress.position == 1
    assert ledger.peek(KEY, 120) == at(clock.now + 120)  # still not reserved


def test_cancellation_during_wait_keeps_progress(tmp_path: Path) -> None:
    class CancellingClock(FakeClock):
        def sleep(self, seconds: float) -> None:
            super().sleep(seconds)
            if sum(self.sleeps) >= 60:
                raise Cancelled(15, "received SIGTERM")

    clock = CancellingClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 120, 0)
    progress = Progress()
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    coordinator.progress = progress
    with pytest.raises(Cancelled) as info:
        coordinator.run(client)
    assert info.value.code == 143
    assert client.calls == []
    assert progress.waited == pytest.approx(60)
    assert progress.slot_at is not None


class BrokenLedger(Ledger):
    description = "redis://broken:6379/0"

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        raise LedgerError("unreachable")

    def peek(self, key: str, interval: float) -> float:
        raise LedgerError("unreachable")


def test_auto_ledger_degrades_to_none_with_a_warning() -> None:
    clock = FakeClock()
    warnings: list[LedgerError] = []
    ledger = FallbackLedger(BrokenLedger(), warnings.append, clock.time)
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    assert coordinator.progress.ledger == "redis://broken:6379/0"  # until it degrades
    coordinator.run(client)
    assert len(warnings) == 1
    assert ledger.description.startswith("none")
    assert coordinator.progress.ledger == ledger.description  # what the summary shows
    assert len(client.calls) == 1


def test_auto_ledger_hands_the_queue_operations_to_the_ledger_it_chose(tmp_path: Path) -> None:
    """`auto` over a working file ledger: give back, move up and stretch reach the file; once
    degraded to `none`, they do nothing."""
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    degrades: list[LedgerError] = []
    ledger = FallbackLedger(inner, degrades.append, clock.time)
    a, b, c = someone(n=1), someone(n=2), someone(n=3)
    for who in (a, b, c):
        ledger.reserve(KEY, 121, 0, who)
    assert ledger.give_back(KEY, b.id) == "marked"
    assert ledger.advance(KEY, c.id, clock.now) == clock.now + 121
    assert ledger.stretch(KEY, a.id, clock.now + 125) is True
    assert [(s.holder, s.until) for s in ledger.queue(KEY, 121)] == [
        (a, clock.now + 125), (c, clock.now + 242)]
    assert degrades == []
    degraded = FallbackLedger(BrokenLedger(), degrades.append, clock.time)
    degraded.reserve(KEY, 121, 0, a)
    assert len(degrades) == 1
    assert degraded.queue(KEY, 121) == []
    assert (degraded.give_back(KEY, a.id), degraded.advance(KEY, a.id, clock.now),
            degraded.stretch(KEY, a.id, clock.now + 125)) == ("absent", None, False)


def test_explicit_ledger_failure_is_exit_7() -> None:
    coordinator, client, _ = run(make_settings(), [OK], ledger=BrokenLedger())
    with pytest.raises(LedgerError) as info:
        coordinator.run(client)
    assert info.value.exit_code == 7
    assert client.calls == []


def test_slots_are_spaced_slightly_wider_than_the_limit(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, client, _ = run(make_settings(), [OK, OK], ledger=ledger, clock=clock)
    coordinator.run(client)
    other, other_call, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    other.run(other_call)
    # 120 s + a 1 s guard: calls that arrive with different delays still land 120 s apart.
    assert clock.sleeps and sum(clock.sleeps) == pytest.approx(121)


class SlowLedger(Ledger):
    """A real file ledger behind a slow link: every operation advances the fake clock."""

    def __init__(self, inner: Ledger, clock: FakeClock, peek_s: float, reserve_s: float) -> None:
        self.inner, self.clock = inner, clock
        self.peek_s, self.reserve_s = peek_s, reserve_s
        self.description = "slow"

    def peek(self, key: str, interval: float) -> float:
        self.clock.now += self.peek_s
        return self.inner.peek(key, interval)

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        slot = self.inner.reserve(key, interval, not_before, holder)  # decided at the start...
        self.clock.now += self.reserve_s  # ...stored only after the round trips
        return slot

    def queue(self, key: str, interval: float) -> list[Slot]:
        return self.inner.queue(key, interval)

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        return self.inner.advance(key, holder_id, earliest)


def test_slow_ledger_slot_starts_after_it_is_stored(tmp_path: Path) -> None:
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    ledger = SlowLedger(inner, clock, peek_s=0.4, reserve_s=0.8)
    coordinator, client, log = run(make_settings(rate_limit_interval=10), [OK], ledger=ledger,
                                   clock=clock)
    start = clock.now
    coordinator.run(client)
    slot = coordinator.progress.slot_at
    # Asked for two peeks' time (0.8 s) after the peek returned: stored by then.
    assert slot is not None and slot == at(start + 0.4 + 0.8)
    # The call leaves at the slot, not 0.8 s after it: the next job's slot (slot + spacing)
    # is then at least one interval after our call.
    assert client.calls == [at(slot)]
    assert not [m for k, m in log.lines if k == "warning"]


def test_a_ledger_that_stores_in_exactly_the_guard_keeps_the_slot(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = SlowLedger(file_ledger(tmp_path, clock), clock, peek_s=0.0, reserve_s=1.0)
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    assert coordinator.progress.slot_at == start
    assert client.calls == [start + 1.0]  # 1 s late: what the guard between slots absorbs
    assert log.titled == []


class SlowerLedger(SlowLedger):
    """Each reservation takes longer to store than the one before (a congested git remote)."""

    def __init__(self, inner: Ledger, clock: FakeClock, reserve_s: list[float]) -> None:
        super().__init__(inner, clock, peek_s=0.01, reserve_s=0.0)
        self.times = list(reserve_s)

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        self.reserve_s = self.times.pop(0)
        return super().reserve(key, interval, not_before, holder)


def test_a_ledger_slower_each_time_gets_three_reservations_then_the_call_goes_late(
        tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = SlowerLedger(file_ledger(tmp_path, clock), clock, [5.0, 10.0, 20.0, 40.0])
    coordinator, client, log = run(make_settings(rate_limit_interval=10), [OK], ledger=ledger,
                                   clock=clock)
    start = clock.now
    coordinator.run(client)
    # 1st: 2 peeks' time (0.02 s) after the peek; 2nd and 3rd: 1.5 times the last storing time
    # after it was stored.
    first, second, third = start + 0.03, start + 5.01 + 7.5, start + 15.01 + 15.0
    assert log.titled == [
        ("Slow ledger", f"The ledger took {took} s to store slot {iso(slot)}, longer than the "
                        "guard between slots; reserving a later one so calls stay one interval "
                        "apart.")
        for took, slot in (("5.0", first), ("10.0", second))]
    assert coordinator.progress.slot_at == at(third)
    assert client.calls == [at(start + 35.02)]  # stored 5 s past it: the third one is kept


def test_slot_stored_too_late_is_given_up_for_a_later_one(tmp_path: Path) -> None:
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    # Peeks are fast but storing takes 5 s (lost CAS races): the first slot is past on return.
    ledger = SlowLedger(inner, clock, peek_s=0.01, reserve_s=5.0)
    coordinator, client, log = run(make_settings(rate_limit_interval=10), [OK], ledger=ledger,
                                   clock=clock)
    coordinator.run(client)
    assert any("Slow ledger" in m or "took" in m for k, m in log.lines if k == "warning")
    slot = coordinator.progress.slot_at
    assert slot is not None
    assert client.calls == [at(slot)]  # the call leaves on its slot, not late


# --- position: every job of a burst, at the real interval ----------------------------------------


@pytest.mark.parametrize("late_start", [0.0, 3.0, 0.4])
def test_position_counts_the_reservations_ahead_at_every_place(tmp_path: Path,
                                                               late_start: float) -> None:
    """Five jobs start together (one of them `late_start` s after the first) at 120 s: each
    reports how many jobs are ahead of it, whatever the guard between slots."""
    start = 1_700_000_000.0
    path = tmp_path / "ledger.json"
    positions, slots = [], []
    for number in range(5):
        clock = FakeClock(start + (late_start if number == 2 else 0.0))
        ledger = open_ledger(f"file://{path}", LedgerContext(now=clock.time))
        coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
        # Every job reserves before any of them calls: run them one after another, each on its
        # own clock that starts at the common start (the fake clocks never sleep into another).
        coordinator.run(client)
        positions.append(coordinator.progress.position)
        slots.append(client.calls[0])
    assert positions == [0, 1, 2, 3, 4]
    spacing = coordinator.spacing
    assert slots == at([start + k * spacing for k in range(5)])


def test_position_ignores_small_clock_differences_between_jobs(tmp_path: Path) -> None:
    """A job whose clock is a little behind the first job's still counts one job ahead."""
    path = tmp_path / "ledger.json"
    first = FakeClock(1_700_000_000.5)
    coordinator, client, _ = run(make_settings(), [OK], clock=first,
                                 ledger=open_ledger(f"file://{path}",
                                                    LedgerContext(now=first.time)))
    coordinator.run(client)
    second = FakeClock(1_700_000_000.0)
    coordinator, client, _ = run(make_settings(), [OK], clock=second,
                                 ledger=open_ledger(f"file://{path}",
                                                    LedgerContext(now=second.time)))
    coordinator.run(client)
    assert coordinator.progress.position == 1


@pytest.mark.parametrize(("retries", "said"), [(0, "It was not retried (`retries: 0`)."),
                                               (1, "It was retried 1 time."),
                                               (2, "It was retried 2 times.")])
def test_the_fix_says_how_often_a_transient_failure_was_retried(retries: int, said: str) -> None:
    coordinator, client, _ = run(make_settings(retries=retries, max_wait=10_000),
                                 [transient(False)] * 5)
    with pytest.raises(NetworkError) as info:
        coordinator.run(client)
    assert len(client.calls) == retries + 1
    assert info.value.hint.startswith(said), info.value.hint
    assert "retried" not in info.value.hint.removeprefix(said)


@pytest.mark.parametrize(("reached", "max_wait"), [(True, 100.0), (False, 1.0)])
def test_a_retry_that_does_not_fit_in_max_wait_is_not_attempted(reached: bool,
                                                               max_wait: float) -> None:
    """The pause before a retry (a full interval, or a 1-2 s backoff) would end past the
    deadline: fail at once with the cause, never call past max-wait."""
    coordinator, client, _ = run(make_settings(max_wait=max_wait), [transient(reached), OK])
    error_type = ServerError if reached else NetworkError
    with pytest.raises(error_type) as info:
        coordinator.run(client)
    assert len(client.calls) == 1
    assert "no retry fits in max-wait" in info.value.detail
    assert coordinator.clock.time() - client.calls[0] == 0  # nothing was slept


def test_a_job_sets_up_http_shortly_before_a_far_slot(tmp_path: Path) -> None:
    """Jobs that start together reserve first; only the one whose slot is near imports the HTTP
    stack at once, the others just before their own slot."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 240, 0)
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    assert client.prepared_at == at(start + 240 - PREPARE_LEAD)
    assert client.calls == [at(start + 240)]


def test_a_job_whose_slot_is_near_asks_for_one_after_its_set_up(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    client.setup = 3.0  # more than the 1 s guard at 120 s: the guard absorbs 1 s of it
    start = clock.now
    coordinator.run(client)
    assert client.prepared_at == start  # right after reserving
    # The slot starts once the call is set up, so it is not late for the job after it.
    assert coordinator.progress.slot_at == at(start + 2.0)
    assert client.calls == [at(start + 2.0)]


def test_set_up_within_the_guard_costs_no_wait(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    client.setup = 0.4
    start = clock.now
    coordinator.run(client)
    assert client.calls == [start]


def late_set_up_with_another_job_next(tmp_path: Path, interval: float,
                                      takes: float) -> tuple[Coordinator, ScriptedClient, Log]:
    """A call whose set-up makes it `takes` s late, while the job after us reserves the next
    slot."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator = Coordinator(make_settings(rate_limit_interval=interval), ledger=ledger,
                              clock=clock, log=(log := Log()))
    # The job after us reserves one spacing later.
    call = ScriptedClient(clock, [OK], prepare_takes=takes,
                          meanwhile=lambda: ledger.reserve(KEY, coordinator.spacing))
    coordinator.run(call)
    return coordinator, call, log


@pytest.mark.parametrize(("interval", "takes"), [(120.0, 5.0), (0.5, 0.3)])
def test_a_late_set_up_gives_its_slot_up_when_another_job_holds_the_next(
        tmp_path: Path, interval: float, takes: float) -> None:
    """Later than the guard (1 s at 120 s, 0.1 s at 0.5 s): calling now would land closer than
    one interval to the next job's call."""
    start = FakeClock().now
    coordinator, call, log = late_set_up_with_another_job_next(tmp_path, interval, takes)
    # Not at start + takes (too close to the other job's call), but after the other job's slot.
    assert call.calls == [at(start + 2 * coordinator.spacing)]
    assert coordinator.progress.attempts == 1
    assert log.titled == [("Late slot", f"Setting up the call took until {takes:.1f} s after its "
                           "slot, longer than the guard between slots, and another job holds the "
                           "next one; reserving a later slot so calls stay one interval apart.")]


def test_a_set_up_late_by_exactly_the_guard_keeps_its_slot(tmp_path: Path) -> None:
    """The guard absorbs that much lateness: 1 s late at 120 s still keeps 120 s to the next."""
    start = FakeClock().now
    _, call, log = late_set_up_with_another_job_next(tmp_path, 120.0, 1.0)
    assert call.calls == [start + 1.0]
    assert log.titled == []


def test_a_late_set_up_alone_calls_late(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=Log())
    call = ScriptedClient(clock, [OK], prepare_takes=5.0)
    start = clock.now
    coordinator.run(call)
    assert call.calls == [at(start + 5.0)]


def test_reserve_waits_for_its_turn_in_the_same_queue_and_sends_nothing(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    first, first_call, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    first.run(first_call)  # a distribute took the slot at `start`
    reserving, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    slot = reserving.reserve()
    assert slot == at(start + reserving.spacing)
    assert clock.now == at(slot)  # returns at the slot, not before
    progress = reserving.progress
    assert (progress.attempts, progress.http_status) == (0, None)  # no call of its own
    assert progress.called_at == at(slot) and progress.slot_at == at(slot)
    assert progress.position == 1
    assert any("Reserved slot" in message for _, message in log.lines)


def test_a_reserved_slot_is_held_longer_for_the_callers_start_up(tmp_path: Path) -> None:
    """The other tool's call starts after this process ends: the next job's slot leaves room."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    reserving, _, _ = run(make_settings(), [], ledger=ledger, clock=clock)
    slot = reserving.reserve()
    after, after_call, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    after.run(after_call)
    assert after_call.calls == [at(slot + after.spacing + CALLER_ALLOWANCE)]


def test_reserve_past_max_wait_fails_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    for _ in range(3):
        ledger.reserve(KEY, 121, 0)
    reserving, _, _ = run(make_settings(max_wait=200), [], ledger=ledger, clock=clock)
    with pytest.raises(RateLimited) as info:
        reserving.reserve()
    assert clock.sleeps == []
    assert info.value.eta == at(clock.now + 363)


def test_an_answer_later_than_the_guard_stretches_the_slot(tmp_path: Path) -> None:
    """Streampixel counted from when the call arrived, some time before the answer: the slot
    now ends one interval after the answer, and so does the next free slot."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    call = ScriptedClient(clock, [OK], answer_takes=3.0)
    coordinator.run(call)
    assert [s.until for s in ledger.queue(KEY, 121)] == [start + 123]
    assert ledger.peek(KEY, 121) == start + 123
    assert log.starting("The answer came") == [
        f"The answer came 3.00 s after our slot: the slot now lasts until {iso(start + 123)}, "
        "one interval after it, and the next job calls no earlier."]
    # The next job's slot begins there.
    after, after_call, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    after.run(after_call)
    assert after_call.calls == [at(start + 123)]


def test_an_answer_within_the_guard_leaves_the_slot_as_it_was(tmp_path: Path) -> None:
    """1 s at 120 s: the guard between slots absorbs it, and the ledger is not even asked (on a
    git ledger that would be a fetch)."""
    clock = FakeClock()
    ledger = CountingLedger(file_ledger(tmp_path, clock))
    start = clock.now
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    coordinator.run(ScriptedClient(clock, [OK], answer_takes=1.0))
    assert [s.until for s in ledger.queue(KEY, 121)] == [start + 121]
    assert ledger.stretches == 0
    assert not log.starting("The answer came")


def test_a_job_behind_a_stretched_slot_calls_after_it_and_stretches_its_own(
        tmp_path: Path) -> None:
    """Job 1 calls at `start`; we (job 2) and job 3 queued behind it. Job 1's answer comes 3 s
    late and it stretches its slot: we call at its end, not at our slot, and keep our slot
    (job 3 waits for us in turn, as we waited for job 1); our own answer is then past our
    slot's end, so we stretch ours for job 3."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    first, third = someone(n=1), someone(n=3)
    ledger.reserve(KEY, 121, 0, first)
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)

    def the_others_go_on() -> None:  # 3 s before our slot
        ledger.reserve(KEY, 121, 0, third)
        assert ledger.stretch(KEY, first.id, start + 123)

    call = ScriptedClient(clock, [OK], meanwhile=the_others_go_on)
    coordinator.run(call)
    assert call.calls == [at(start + 123)]
    assert log.titled == []  # no "Late slot": job 3 waits for our end
    assert log.starting("The call before ours") == [
        f"The call before ours was answered late and its job stretched its slot to "
        f"{iso(start + 123)}: calling then, 2.00 s after our slot, so the calls reach "
        "Streampixel one interval apart."]
    assert log.starting("Calling") == [
        "Calling distribute-file (attempt 1, 2.00 s after its slot) for the test."]
    seen = ledger.queue(KEY, 121)
    assert [(s.holder and s.holder.id, s.at, s.until) for s in seen] == [
        (first.id, start, start + 123),
        (coordinator.progress.holder_id, start + 121, start + 243),
        (third.id, start + 242, start + 363)]


def test_a_stretched_slot_ahead_that_ends_past_max_wait_fails_with_its_end(
        tmp_path: Path) -> None:
    """The job ahead's answer took 50 s: its slot ends past our deadline, so we fail with that
    ETA instead of calling later than `max-wait` allows."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    first = someone(n=1)
    ledger.reserve(KEY, 121, 0, first)
    coordinator, _, _ = run(make_settings(max_wait=150), [], ledger=ledger, clock=clock)
    call = ScriptedClient(clock, [OK],
                          meanwhile=lambda: ledger.stretch(KEY, first.id, start + 170))
    with pytest.raises(RateLimited) as info:
        coordinator.run(call)
    assert info.value.eta == at(start + 170)
    assert f"past the max-wait deadline {iso(start + 150)}" in str(info.value)
    assert call.calls == []


def test_a_late_answer_to_a_call_that_failed_on_the_server_stretches_the_slot_too(
        tmp_path: Path) -> None:
    """An HTTP 503 may have used the account's window: the retry comes a full interval after
    the answer, in the slot after the stretched one."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    call = ScriptedClient(clock, [transient(True), OK], answer_takes=2.0)
    coordinator.run(call)
    assert call.calls == [at(start), at(start + 122)]
    assert len(log.starting("The answer came")) == 2


class CancelAfter(FakeClock):
    """Cancelled (SIGTERM) once `after` seconds have been slept."""

    def __init__(self, after: float) -> None:
        super().__init__()
        self.after = after

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if sum(self.sleeps) >= self.after and not self.shielded:
            raise Cancelled(15, "received SIGTERM")


def someone(command: str = "distribute", n: int = 1) -> Holder:
    return Holder(f"{n:012x}", command, "65de0000000000000000b00" + str(n),
                  f"acme/game{n} run 8{n} attempt 1 job ship")


def test_the_wait_names_the_holders_ahead_and_the_next_one(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ahead = [someone("upload", 1), someone("distribute", 2)]
    for holder in ahead:
        ledger.reserve(KEY, 121, 0, holder)
    me = Holder("", "distribute", "65de0000000000000000b009", "acme/me run 9 job ship")
    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=(log := Log()),
                              holder=me)
    start = clock.now
    coordinator.run(ScriptedClient(clock, [OK]))
    reserved = next(m for _, m in log.lines if m.startswith("Reserved slot"))
    assert "position 2" in reserved
    assert (f"ahead: {ahead[0].label()} at {iso(start)}; {ahead[1].label()} at "
            f"{iso(start + 121)}.") in reserved
    beats = [m for _, m in log.lines if m.startswith("Waiting for")]
    assert f"next: {ahead[1].label()} until {iso(start + 242)}" in beats[0]
    # Once the first has had its turn, the heartbeat names the one still ahead.
    later = [m for m in beats if "ETA 1 min" in m or "ETA 2 min" in m]
    assert later and all(ahead[1].label() in m for m in later)
    # The queue the summary draws: both, and this job, by holder.
    mine = coordinator.progress.queue[coordinator.progress.holder_id]
    assert mine.holder is not None and mine.holder.origin == me.origin
    assert mine.at == at(start + 242)


@pytest.mark.parametrize(("jobs", "eta", "more"), [(3, "6 min 03 s", ""),
                                                 (4, "8 min 04 s", " and 1 more"),
                                                 (5, "10 min 05 s", " and 2 more")])
def test_the_reservation_line_names_three_jobs_ahead_and_counts_the_rest(
        tmp_path: Path, jobs: int, eta: str, more: str) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ahead = [someone("distribute", n) for n in range(1, jobs + 1)]
    for holder in ahead:
        ledger.reserve(KEY, 121, 0, holder)
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    names = "; ".join(f"{h.label()} at {iso(start + 121 * n)}" for n, h in enumerate(ahead[:3]))
    assert log.starting("Reserved slot") == [
        f"Reserved slot {iso(start + 121 * jobs)} on ledger {ledger.description} (position "
        f"{jobs}, in {eta}); ahead: {names}{more}."]
    # The reservation's holder id: 48 random bits, as every backend stores it.
    assert re.fullmatch(r"[0-9a-f]{12}", coordinator.progress.holder_id)


def test_a_reservation_that_ends_as_ours_is_made_is_not_ahead(tmp_path: Path) -> None:
    clock = FakeClock()
    start = clock.now
    ledger = file_ledger(tmp_path, clock)
    clock.now = start - 120
    ledger.reserve(KEY, 120, 0, someone(n=1))  # ends exactly at `start`
    clock.now = start
    ledger.reserve(KEY, 121, 0, someone(n=2))  # running from `start`
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    coordinator.run(client)
    assert log.starting("Reserved slot") == [
        f"Reserved slot {iso(start + 121)} on ledger {ledger.description} (position 1, in "
        f"2 min 01 s); ahead: {someone(n=2).label()} at {iso(start)}."]


def test_a_reservation_an_older_release_makes_after_ours_shows_in_the_queue(
        tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 121, 0, someone())
    path = tmp_path / "l.json"
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    original = clock.sleep

    def sleep(seconds: float) -> None:
        data = json.loads(path.read_text())
        if data["accounts"][KEY]["next_free"] == start + 242:  # after ours: an older release
            data["accounts"][KEY]["next_free"] += 121  # reserves, moving next_free alone
            path.write_text(json.dumps(data))
        original(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    coordinator.run(client)
    assert client.calls == [start + 121]
    older = [s for s in coordinator.progress.queue.values() if s.holder is None]
    assert older == [Slot(start + 242, start + 363, None)]


class HiddenQueue(Ledger):
    """A real file ledger whose queue cannot be read (a backend error on that one request)."""

    def __init__(self, inner: Ledger) -> None:
        self.inner, self.description = inner, inner.description

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        return self.inner.reserve(key, interval, not_before, holder)

    def peek(self, key: str, interval: float) -> float:
        return self.inner.peek(key, interval)

    def queue(self, key: str, interval: float) -> list[Slot]:
        raise LedgerError("the queue could not be read")


def test_a_queue_that_cannot_be_read_costs_the_names_not_the_run(tmp_path: Path) -> None:
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    inner.reserve(KEY, 121, 0, someone())
    coordinator, client, log = run(make_settings(), [OK], ledger=HiddenQueue(inner), clock=clock)
    start = clock.now
    coordinator.run(client)
    assert client.calls == [start + 121]
    # The position still counts the job ahead (from the slot's distance), with nobody named.
    assert log.starting("Reserved slot") == [
        f"Reserved slot {iso(start + 121)} on ledger {inner.description} (position 1, in "
        "2 min 01 s)."]
    assert log.starting("Waiting for")[0] == (
        f"Waiting for the account's rate-limit slot at {iso(start + 121)} (position 1); ETA "
        "2 min 01 s.")


def test_a_reservation_of_an_older_release_is_shown_ahead(tmp_path: Path) -> None:
    """A release that keeps no queue only moved `next_free`: the span it holds is named so."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 121, 0)
    path = tmp_path / "l.json"
    data = json.loads(path.read_text())
    del data["accounts"][KEY]["queue"]  # as the older release wrote it
    path.write_text(json.dumps(data))
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    assert log.starting("Reserved slot") == [
        f"Reserved slot {iso(start + 121)} on ledger {ledger.description} (position 1, in "
        f"2 min 01 s); ahead: a job of an older release at {iso(start)}."]
    assert log.starting("Waiting for")[0].endswith(
        f"; next: a job of an older release until {iso(start + 121)}.")


def test_a_call_and_a_dry_run_on_the_real_redis_ledger(redis_server: RedisServer) -> None:
    """Peeks and reservations against a real redis-server (its script works in microseconds of
    its own clock, so the fake clock does not move here: the server's would not follow)."""
    clock = FakeClock(1_700_000_000.5)  # mid-second: microsecond rounding keeps the ISO times
    ledger = open_ledger(redis_server.url(), LedgerContext(now=clock.time))
    settings = make_settings(user_id=secrets.token_hex(12))  # an account of this test alone
    coordinator, client, log = run(settings, [OK], ledger=ledger, clock=clock)
    start = clock.now
    coordinator.run(client)
    assert client.calls == [start]
    coordinator.dry_run("distribute-file")
    assert log.lines[-1] == ("info", f"Dry run: inputs are valid; the next slot for "
                             f"distribute-file on ledger {ledger.description} is "
                             f"{iso(start + 121)} (in 2 min 01 s). Nothing was reserved or sent.")


def test_on_the_real_redis_ledger_a_job_never_counts_itself_ahead(
        redis_server: RedisServer) -> None:
    """Redis converts its own clock to ours on every answer, a little differently each time: the
    queue may show our slot a few microseconds before the time `reserve` gave. We are still
    position 1, behind the one job ahead, and name only that job. (Only the reservation is
    checked: the fake clock then jumps to the slot, which the server's clock does not follow.)"""
    clock = FakeClock(1_700_000_000.5)
    ledger = open_ledger(redis_server.url(), LedgerContext(now=clock.time))
    settings = make_settings(user_id=secrets.token_hex(12))
    key = account_key(API, settings.user_id)
    ahead = someone()
    ledger.reserve(key, 121, 0, ahead)
    coordinator, client, log = run(settings, [OK], ledger=ledger, clock=clock)
    coordinator.run(client)
    reserved = log.starting("Reserved slot")
    assert len(reserved) == 1
    assert "(position 1, in 2 min 01 s); ahead: " + ahead.label() + " at " in reserved[0]
    assert reserved[0].count(" at 20") == 1, reserved[0]  # one job named, not us


def queued_behind_someone(tmp_path: Path, cancel_after: float,
                          wrap: Callable[[Ledger], Ledger] = lambda ledger: ledger,
                          ) -> tuple[CancelAfter, Ledger, Coordinator, Log]:
    """An upload job that queues behind one other job and is cancelled (SIGTERM) once it has
    slept `cancel_after` seconds: (its clock, the real file ledger, the coordinator, its log)."""
    clock = CancelAfter(cancel_after)
    ledger = file_ledger(tmp_path, clock)
    ledger.reserve(KEY, 121, 0, someone())
    log = Log()
    coordinator = Coordinator(make_settings(), ledger=wrap(ledger), clock=clock, log=log,
                              holder=someone("upload", 2)._replace(id=""))
    return clock, ledger, coordinator, log


def test_a_job_cancelled_while_it_waits_gives_its_slot_back(tmp_path: Path) -> None:
    clock, ledger, coordinator, log = queued_behind_someone(tmp_path, 60)
    with pytest.raises(Cancelled):
        coordinator.run(ScriptedClient(clock, [OK]))
    assert coordinator.progress.gave_back == "released"
    assert clock.shielded  # a second signal cannot cut the give-back short
    assert ledger.peek(KEY, 121) == at(clock.now - 60 + 121)  # the next job may call there
    assert [s.holder.id for s in ledger.queue(KEY, 121) if s.holder] == [someone().id]
    assert log.starting("Gave the slot back") == [
        "Gave the slot back: the next job may call in it."]


def test_a_cancelled_slot_with_a_job_behind_is_marked_and_nobody_moves(tmp_path: Path) -> None:
    clock, ledger, coordinator, log = queued_behind_someone(tmp_path, 60)
    original = clock.sleep

    def sleep_while_another_queues(seconds: float) -> None:
        if ledger.queue(KEY, 121)[-1].holder != someone(n=3):
            ledger.reserve(KEY, 121, 0, someone(n=3))  # a job queues behind ours
        original(seconds)

    clock.sleep = sleep_while_another_queues  # type: ignore[method-assign]
    with pytest.raises(Cancelled):
        coordinator.run(ScriptedClient(clock, [OK]))
    assert coordinator.progress.gave_back == "marked"
    assert log.starting("Gave the slot back") == [
        "Gave the slot back; jobs already queued behind it keep their turns, and the next job "
        "to reserve may take it."]
    queue = ledger.queue(KEY, 121)
    assert [(s.holder.id if s.holder else "", s.released) for s in queue] == [
        (someone().id, False), (coordinator.progress.holder_id, True), (someone(n=3).id, False)]
    assert ledger.peek(KEY, 121) == at(queue[-1].until)


def test_a_job_cancelled_as_its_slot_begins_has_nothing_to_give_back(tmp_path: Path) -> None:
    # The signal arrives as the wait for the slot ends.
    clock, ledger, coordinator, log = queued_behind_someone(tmp_path, 121)
    start = clock.now
    with pytest.raises(Cancelled):
        coordinator.run(ScriptedClient(clock, [OK]))
    assert clock.now == start + 121
    assert clock.shielded  # it asked the ledger
    assert coordinator.progress.gave_back == ""  # the ledger found the slot begun: nothing
    assert not log.starting("Gave the slot back")
    assert ledger.peek(KEY, 121) == at(start + 242)  # the slot stays used


class NoGiveBack(HiddenQueue):
    """A real file ledger that cannot be written when the slot is given back."""

    def queue(self, key: str, interval: float) -> list[Slot]:
        return self.inner.queue(key, interval)

    def give_back(self, key: str, holder_id: str) -> str:
        raise LedgerError("the ledger file is read-only")


def test_a_slot_that_cannot_be_given_back_is_kept_with_a_warning(tmp_path: Path) -> None:
    clock, inner, coordinator, log = queued_behind_someone(tmp_path, 60, NoGiveBack)
    with pytest.raises(Cancelled):
        coordinator.run(ScriptedClient(clock, [OK]))
    assert coordinator.progress.gave_back == ""
    assert log.titled == [("Slot kept", "Could not give the slot back: Rate-limit ledger "
                           "unavailable: the ledger file is read-only")]


class NoStretch(HiddenQueue):
    """A real file ledger that cannot be written after the call."""

    def queue(self, key: str, interval: float) -> list[Slot]:
        return self.inner.queue(key, interval)

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        raise LedgerError("the ledger file is read-only")


def test_a_slot_that_cannot_be_stretched_costs_a_warning_not_the_run(tmp_path: Path) -> None:
    clock = FakeClock()
    coordinator, _, log = run(make_settings(), [], ledger=NoStretch(file_ledger(tmp_path, clock)),
                              clock=clock)
    assert coordinator.run(ScriptedClient(clock, [OK], answer_takes=5.0)) is OK
    assert log.titled == [("Slot not stretched", "Could not stretch the slot to one interval "
                           "after the late answer: Rate-limit ledger unavailable: the ledger "
                           "file is read-only")]


class CancelledWhilePeeking(HiddenQueue):
    def peek(self, key: str, interval: float) -> float:
        raise Cancelled(15, "received SIGTERM")


def test_a_job_cancelled_before_it_reserved_touches_no_ledger(tmp_path: Path) -> None:
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    coordinator, client, log = run(make_settings(), [OK], ledger=CancelledWhilePeeking(inner),
                                   clock=clock)
    with pytest.raises(Cancelled):
        coordinator.run(client)
    assert not clock.shielded  # nothing to give back: no last words for the ledger
    assert (coordinator.progress.gave_back, log.lines) == ("", [])


def test_a_job_cancelled_after_its_call_gives_nothing_back(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)

    class CancelledInFlight(ScriptedClient):
        def send(self) -> Result:
            self.calls.append(self.clock.time())
            raise Cancelled(15, "received SIGTERM")

    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=Log(),
                              holder=someone()._replace(id=""))
    with pytest.raises(Cancelled):
        coordinator.run(CancelledInFlight(clock, []))
    assert coordinator.progress.gave_back == ""
    assert ledger.peek(KEY, 121) == at(clock.now + coordinator.spacing)  # the slot stays used


def test_a_waiting_job_moves_up_into_a_slot_given_back_ahead_of_it(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 121, 0, someone(n=1))
    ledger.reserve(KEY, 121, 0, someone(n=2))  # cancelled below, while we wait
    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=(log := Log()),
                              holder=someone("upload", 3)._replace(id=""))
    client = ScriptedClient(clock, [OK])
    original = clock.sleep

    def sleep(seconds: float) -> None:
        if clock.now >= start + 20 and ledger.queue(KEY, 121)[1].holder == someone(n=2):
            assert ledger.give_back(KEY, someone(n=2).id) == "marked"  # we are behind it
        original(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]
    coordinator.run(client)
    assert client.calls == [at(start + 121)]  # job 2's slot, not start + 242
    # Seen at the first look after job 2 gave it back (the step at start + 60).
    assert log.starting("Moved up to slot") == [
        f"Moved up to slot {iso(start + 121)} (in 1 min 01 s): a job ahead gave its slot back."]
    # Our old slot was the last: given back for real, so the next job calls right after us.
    assert ledger.peek(KEY, 121) == at(start + 242)
    queue = ledger.queue(KEY, 121)
    assert [s.holder.id for s in queue if s.holder] == [someone(n=1).id,
                                                         coordinator.progress.holder_id]
    assert coordinator.progress.slot_at == at(start + 121) and coordinator.progress.position == 1


def give_back_during_the_wait(clock: FakeClock, ledger: Ledger, holder: Holder,
                              after: float) -> None:
    """`holder` gives its slot back at the first step of our wait at or after `after` s."""
    start, original = clock.now, clock.sleep

    def sleep(seconds: float) -> None:
        if clock.now >= start + after and any(
                s.holder == holder and not s.released for s in ledger.queue(KEY, 121)):
            assert ledger.give_back(KEY, holder.id) == "marked"  # we are behind it
        original(seconds)

    clock.sleep = sleep  # type: ignore[method-assign]


def test_a_reserve_moves_up_into_a_slot_given_back_that_begins_now(tmp_path: Path) -> None:
    """A `reserve` (no call of its own to set up) takes a given-back slot that begins at the
    very moment it looks."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 120, 0, someone("reserve", 1))
    ledger.reserve(KEY, 131, 0, someone("reserve", 2))  # start + 120, cancelled at start + 90
    coordinator, _, _ = run(make_settings(), [], ledger=ledger, clock=clock)
    give_back_during_the_wait(clock, ledger, someone("reserve", 2), after=90)
    assert coordinator.reserve() == start + 120  # looked at start + 120: not start + 251
    assert clock.now == start + 120


def test_a_reserve_does_not_move_into_a_shorter_slot(tmp_path: Path) -> None:
    """A distribute's slot given back is too short for a `reserve`, which holds its slot
    CALLER_ALLOWANCE longer: it keeps its own."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 121, 0, someone(n=1))
    ledger.reserve(KEY, 121, 0, someone(n=2))
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    give_back_during_the_wait(clock, ledger, someone(n=2), after=90)
    assert coordinator.reserve() == start + 242
    assert not log.starting("Moved up")


@pytest.mark.parametrize(("begins", "called"), [(121.7, 121.7), (121.0, 242.0)])
def test_moving_up_leaves_twice_the_ledger_time_to_store_the_move(
        tmp_path: Path, begins: float, called: float) -> None:
    """The ledger took 0.5 s to store our reservation: a slot given back is taken only if it
    begins at least 1 s (two such round trips) after the look, at start + 120.5."""
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    start = clock.now
    inner.reserve(KEY, begins, 0, someone(n=1))
    inner.reserve(KEY, 121, 0, someone(n=2))  # given back at start + 90.5
    ledger = SlowLedger(inner, clock, peek_s=0.0, reserve_s=0.5)
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    give_back_during_the_wait(clock, inner, someone(n=2), after=90)
    coordinator.run(client)
    assert client.calls == [at(start + called)]


def test_moving_up_to_a_slot_just_far_enough_to_set_up_for_waits_no_more(
        tmp_path: Path) -> None:
    """At start + 120 a job that needs 3 s to set up moves into a slot 3 s away: it sets up at
    once and then waits exactly those 3 s."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 123, 0, someone(n=1))
    ledger.reserve(KEY, 121, 0, someone(n=2))  # start + 123, given back at start + 90
    coordinator, client, _ = run(make_settings(), [OK], ledger=ledger, clock=clock)
    client.setup = 3.0
    give_back_during_the_wait(clock, ledger, someone(n=2), after=90)
    coordinator.run(client)
    assert client.calls == [start + 123]
    assert client.prepared_at == start + 120
    assert clock.sleeps == [30, 30, 30, 30, 3]


def test_a_job_told_by_a_429_to_wait_moves_up_no_earlier_than_that(tmp_path: Path) -> None:
    """The server asked for 200 s: a slot given back at start + 121 is not taken, or the call
    would earn another 429."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now

    class OthersReserveMeanwhile(ScriptedClient):
        def send(self) -> Result:
            if not self.calls:  # two jobs reserve while our first call is on its way
                ledger.reserve(KEY, 121, 0, someone(n=1))
                ledger.reserve(KEY, 121, 0, someone(n=2))
            return super().send()

    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=Log())
    client = OthersReserveMeanwhile(clock, [too_many(200), OK])
    give_back_during_the_wait(clock, ledger, someone(n=1), after=0)
    coordinator.run(client)
    assert client.calls == [start, start + 363]  # after both, not in job 1's slot at 121


class CountingLedger(NoGiveBack):
    """A real file ledger that counts the reads of the queue and the requests to move up (each
    a round trip, on a git ledger a fetch or a push)."""

    def __init__(self, inner: Ledger) -> None:
        super().__init__(inner)
        self.reads = self.moves = self.stretches = 0

    def queue(self, key: str, interval: float) -> list[Slot]:
        self.reads += 1
        return self.inner.queue(key, interval)

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        self.moves += 1
        return self.inner.advance(key, holder_id, earliest)

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        self.stretches += 1
        return self.inner.stretch(key, holder_id, until)


def test_a_waiting_job_reads_the_queue_once_per_heartbeat(tmp_path: Path) -> None:
    """The reservation's read serves the first heartbeat; each later step reads once, for both
    the move-up check and the heartbeat, and the slot's start once more (a stretched slot
    ahead); nothing given back: no request to move up."""
    clock = FakeClock()
    inner = file_ledger(tmp_path, clock)
    inner.reserve(KEY, 121, 0, someone(n=1))
    inner.reserve(KEY, 121, 0, someone(n=2))
    ledger = CountingLedger(inner)
    coordinator, client, log = run(make_settings(), [OK], ledger=ledger, clock=clock)
    coordinator.run(client)
    beats = log.starting("Waiting for")
    assert len(beats) == 8  # every 30 s from the start until 3 s before the slot, 242 s away
    assert (ledger.reads, ledger.moves) == (len(beats) + 1, 0)


def test_a_job_set_up_for_its_slot_no_longer_moves_up(tmp_path: Path) -> None:
    """In the last PREPARE_LEAD seconds the call is ready on its slot: a slot given back then
    is left to others. At 1 s (a 1.1 s spacing) a step is 1 s, so the wait looks at 3.5 s."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ahead = [someone(n=n) for n in range(1, 6)]
    for holder in ahead:
        ledger.reserve(KEY, 1.1, 0, holder)  # the last one at start + 4.4
    coordinator, client, _ = run(make_settings(rate_limit_interval=1), [OK], ledger=ledger,
                                 clock=clock)
    give_back_during_the_wait(clock, ledger, ahead[-1], after=2.4)  # after the set-up, at 2.5
    coordinator.run(client)
    assert client.prepared_at == at(start + 2.5)
    assert client.calls == [at(start + 5.5)]


class Oversleeping(FakeClock):
    """A busy runner: every sleep ends 2 s late."""

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds + 2.0)


def test_a_reserve_that_wakes_late_alone_keeps_its_slot(tmp_path: Path) -> None:
    """2 s late (more than the 1 s guard), but nobody reserved after it: the slot, held
    CALLER_ALLOWANCE longer, still leaves the caller its room."""
    clock = Oversleeping()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 121, 0, someone())
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    assert coordinator.reserve() == start + 121
    assert clock.now == start + 123
    assert log.titled == []


def test_a_reserve_on_a_free_account_returns_at_once_at_a_short_interval(tmp_path: Path) -> None:
    """No call of its own to set up: the slot is now, even where the guard is only 0.2 s."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, _, _ = run(make_settings(rate_limit_interval=10), [], ledger=ledger,
                            clock=clock)
    start = clock.now
    assert coordinator.reserve() == start
    assert clock.sleeps == []


def test_a_set_up_later_than_a_whole_spacing_alone_calls_late_without_a_warning(
        tmp_path: Path) -> None:
    """Nobody reserved after us: calling now crowds nobody, however late it is."""
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    coordinator, _, log = run(make_settings(), [], ledger=ledger, clock=clock)
    call = ScriptedClient(clock, [OK], prepare_takes=130.0)
    start = clock.now
    coordinator.run(call)
    assert call.calls == [start + 130]
    assert log.titled == []
    # No second reservation: the first slot, stretched to one interval after the late call.
    assert ledger.peek(KEY, 121) == start + 130 + 120
    assert [s.until for s in ledger.queue(KEY, 121)] == [start + 250]


def test_nobody_moves_into_a_slot_too_close_to_get_ready_for(tmp_path: Path) -> None:
    clock = FakeClock()
    ledger = file_ledger(tmp_path, clock)
    start = clock.now
    ledger.reserve(KEY, 121, 0, someone(n=1))
    ledger.reserve(KEY, 121, 0, someone(n=2))
    coordinator = Coordinator(make_settings(), ledger=ledger, clock=clock, log=Log(),
                              holder=someone("upload", 3)._replace(id=""))
    client = ScriptedClient(clock, [OK], prepare_takes=5.0)  # needs 5 s to get ready, and says so
    client.setup = 5.0
    original = clock.sleep

    def sleep(seconds: float) -> None:
        # Job 2 gives its slot back 2 s before it begins: too late for us to get ready.
        if clock.now >= start + 119 and ledger.queue(KEY, 121)[1].holder == someone(n=2):
            ledger.give_back(KEY, someone(n=2).id)
        original(min(seconds, 1.0))

    clock.sleep = sleep  # type: ignore[method-assign]
    coordinator.run(client)
    assert client.calls[0] >= start + 242 - 1e-6


class RacedLedger(Ledger):
    """A real file ledger on which `others` other jobs reserve between our peek and our
    reserve (they started a moment after us and were quicker to write)."""

    def __init__(self, inner: Ledger, others: int) -> None:
        self.inner, self.others = inner, others
        self.description = "raced"

    def peek(self, key: str, interval: float) -> float:
        return self.inner.peek(key, interval)

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        for _ in range(self.others):
            self.inner.reserve(key, interval)
        self.others = 0
        return self.inner.reserve(key, interval, not_before, holder)


def test_a_slot_lost_between_peek_and_reserve_past_max_wait_fails_at_once(
        tmp_path: Path) -> None:
    """The peek promised a slot within max-wait; by the time we reserved, two other jobs had
    taken theirs and ours lies past the deadline: fail now (exit 5) with that slot as the ETA,
    instead of waiting for a call max-wait no longer allows."""
    clock = FakeClock()
    inner = open_ledger(f"file://{tmp_path}/l.json", LedgerContext(now=clock.time))
    key = account_key("http://127.0.0.1:9/pixelStripeApi", USER)
    coordinator, client, _ = run(make_settings(max_wait=300), [OK],
                                 ledger=RacedLedger(inner, others=3), clock=clock)
    spacing = coordinator.spacing
    inner.reserve(key, spacing)  # one job ahead: the peek says `spacing` from now, in time
    with pytest.raises(RateLimited) as info:
        coordinator.run(client)
    lost_to = clock.now + 4 * spacing  # the one ahead and the three that overtook us
    assert client.calls == []
    assert clock.sleeps == []
    assert info.value.eta == at(lost_to)
    assert info.value.exit_code == 5
    assert f"at least {math.ceil(4 * spacing) + 1} s" in info.value.hint
    assert info.value.detail == (f"the next free slot is {iso(lost_to)}, in 8 min 04 s, past the "
                                 f"max-wait deadline {iso(clock.now + 300)}")
    assert coordinator.progress.slot_at == at(lost_to)
    assert coordinator.progress.position == 4
    assert inner.peek(key, spacing) == at(lost_to + spacing)  # the slot stays taken: a gap
