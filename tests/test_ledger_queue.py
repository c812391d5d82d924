"""The queue's logic (ledger/queue.py), as pure functions: what every Python backend runs inside
its atomic step. Property tests drive random reserve / give-back sequences and check that no two
live reservations ever overlap, whatever was given back and taken again."""

from __future__ import annotations

import itertools
import secrets

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streampixel_distribute.ledger.queue import (
    MAX_AHEAD,
    QUEUE_FORMAT,
    Holder,
    Slot,
    advance,
    decode,
    encode,
    give_back,
    prune,
    stretch,
    take,
    unknown_span,
)

SPACING = 121.0
NOW = 1_800_000_000.0


def holder(command: str = "distribute") -> Holder:
    return Holder(secrets.token_hex(6), command, "65de0000000000000000b001", "acme/game run 7")


def reserve(state: tuple[list[Slot], float], now: float, who: Holder, duration: float = SPACING,
            earliest: float | None = None) -> tuple[list[Slot], float, float]:
    slots, next_free = state
    return take(slots, next_free, now=now, earliest=now if earliest is None else earliest,
                duration=duration, holder=who)


def test_reservations_queue_up_one_spacing_apart_with_their_holders() -> None:
    state: tuple[list[Slot], float] = ([], -float("inf"))
    holders = [holder() for _ in range(3)]
    at = []
    for who in holders:
        slots, next_free, slot = reserve(state, NOW, who)
        state = (slots, next_free)
        at.append(slot)
    assert at == [NOW, NOW + SPACING, NOW + 2 * SPACING]
    assert [s.holder for s in state[0]] == holders
    assert state[1] == NOW + 3 * SPACING


def test_a_stretched_slot_only_grows_and_carries_next_free_when_it_is_the_last() -> None:
    a, b = holder(), holder()
    state: tuple[list[Slot], float] = ([], -float("inf"))
    for who in (a, b):
        slots, next_free, _ = reserve(state, NOW, who)
        state = (slots, next_free)
    slots, next_free = state
    grown, free, changed = stretch(slots, next_free, a.id, until=NOW + SPACING + 2)
    assert changed and free == next_free  # b's slot is still the last
    assert grown == [Slot(NOW, NOW + SPACING + 2, a), slots[1]]
    assert stretch(grown, free, a.id, until=NOW + SPACING + 1) == (grown, free, False)
    assert stretch(grown, free, "0" * 12, until=NOW + 9 * SPACING) == (grown, free, False)
    last, free, changed = stretch(grown, free, b.id, until=NOW + 2 * SPACING + 3)
    assert changed and free == NOW + 2 * SPACING + 3
    assert last[1] == Slot(NOW + SPACING, NOW + 2 * SPACING + 3, b)
    # A slot given back is nobody's to stretch.
    given, free, _ = give_back(last, free, b.id, now=NOW)
    assert stretch(given, free, b.id, until=NOW + 9 * SPACING) == (given, free, False)


def test_the_last_slot_given_back_rolls_next_free_back() -> None:
    first, second = holder(), holder()
    slots, next_free, _ = reserve(([], 0.0), NOW, first)
    slots, next_free, slot = reserve((slots, next_free), NOW, second)
    slots, next_free, outcome = give_back(slots, next_free, second.id, now=NOW + 1)
    assert outcome == "released"
    assert next_free == slot == NOW + SPACING  # the next job calls there: one spacing after
    assert [s.holder for s in slots] == [first]
    _, _, again = reserve((slots, next_free), NOW + 2, holder())
    assert again == NOW + SPACING


