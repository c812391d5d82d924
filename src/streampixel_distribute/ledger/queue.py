"""Who holds which slot: an account's reservations, kept next to its `next_free`.

A backend stores, per account, `next_free` (the GCRA state every release reads) and beside it
the queue: the reservations still ahead plus the last one, each with its holder (who made it:
never a secret). Reserving and giving back change both in one atomic step of the backend (the
file lock, the git compare-and-swap, the Redis script); the functions here are that step's
logic for the backends written in Python, and reserve.lua mirrors them for Redis.

Rolling upgrades work both ways because `next_free` alone decides the spacing:
- a release that knows nothing of the queue reads `next_free` as always, and when it reserves it
  may drop the queue: the next job that knows it starts a fresh one;
- a job that finds `next_free` beyond its queue's last slot shows that span as held by a job of
  an older release (`unknown_span`), and never gives back across it.
The queue has its own format number (`QUEUE_FORMAT`); a queue of an unknown format is ignored,
never misread, and the reservation itself still works.

Giving back (a job cancelled while it waits): when nobody reserved after the slot, `next_free`
rolls back to the slot's start, so the next job may call then, which still keeps one interval
from the call before it. When someone did, the slot is marked released and stays as long as it
was: a later job whose call fits in it takes it instead of a later one; nobody is moved.

Stretching (a job whose call was answered later than its slot allowed for): Streampixel starts
its window when a call arrives, which the caller only knows to lie before the answer. The slot
then ends one interval after the answer, and the job behind it calls no earlier than that.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

QUEUE_FORMAT = 1
#: Reservations kept ahead of now (a queue of more than an hour at Streampixel's 2 minutes).
MAX_AHEAD = 32
FIELD_CHARS = 160
_PRINTABLE = re.compile(r"[^\x20-\x7e]")
_ID = re.compile(r"[0-9a-f]{8,32}")


def _field(value: object) -> str:
    """A holder field as stored: printable ASCII, bounded. Anything else is dropped."""
    if not isinstance(value, str):
        return ""
    return _PRINTABLE.sub("?", value)[:FIELD_CHARS]


class Holder(NamedTuple):
    """Who made a reservation. `id` is random, chosen by the job, to give the slot back."""

    id: str
    command: str = ""  # upload, distribute, reserve, listener
    project: str = ""  # the project id (not a secret), "" for reserve
    origin: str = ""  # "acme/showroom run 8123 attempt 1 job ship", or a CI's equivalent
    url: str = ""  # the run's or job's page, when the CI has one

    def as_json(self) -> dict[str, str]:
        fields = {"id": self.id, "cmd": self.command, "project": self.project,
                  "origin": self.origin, "url": self.url}
        return {name: _field(value) for name, value in fields.items() if value}

    @classmethod
    def from_json(cls, raw: object) -> Holder | None:
        if not isinstance(raw, Mapping) or not _ID.fullmatch(str(raw.get("id", ""))):
            return None
        return cls(str(raw["id"]), _field(raw.get("cmd")), _field(raw.get("project")),
                   _field(raw.get("origin")), _field(raw.get("url")))

    def label(self) -> str:
        """`acme/showroom run 8123 attempt 1 job ship (distribute 65de…b001)`."""
        what = " ".join(part for part in (self.command, _short(self.project)) if part)
        origin = self.origin or "a job"
        return f"{origin} ({what})" if what else origin


def _short(project: str) -> str:
    return project if len(project) <= 12 else f"{project[:4]}…{project[-4:]}"


class Slot(NamedTuple):
    """One reservation: calls may start at `at`; the next one not before `until`."""

    at: float
    until: float
    holder: Holder | None  # None: made by a release that does not record holders
    released: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"at": self.at, "until": self.until}
        if self.holder is not None:
            out["by"] = self.holder.as_json()
        if self.released:
            out["released"] = True
        return out


def decode(raw: object) -> list[Slot]:
    """The slots of a stored queue, in order; [] for none, another format, or garbage (a
    damaged queue costs the display, never the reservation)."""
    if not isinstance(raw, Mapping) or raw.get("v") != QUEUE_FORMAT:
        return []
    items = raw.get("slots")
    if not isinstance(items, list):
        return []
    slots = []
    for item in items[: MAX_AHEAD + 2]:
        if not isinstance(item, Mapping):
            continue
        at, until = _time(item.get("at")), _time(item.get("until"))
        if at is None or until is None or until < at:
            continue
        slots.append(Slot(at, until, Holder.from_json(item.get("by")),
                          item.get("released") is True))
    return sorted(slots)


def _time(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def encode(slots: Iterable[Slot]) -> dict[str, Any]:
    return {"v": QUEUE_FORMAT, "slots": [slot.as_json() for slot in slots]}


def prune(slots: Sequence[Slot], now: float) -> list[Slot]:
    """The slots still running or ahead (at most MAX_AHEAD), plus the last one that ended."""
    ended = [s for s in slots if s.until <= now and not s.released]
    running = [s for s in slots if s.until > now][:MAX_AHEAD]
    return ended[-1:] + running


def take(slots: Sequence[Slot], next_free: float, *, now: float, earliest: float,
         duration: float, holder: Holder | None) -> tuple[list[Slot], float, float]:
    """Reserve: (the new queue, the new next_free, the slot). A released slot at or after
    `earliest` that is long enough is taken first; otherwise the slot is
    max(earliest, next_free), as GCRA has it."""
    for index, slot in enumerate(slots):
        if slot.released and slot.at >= earliest and slot.until - slot.at >= duration:
            taken = Slot(slot.at, slot.until, holder)
            return prune([*slots[:index], taken, *slots[index + 1:]], now), next_free, slot.at
    at = max(earliest, next_free)
    kept = prune(slots, now)
    older = unknown_span(kept, next_free, duration, now=now)
    if older is not None:  # keep an older release's reservation in view, in its place
        kept.append(older)
    return [*kept, Slot(at, at + duration, holder)], at + duration, at


def give_back(slots: Sequence[Slot], next_free: float, holder_id: str, *,
              now: float) -> tuple[list[Slot], float, str]:
    """A cancelled job's slot: (the new queue, the new next_free, what happened), where what
    happened is `released` (nobody after it: `next_free` rolled back), `marked` (kept, marked
    released, for a later job to take) or `absent` (not found, or already begun: nothing)."""
    index = _live(slots, holder_id)
    if index is None or slots[index].at <= now:
        return list(slots), next_free, "absent"
    return _release(slots, next_free, index, now)


def _live(slots: Sequence[Slot], holder_id: str) -> int | None:
    return next((i for i, s in enumerate(slots)
                 if s.holder is not None and s.holder.id == holder_id and not s.released), None)


def _release(slots: Sequence[Slot], next_free: float, index: int,
             now: float) -> tuple[list[Slot], float, str]:
    mine, after = slots[index], slots[index + 1:]
    # Nobody after it: every later slot was given back too, and no release that keeps no queue
    # reserved past the last one.
    last_until = after[-1].until if after else mine.until
    if all(s.released for s in after) and next_free == last_until:
        kept = list(slots[:index])
        rolled_back = mine.at
        # Released slots just before it go too: nobody is after them either.
        while kept and kept[-1].released and kept[-1].until == rolled_back:
            rolled_back = kept.pop().at
        return prune(kept, now), rolled_back, "released"
    marked = [*slots[:index], mine._replace(released=True), *after]
    return prune(marked, now), next_free, "marked"


def advance(slots: Sequence[Slot], next_free: float, holder_id: str, *, now: float,
            earliest: float) -> tuple[list[Slot], float, float | None]:
    """Move a waiting job up into a slot given back ahead of it: (the new queue, the new
    next_free, the new slot or None). The slot taken is the earliest released one at or after
    `earliest`, before the job's own, and at least as long; the job's own slot is then given
    back in turn (released or marked), so the job behind it can move up too. Nobody else moves,
    and nobody lands closer to a neighbour than its slot's length."""
    index = _live(slots, holder_id)
    if index is None or slots[index].at <= now:
        return list(slots), next_free, None
    mine = slots[index]
    target = next((i for i, s in enumerate(slots[:index])
                   if s.released and s.at >= earliest and s.until - s.at >= mine.until - mine.at),
                  None)
    if target is None:
        return list(slots), next_free, None
    moved = list(slots)
    moved[target] = Slot(slots[target].at, slots[target].until, mine.holder)
    moved, next_free, _ = _release(moved, next_free, index, now)
    return moved, next_free, slots[target].at


