"""`github`, `github://owner/repo`, `git+file://…`, `git+http(s)://…`: the slot ledger in a git ref.

Per account key one ref (default `refs/notes/streampixel-distribute/<key>`) points at a single
parentless commit whose tree holds `ledger.json`: `next_free` and the account's queue (who holds
which slot, queue.py), which a release that reads only `next_free` ignores or drops. A
reservation reads that commit, computes the new state and writes it back with a compare-and-swap
on the ref (git_store.py); a lost race is re-read and retried with full-jitter backoff. Orphan
commits keep the ref's history at exactly one commit however many reservations are made.
docs/ledgers.md explains the ref namespace. Where the ledger lives and who may receive which
credentials: git_spec.py. The git protocol itself runs in this process (dulwich, git_store.py):
no `git` program is needed.
"""

from __future__ import annotations

import hashlib
import random
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .. import redact
from ..ci import origin
from ..clock import backoff, iso
from ..urls import find_userinfo
from . import Ledger, LedgerContext, queue
from .git_http import auth_header
from .git_spec import ledger_error, parse_spec
from .git_store import FORMAT_VERSION, GitStore, Race
from .queue import Holder, Slot
from .spec import printable

MAX_ATTEMPTS = 30
BACKOFF_FLOOR = 0.05  # seconds: the smallest backoff unit
BACKOFF_CAP = 10.0
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
T = TypeVar("T")


def _ref_component(key: str) -> str:
    """A key usable as one ref path component; unusual keys are hashed (the JSON keeps them)."""
    if _SAFE_KEY.fullmatch(key) and not key.endswith((".", ".lock")) and ".." not in key:
        return key
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:40]


class GitLedger(Ledger):
    def __init__(self, spec: str, context: LedgerContext | None = None) -> None:
        self._context = context or LedgerContext()
        info = find_userinfo(spec)
        for secret in info.secrets() if info is not None else ():
            redact.register(secret)  # before parsing: even a refused URL's error is scrubbed
        self._target = parse_spec(spec, self._context)
        redact.register(self._target.password)
        if self._target.password:
            redact.register(auth_header(self._target).split(" ", 1)[1])
        ref_desc = self._target.ref or f"{self._target.ref_prefix}/<key>"
        self.description = printable(redact.scrub(f"{self._target.display} ({ref_desc})"), 500)
        self._store = GitStore(self._target, self.description)
        self._lock = threading.Lock()
        self._identity = origin(self._context.environ).text
        self.max_attempts = MAX_ATTEMPTS
        self.sleep: Callable[[float], None] = time.sleep  # backoff between lost races only
        self.attempts = 0  # CAS attempts made by the last reserve (for logs and tests)

    # -- Ledger interface --------------------------------------------------------------------

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        def change(entry: dict[str, Any], now: float) -> tuple[dict[str, Any], float, str]:
            slots, next_free, slot = queue.take(
                queue.decode(entry.get("queue")), float(entry.get("next_free", 0.0)), now=now,
                earliest=max(now, not_before), duration=interval, holder=holder)
            return ({"next_free": next_free, "queue": queue.encode(slots)}, slot,
                    f"reserve {key}: slot {iso(slot)}, next free {iso(next_free)}")

        return self._update(key, change)

    def give_back(self, key: str, holder_id: str) -> str:
        def change(entry: dict[str, Any], now: float) -> tuple[dict[str, Any] | None, str, str]:
            slots, next_free, outcome = queue.give_back(
                queue.decode(entry.get("queue")), float(entry.get("next_free", 0.0)), holder_id,
                now=now)
            if outcome == "absent":
                return None, outcome, ""
            return ({"next_free": next_free, "queue": queue.encode(slots)}, outcome,
                    f"give back {key}: {outcome}, next free {iso(next_free)}")

        # A cancelled job has seconds before it is killed: a few tries, not a long fight.
        return self._update(key, change, attempts=3)

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        def change(entry: dict[str, Any],
                   now: float) -> tuple[dict[str, Any] | None, float | None, str]:
            slots, next_free, moved = queue.advance(
                queue.decode(entry.get("queue")), float(entry.get("next_free", 0.0)), holder_id,
                now=now, earliest=earliest)
            if moved is None:
                return None, None, ""
            return ({"next_free": next_free, "queue": queue.encode(slots)}, moved,
                    f"move {key}: up to {iso(moved)}")

        return self._update(key, change, attempts=3)  # a chance, not a need: give up soon

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        def change(entry: dict[str, Any], _now: float) -> tuple[dict[str, Any] | None, bool, str]:
            slots, next_free, changed = queue.stretch(
                queue.decode(entry.get("queue")), float(entry.get("next_free", 0.0)), holder_id,
                until=until)
            if not changed:
                return None, False, ""
            return ({"next_free": next_free, "queue": queue.encode(slots)}, True,
                    f"stretch {key}: until {iso(until)}")

        return self._update(key, change, attempts=3)

    def queue(self, key: str, interval: float) -> list[Slot]:
        with self._lock:
            _old, state = self._store.read(self.ref_for(key))
        entry = state.get("slots", {}).get(key) or {}
        return queue.shown(queue.decode(entry.get("queue")), float(entry.get("next_free", 0.0)),
                           interval, now=self._context.now())

    def _update(self, key: str, change: Callable[[dict[str, Any], float],
                                                  tuple[dict[str, Any] | None, T, str]],
                *, attempts: int | None = None) -> T:
        """Read the account's entry, `change` it, and compare-and-swap it back; a lost race is
        read and changed again. `change` returns (the new entry or None for no write, the
        result, the commit message)."""
        ref = self.ref_for(key)
        tries = attempts or self.max_attempts
        with self._lock:
            for attempt in range(1, tries + 1):
                self.attempts = attempt
                started = time.monotonic()
                old, state = self._store.read(ref)
                now = self._context.now()
                slots = state.setdefault("slots", {})
                new, result, message = change(slots.get(key) or {}, now)
                if new is None:
                    return result
                # The nonce: two identical commits would both "win".
                slots[key] = new | {"updated": now, "by": self._identity,
                                    "nonce": secrets.token_hex(8)}
                state["version"] = FORMAT_VERSION
                try:
                    self._store.write(ref, old, state, f"{message}\n\nby {self._identity}\n")
                except Race:
                    # Full-jitter exponential backoff in units of this server's own round trip
                    # (milliseconds on loopback, most of a second to a far host): the losers
                    # spread out over about (contenders x round trip), so each later round has
                    # few contenders, and a loaded server slows its own retries down.
                    unit = max(BACKOFF_FLOOR, time.monotonic() - started)
                    ceiling = backoff(attempt + 1, unit=unit, cap=BACKOFF_CAP)
                    self.sleep(random.uniform(0, ceiling))  # noqa: S311
                    continue
                return result
        raise ledger_error(
            f"gave up on {self.description} after {tries} attempts: every update "
            "lost a race with another job",
            "Too many jobs are reserving at the same instant; retry the job, or use a Redis "
            "ledger for very large matrices.",
        )

    def peek(self, key: str, interval: float) -> float:
        with self._lock:
            _old, state = self._store.read(self.ref_for(key))
        entry = state.get("slots", {}).get(key) or {}
        return max(self._context.now(), float(entry.get("next_free", 0.0)))

    def close(self) -> None:
        with self._lock:
            self._store.close()

    # -- helpers -----------------------------------------------------------------------------

    def ref_for(self, key: str) -> str:
        return self._target.ref or f"{self._target.ref_prefix}/{_ref_component(key)}"