def test_a_slot_with_someone_after_it_is_marked_and_taken_by_the_next_job_that_fits() -> None:
    a, b, c = holder(), holder(), holder()
    state: tuple[list[Slot], float] = ([], 0.0)
    for who in (a, b, c):
        slots, next_free, _ = reserve(state, NOW, who)
        state = (slots, next_free)
    slots, next_free, outcome = give_back(*state, b.id, now=NOW + 5)
    assert outcome == "marked"
    assert next_free == state[1]  # nobody moved
    assert [s.released for s in slots] == [False, True, False]
    d = holder()
    slots, next_free, slot = reserve((slots, next_free), NOW + 6, d)
    assert slot == NOW + SPACING  # b's slot, not one after c
    assert [s.holder for s in slots] == [a, d, c]
    assert not any(s.released for s in slots)
    # A call that needs longer than the released slot (a reserve's hold) does not fit there.
    slots2, _, outcome = give_back(slots, next_free, d.id, now=NOW + 7)
    assert outcome == "marked"
    _, _, longer = reserve((slots2, next_free), NOW + 8, holder("reserve"),
                           duration=SPACING + 10)
    assert longer == next_free


def test_a_slot_already_begun_or_unknown_is_not_given_back() -> None:
    who = holder()
    slots, next_free, _ = reserve(([], 0.0), NOW, who)
    assert give_back(slots, next_free, who.id, now=NOW)[2] == "absent"  # its call may be out
    assert give_back(slots, next_free, "0123456789ab", now=NOW - 1)[2] == "absent"


def test_a_reservation_by_an_older_release_stops_the_roll_back_and_is_shown() -> None:
    who = holder()
    slots, next_free, _ = reserve(([], 0.0), NOW, who)
    slots, next_free, mine = reserve((slots, next_free), NOW, holder())
    older = next_free + SPACING  # an older release moved next_free and kept no queue entry
    released = give_back(slots, older, slots[-1].holder.id, now=NOW + 1)  # type: ignore[union-attr]
    assert released[2] == "marked" and released[1] == older
    span = unknown_span(slots, older, SPACING, now=NOW + 1)
    assert span == Slot(next_free, older, None)
    assert unknown_span(slots, next_free, SPACING, now=NOW + 1) is None
    assert unknown_span([], older, SPACING, now=older) is None  # over
    assert mine == NOW + SPACING


def test_given_back_slots_before_the_last_one_roll_back_with_it() -> None:
    a, b, c = holder(), holder(), holder()
    state: tuple[list[Slot], float] = ([], 0.0)
    for who in (a, b, c):
        slots, next_free, _ = reserve(state, NOW, who)
        state = (slots, next_free)
    slots, next_free, _ = give_back(*state, b.id, now=NOW + 1)
    slots, next_free, outcome = give_back(slots, next_free, c.id, now=NOW + 1)
    assert outcome == "released"
    assert next_free == NOW + SPACING  # back to b's start: nobody after either
    assert [s.holder for s in slots] == [a]


def test_the_queue_keeps_the_future_and_the_last_past_slot_bounded() -> None:
    slots = [Slot(NOW + i * SPACING, NOW + (i + 1) * SPACING, holder()) for i in range(-3, 40)]
    kept = prune(slots, NOW + 1)
    assert kept[0].at == NOW - SPACING  # the last one that ended
    assert kept[1].at == NOW
    assert len(kept) == 1 + MAX_AHEAD


def test_encode_decode_round_trip_and_garbage_is_ignored() -> None:
    slots = [Slot(NOW, NOW + SPACING, holder()),
             Slot(NOW + SPACING, NOW + 2 * SPACING, None, released=True)]
    assert decode(encode(slots)) == slots
    for raw in (None, 5, {"v": QUEUE_FORMAT + 1, "slots": []}, {"v": QUEUE_FORMAT, "slots": 3},
                {"v": QUEUE_FORMAT, "slots": [{"at": "x", "until": 1}, {"at": 2, "until": 1},
                                               {"at": True, "until": 3}, 7]}):
        assert decode(raw) == []
    hostile = {"v": QUEUE_FORMAT, "slots": [{"at": NOW, "until": NOW + 1, "by": {
        "id": "0123456789ab", "cmd": "distribute\n::add-mask::x", "origin": "é" * 500}}]}
    [slot] = decode(hostile)
    assert slot.holder is not None
    assert "\n" not in slot.holder.command and len(slot.holder.origin) <= 160
    bad_id = {"v": QUEUE_FORMAT, "slots": [{"at": NOW, "until": NOW + 1, "by": {"id": "x y"}}]}
    assert decode(bad_id)[0].holder is None


