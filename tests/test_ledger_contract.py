"""The slot-ledger contract (DESIGN.md §6), run against every backend in support.ledger_contract.

Real clocks, real stores. A slot is checked against the window [before, after] of the call that
returned it, widened by the backend's clock tolerance; intervals are long (minutes) next to the
milliseconds a call takes, so every expectation is exact up to that tolerance.
"""

from __future__ import annotations

import itertools
import secrets
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger.queue import Holder
from support.ledger_contract import BackendUnderTest

INTERVAL = 120.0


def timed(call: object) -> tuple[float, float, float]:
    """(before, result, after) for a zero-argument callable returning a slot."""
    assert callable(call)
    before = time.time()
    slot = float(call())
    return before, slot, time.time()


def test_first_reserve_is_now(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    before, slot, after = timed(lambda: ledger.reserve(key, INTERVAL))
    assert before - tol <= slot <= after + tol


def test_consecutive_reserves_are_one_interval_apart(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    slots = [ledger.reserve(key, INTERVAL) for _ in range(4)]
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert gaps == pytest.approx([INTERVAL] * 3, abs=tol)


def test_not_before_is_respected(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    not_before = time.time() + 3 * INTERVAL
    first = ledger.reserve(key, INTERVAL, not_before)
    assert not_before <= first <= not_before + tol
    # The next reservation follows the pushed-out one...
    assert ledger.reserve(key, INTERVAL) == pytest.approx(first + INTERVAL, abs=tol)
    # ...and a not_before earlier than next_free changes nothing.
    assert ledger.reserve(key, INTERVAL, time.time()) == pytest.approx(
        first + 2 * INTERVAL, abs=tol)
    # A not_before beyond next_free wins again.
    late = first + 10 * INTERVAL
    assert late <= ledger.reserve(key, INTERVAL, late) <= late + tol


def test_peek_does_not_reserve(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    before, peeked, after = timed(lambda: ledger.peek(key, INTERVAL))
    assert before - tol <= peeked <= after + tol
    before, peeked_again, after = timed(lambda: ledger.peek(key, INTERVAL))
    assert before - tol <= peeked_again <= after + tol  # still free: the first peek took nothing
    before, slot, after = timed(lambda: ledger.reserve(key, INTERVAL))
    assert before - tol <= slot <= after + tol
    # Once reserved, peek shows exactly the slot the next reserve gets, and does not take it.
    ahead = [ledger.peek(key, INTERVAL) for _ in range(3)]
    assert ahead == pytest.approx([slot + INTERVAL] * 3, abs=tol)
    assert ledger.reserve(key, INTERVAL) == pytest.approx(slot + INTERVAL, abs=tol)


def test_keys_are_independent(ledger_backend: BackendUnderTest) -> None:
    ledger, tol = ledger_backend.open(), ledger_backend.tolerance
    busy, other = ledger_backend.new_key(), ledger_backend.new_key()
    for _ in range(3):
        ledger.reserve(busy, INTERVAL)
    before, slot, after = timed(lambda: ledger.reserve(other, INTERVAL))
    assert before - tol <= slot <= after + tol
    before, peeked, after = timed(lambda: ledger.peek(ledger_backend.new_key(), INTERVAL))
    assert before - tol <= peeked <= after + tol


def test_slots_for_a_key_strictly_increase(ledger_backend: BackendUnderTest) -> None:
    ledger, key = ledger_backend.open(), ledger_backend.new_key()
    # Intervals well above the clock tolerance, so "strictly" is not a matter of rounding.
    slots = [ledger.reserve(key, 2.0 + (i % 3)) for i in range(12)]
    assert all(b > a for a, b in itertools.pairwise(slots))


def test_interval_changes_are_honoured(ledger_backend: BackendUnderTest) -> None:
    """next_free is set by the interval of the reservation that set it (GCRA)."""
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    s1 = ledger.reserve(key, 60.0)
    s2 = ledger.reserve(key, 5.0)
    s3 = ledger.reserve(key, 300.0)
    s4 = ledger.reserve(key, 60.0)
    assert [s2 - s1, s3 - s2, s4 - s3] == pytest.approx([60.0, 5.0, 300.0], abs=tol)


def test_a_second_instance_sees_the_first_ones_reservations(
    ledger_backend: BackendUnderTest,
) -> None:
    """Two jobs open the ledger separately; they must share it."""
    first, second = ledger_backend.open(), ledger_backend.open()
    key, tol = ledger_backend.new_key(), ledger_backend.tolerance
    slot = first.reserve(key, INTERVAL)
    assert second.peek(key, INTERVAL) == pytest.approx(slot + INTERVAL, abs=tol)
    assert second.reserve(key, INTERVAL) == pytest.approx(slot + INTERVAL, abs=tol)
    assert first.reserve(key, INTERVAL) == pytest.approx(slot + 2 * INTERVAL, abs=tol)


def test_description_names_the_store_without_secrets(ledger_backend: BackendUnderTest) -> None:
    ledger = ledger_backend.open()
    assert ledger.description
    for secret in ledger_backend.target.secrets:
        assert secret not in ledger.description


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(
    st.tuples(
        st.sampled_from(["reserve", "peek"]),
        st.floats(min_value=1.0, max_value=600.0),  # interval
        st.one_of(st.none(), st.floats(min_value=-600.0, max_value=1800.0)),  # not_before offset
    ),
    min_size=1, max_size=8,
))
def test_matches_the_gcra_model(
    ledger_backend: BackendUnderTest, ops: list[tuple[str, float, float | None]]
) -> None:
    """Any sequence of reserve/peek calls gives what slot = max(now, not_before, next_free) gives.

    The model's next_free is built from the slots actually returned, and `now` is bracketed by the
    call, so the expected slot is an interval [lo, hi] rather than a number.
    """
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    next_free = float("-inf")
    for op, interval, offset in ops:
        not_before = 0.0 if offset is None else time.time() + offset
        before = time.time()
        slot = (ledger.reserve(key, interval, not_before) if op == "reserve"
                else ledger.peek(key, interval))
        after = time.time()
        floor = next_free if op == "peek" else max(next_free, not_before)
        lo, hi = max(before, floor), max(after, floor)
        assert lo - tol <= slot <= hi + tol, (op, interval, offset)
        if op == "reserve":
            assert slot >= not_before
            next_free = slot + interval


# -- backends that store nothing ------------------------------------------------------------------


def _holder(command: str = "distribute") -> Holder:
    return Holder(secrets.token_hex(6), command, "65de0000000000000000b001",
                  f"acme/game run {secrets.randbelow(10_000)} job ship", "https://ci.example/1")


def test_the_queue_names_each_holder_in_order(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    holders = [_holder(command) for command in ("upload", "distribute", "reserve")]
    slots = [ledger.reserve(key, INTERVAL, holder=h) for h in holders]
    # Another instance (another job) sees the same queue.
    seen = ledger_backend.open().queue(key, INTERVAL)
    assert [s.holder for s in seen] == holders
    assert [s.at for s in seen] == pytest.approx(slots, abs=tol)
    assert [s.until - s.at for s in seen] == pytest.approx([INTERVAL] * 3, abs=tol)
    assert not any(s.released for s in seen)
    assert ledger.queue(ledger_backend.new_key(), INTERVAL) == []


def test_a_slot_given_back_by_the_last_job_is_free_again(ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    first, second = _holder(), _holder()
    ledger.reserve(key, INTERVAL, holder=first)
    given_back = ledger.reserve(key, INTERVAL, holder=second)
    assert ledger_backend.open().give_back(key, second.id) == "released"
    assert [s.holder for s in ledger.queue(key, INTERVAL)] == [first]
    assert ledger.peek(key, INTERVAL) == pytest.approx(given_back, abs=tol)
    third = _holder()
    assert ledger.reserve(key, INTERVAL, holder=third) == pytest.approx(given_back, abs=tol)
    assert ledger.give_back(key, second.id) == "absent"  # once only


def test_a_slot_with_a_job_after_it_is_marked_and_taken_by_the_next(
        ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    a, b, c = _holder(), _holder(), _holder()
    slots = [ledger.reserve(key, INTERVAL, holder=h) for h in (a, b, c)]
    assert ledger.give_back(key, b.id) == "marked"
    seen = ledger.queue(key, INTERVAL)
    assert [(s.holder, s.released) for s in seen] == [(a, False), (b, True), (c, False)]
    assert ledger.peek(key, INTERVAL) == pytest.approx(slots[2] + INTERVAL, abs=tol)  # nobody moved
    d = _holder()
    assert ledger.reserve(key, INTERVAL, holder=d) == pytest.approx(slots[1], abs=tol)
    assert [s.holder for s in ledger.queue(key, INTERVAL)] == [a, d, c]
    # The next one queues after c, as before.
    assert ledger.reserve(key, INTERVAL, holder=_holder()) == pytest.approx(
        slots[2] + INTERVAL, abs=tol)


def test_a_slot_already_begun_is_not_given_back(ledger_backend: BackendUnderTest) -> None:
    ledger, key = ledger_backend.open(), ledger_backend.new_key()
    now_holder = _holder()
    ledger.reserve(key, INTERVAL, holder=now_holder)  # begins at once: its call may be out
    assert ledger.give_back(key, now_holder.id) == "absent"
    assert ledger.give_back(ledger_backend.new_key(), now_holder.id) == "absent"


def test_a_waiting_job_moves_up_into_a_slot_given_back_ahead_of_it(
        ledger_backend: BackendUnderTest) -> None:
    """b is cancelled: c, queued behind it, moves up into b's slot, and c's own slot (the last)
    is given back in turn, so the next job gets it instead of one after it."""
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    a, b, c = _holder(), _holder(), _holder()
    slots = [ledger.reserve(key, INTERVAL, holder=h) for h in (a, b, c)]
    assert ledger.give_back(key, b.id) == "marked"
    moved = ledger_backend.open().advance(key, c.id, time.time())  # c's job, its own instance
    assert moved == pytest.approx(slots[1], abs=tol)
    seen = ledger.queue(key, INTERVAL)
    assert [(s.holder, s.released) for s in seen] == [(a, False), (c, False)]
    assert [s.at for s in seen] == pytest.approx(slots[:2], abs=tol)
    assert ledger.peek(key, INTERVAL) == pytest.approx(slots[2], abs=tol)
    assert ledger.reserve(key, INTERVAL, holder=_holder()) == pytest.approx(slots[2], abs=tol)
    assert ledger.advance(key, c.id, time.time()) is None  # nothing given back ahead any more


def test_a_job_moves_up_only_into_a_slot_given_back_ahead_and_in_time(
        ledger_backend: BackendUnderTest) -> None:
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    a, b, c, d = _holder(), _holder(), _holder(), _holder()
    slots = [ledger.reserve(key, INTERVAL, holder=h) for h in (a, b, c, d)]
    assert ledger.advance(key, d.id, time.time()) is None  # nothing was given back
    assert ledger.give_back(key, c.id) == "marked"
    # Too late for c's slot: d could not call by then, so nobody moves.
    assert ledger.advance(key, d.id, slots[2] + 1.0) is None
    assert ledger.advance(key, b.id, time.time()) is None  # c's slot is behind b's, not ahead
    assert ledger.advance(key, _holder().id, time.time()) is None  # not in the queue
    assert ledger.advance(key, a.id, time.time()) is None  # a's slot has begun
    assert ledger.advance(ledger_backend.new_key(), d.id, time.time()) is None  # another account
    seen = ledger.queue(key, INTERVAL)
    assert [(s.holder, s.released) for s in seen] == [
        (a, False), (b, False), (c, True), (d, False)]
    assert [s.at for s in seen] == pytest.approx(slots, abs=tol)
    assert ledger.peek(key, INTERVAL) == pytest.approx(slots[3] + INTERVAL, abs=tol)


def test_a_late_answer_stretches_its_slot_and_never_shrinks_one(
        ledger_backend: BackendUnderTest) -> None:
    """a's call was answered late: its slot lasts longer, b's stays where it was (b calls after
    a's end), and next_free moves only when the stretched slot is the last."""
    ledger, key, tol = ledger_backend.open(), ledger_backend.new_key(), ledger_backend.tolerance
    a, b = _holder(), _holder()
    slots = [ledger.reserve(key, INTERVAL, holder=h) for h in (a, b)]
    assert ledger_backend.open().stretch(key, a.id, slots[0] + INTERVAL + 5) is True
    seen = ledger.queue(key, INTERVAL)
    assert [s.holder for s in seen] == [a, b]
    assert [s.at for s in seen] == pytest.approx(slots, abs=tol)
    assert [s.until for s in seen] == pytest.approx(
        [slots[0] + INTERVAL + 5, slots[1] + INTERVAL], abs=tol)
    assert ledger.peek(key, INTERVAL) == pytest.approx(slots[1] + INTERVAL, abs=tol)
    # Shorter than it is, another holder, another account: nothing changes.
    assert ledger.stretch(key, a.id, slots[0] + INTERVAL + 1) is False
    assert ledger.stretch(key, _holder().id, slots[1] + 3 * INTERVAL) is False
    assert ledger.stretch(ledger_backend.new_key(), b.id, slots[1] + 3 * INTERVAL) is False
    # The last slot stretched: the next reservation follows its new end.
    assert ledger.stretch(key, b.id, slots[1] + INTERVAL + 7) is True
    assert ledger.peek(key, INTERVAL) == pytest.approx(slots[1] + INTERVAL + 7, abs=tol)
    assert ledger.reserve(key, INTERVAL, holder=_holder()) == pytest.approx(
        slots[1] + INTERVAL + 7, abs=tol)
    assert [s.until for s in ledger.queue(key, INTERVAL)][:2] == pytest.approx(
        [slots[0] + INTERVAL + 5, slots[1] + INTERVAL + 7], abs=tol)


def test_nonstoring_backend_never_blocks(nonstoring_ledger_backend: BackendUnderTest) -> None:
    ledger = nonstoring_ledger_backend.open()
    key, tol = nonstoring_ledger_backend.new_key(), nonstoring_ledger_backend.tolerance
    for _ in range(5):
        before, slot, after = timed(lambda: ledger.reserve(key, INTERVAL, holder=_holder()))
        assert before - tol <= slot <= after + tol
        before, peeked, after = timed(lambda: ledger.peek(key, INTERVAL))
        assert before - tol <= peeked <= after + tol
    assert ledger.description


def test_nonstoring_backend_has_no_queue_to_give_back_to(
        nonstoring_ledger_backend: BackendUnderTest) -> None:
    """Nothing was stored, so a cancelled job has nothing to give back and nobody moves up."""
    ledger, key = nonstoring_ledger_backend.open(), nonstoring_ledger_backend.new_key()
    holder = _holder()
    ledger.reserve(key, INTERVAL, time.time() + INTERVAL, holder=holder)
    assert ledger.queue(key, INTERVAL) == []
    assert ledger.give_back(key, holder.id) == "absent"
    assert ledger.advance(key, holder.id, time.time()) is None
    assert ledger.stretch(key, holder.id, time.time() + 2 * INTERVAL) is False


def test_ledger_errors_carry_a_fix() -> None:
    """The one failure every backend shares: an unknown scheme."""
    from streampixel_distribute.ledger import open_ledger

    with pytest.raises(LedgerError) as caught:
        open_ledger("ftp://example.invalid/ledger")
    assert caught.value.hint