def stretch(slots: Sequence[Slot], next_free: float, holder_id: str, *,
            until: float) -> tuple[list[Slot], float, bool]:
    """A job whose call was answered late: its slot now lasts `until` (one interval after the
    answer), and so does `next_free` if that was earlier. (the new queue, the new next_free,
    whether anything changed). Jobs queued behind keep their slots and call no earlier than the
    end of the one before theirs; nothing ever shrinks."""
    index = _live(slots, holder_id)
    if index is None or slots[index].until >= until:
        return list(slots), next_free, False
    stretched = list(slots)
    stretched[index] = slots[index]._replace(until=until)
    return stretched, max(next_free, until), True


def shown(slots: Sequence[Slot], next_free: float, interval: float, *,
          now: float) -> list[Slot]:
    """What `Ledger.queue` returns: the slots still running or ahead plus the last one that
    ended, with an older release's reservation past them in its place."""
    older = unknown_span(slots, next_free, interval, now=now)
    return prune(sorted([*slots, older] if older else slots), now)


def unknown_span(slots: Sequence[Slot], next_free: float, interval: float, *,
                 now: float) -> Slot | None:
    """The reservation an older release made past the queue's last slot, while it lasts."""
    last = max((s.until for s in slots), default=-math.inf)
    if next_free > max(now, last + 1e-6):
        return Slot(max(last, next_free - interval), next_free, None)
    return None
