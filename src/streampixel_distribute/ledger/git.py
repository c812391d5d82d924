"""`github`, `github://owner/repo`, `git+file://…`, `git+http(s)://…`: the slot ledger in a git ref.

Per account key one ref (default `refs/notes/streampixel-distribute/<key>`) points at a single
parentless commit whose tree holds `ledger.json`. A reservation reads that commit, computes the
new state and writes it back with a compare-and-swap on the ref (git_store.py); a lost race is
re-read and retried with full-jitter backoff. Orphan commits keep the ref's history at exactly one
commit however many reservations are made. docs/ledgers.md explains the ref namespace.
Where the ledger lives and who may receive which credentials: git_spec.py. The git protocol itself
runs in this process (dulwich, git_store.py): no `git` program is needed.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Callable

from .. import redact
from ..clock import backoff, iso
from ..urls import find_userinfo
from . import Ledger, LedgerContext
from .git_spec import ledger_error, parse_spec
from .git_store import FORMAT_VERSION, GitStore, Race, auth_header
from .spec import printable

MAX_ATTEMPTS = 30
BACKOFF_FLOOR = 0.05  # seconds: the smallest backoff unit
BACKOFF_CAP = 10.0
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


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
        self._identity = self._who()
        self.max_attempts = MAX_ATTEMPTS
        self.sleep: Callable[[float], None] = time.sleep  # backoff between lost races only
        self.attempts = 0  # CAS attempts made by the last reserve (for logs and tests)

    # -- Ledger interface --------------------------------------------------------------------

    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        ref = self.ref_for(key)
        with self._lock:
            for attempt in range(1, self.max_attempts + 1):
                self.attempts = attempt
                started = time.monotonic()
                old, state = self._store.read(ref)
                now = self._context.now()
                slots = state.setdefault("slots", {})
                entry = slots.get(key) or {}
                slot = max(now, not_before, float(entry.get("next_free", 0.0)))
                slots[key] = {
                    "next_free": slot + interval,
                    "updated": now,
                    "by": self._identity,
                    "nonce": secrets.token_hex(8),  # two identical commits would both "win"
                }
                state["version"] = FORMAT_VERSION
                message = (f"reserve {key}: slot {iso(slot)}, next free {iso(slot + interval)}"
                           f"\n\nby {self._identity}\n")
                try:
                    self._store.write(ref, old, state, message)
                except Race:
                    # Full-jitter exponential backoff in units of this server's own round trip
                    # (milliseconds on loopback, most of a second to a far host): the losers
                    # spread out over about (contenders x round trip), so each later round has
                    # few contenders, and a loaded server slows its own retries down.
                    unit = max(BACKOFF_FLOOR, time.monotonic() - started)
                    ceiling = backoff(attempt + 1, unit=unit, cap=BACKOFF_CAP)
                    self.sleep(random.uniform(0, ceiling))  # noqa: S311
                    continue
                return slot
        raise ledger_error(
            f"gave up on {self.description} after {self.max_attempts} attempts: every update "
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

    def _who(self) -> str:
        env = self._context.environ
        if env.get("GITHUB_RUN_ID"):
            return (
                f"{env.get('GITHUB_REPOSITORY', '?')} run {env['GITHUB_RUN_ID']} attempt "
                f"{env.get('GITHUB_RUN_ATTEMPT', '1')} job {env.get('GITHUB_JOB', '?')}"
            )
        return f"pid {os.getpid()}"