def test_jobs_behind_a_given_back_slot_move_up_one_by_one() -> None:
    a, b, c, d = holder(), holder(), holder(), holder()
    state: tuple[list[Slot], float] = ([], 0.0)
    for who in (a, b, c, d):
        slots, next_free, _ = reserve(state, NOW, who)
        state = (slots, next_free)
    slots, next_free, _ = give_back(*state, b.id, now=NOW + 1)
    # c moves into b's slot; its own is given back in turn (d is behind it: marked).
    slots, next_free, moved = advance(slots, next_free, c.id, now=NOW + 2, earliest=NOW + 5)
    assert moved == NOW + SPACING
    assert [(s.holder, s.released) for s in slots] == [
        (a, False), (c, False), (c, True), (d, False)]
    # d moves into c's old slot; its own was the last: released, next_free rolls back.
    slots, next_free, moved = advance(slots, next_free, d.id, now=NOW + 3, earliest=NOW + 5)
    assert moved == NOW + 2 * SPACING
    assert [(s.holder, s.released) for s in slots] == [(a, False), (c, False), (d, False)]
    assert next_free == NOW + 3 * SPACING
    # Nothing given back ahead, or too soon to get ready for: nobody moves.
    assert advance(slots, next_free, d.id, now=NOW + 4, earliest=NOW + 5)[2] is None
    slots2, next2, _ = give_back(slots, next_free, c.id, now=NOW + 4)
    assert advance(slots2, next2, d.id, now=NOW + 4,
                   earliest=NOW + SPACING + 1)[2] is None


OPS = st.lists(st.tuples(st.sampled_from(["reserve", "hold", "give_back", "advance"]),
                         st.floats(0, 200), st.integers(0, 10)), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_live_reservations_never_overlap_whatever_is_given_back(ops: list[tuple[str, float,
                                                                               int]]) -> None:
    slots: list[Slot] = []
    next_free = -float("inf")
    now = NOW
    mine: list[Holder] = []
    for op, step, pick in ops:
        now += step
        if op == "give_back" and mine:
            who = mine[pick % len(mine)]
            before = next_free
            slots, next_free, outcome = give_back(slots, next_free, who.id, now=now)
            assert next_free <= before  # never later; earlier only by rolling back
        elif op == "advance" and mine:
            who = mine[pick % len(mine)]
            before_slots = {s.holder.id: s.at for s in slots if s.holder and not s.released}
            slots, next_free, moved = advance(slots, next_free, who.id, now=now,
                                              earliest=now + pick)
            if moved is not None:
                assert moved >= now + pick and moved < before_slots[who.id]
        else:
            duration = SPACING + (10.0 if op == "hold" else 0.0)
            earliest = now + pick
            who = holder()
            slots, next_free, slot = take(slots, next_free, now=now, earliest=earliest,
                                          duration=duration, holder=who)
            assert slot >= earliest
            mine.append(who)
        live = sorted(s for s in slots if not s.released)
        for before_slot, after_slot in itertools.pairwise(live):
            assert after_slot.at >= before_slot.until, (before_slot, after_slot)
        assert all(next_free >= s.until for s in live)


@pytest.mark.parametrize("command", ["distribute", "upload", "reserve", "listener"])
def test_labels_name_the_origin_and_what_it_does(command: str) -> None:
    who = Holder("0123456789ab", command, "65de0000000000000000b001", "acme/game run 7 job ship")
    assert who.label() == f"acme/game run 7 job ship ({command} 65de…b001)"
    assert Holder("0123456789ab").label() == "a job"
