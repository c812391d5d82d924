"""The slot ledger: where parallel jobs of one account reserve their turns (GCRA).

`reserve(key, interval, not_before, holder)` atomically computes
`slot = max(now, not_before, next_free)`, stores `next_free = slot + interval` and returns `slot`;
the storing backends also record who holds it (queue.py: the account's queue, shown while jobs
wait and by the `queue` command). Nothing expires early: a crashed job wastes at most one slot.
A job cancelled while it waits gives its slot back (`give_back`): the slot is released if
nobody reserved after it, else marked released for a later job to take. A job whose call was
answered later than its slot allowed for stretches the slot to one interval after the answer
(`stretch`), and the job behind it calls no earlier than the stretched end.

All times crossing this interface are epoch seconds on the *caller's* clock. A backend that keeps
its own clock (Redis `TIME`) converts on the way in and out, so runner clock skew cannot make two
jobs collide.

Backends are picked from the `ledger` input by `open_ledger` through one registry keyed by the URL
scheme; each backend module is imported only when chosen, so a run pays only for its own.

The `ledger` value itself is checked in spec.py (credentials, control characters, the scheme);
`auto` and the fallback to `none` are policy, in policy.py.
"""

from __future__ import annotations

import importlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .. import redact, urls
from ..errors import LedgerError
from .queue import Holder, Slot

Now = Callable[[], float]


class Ledger(ABC):
    """A store of `next_free` per account key."""

    #: What the user sees in logs, outputs and the summary: never credentials.
    description: str = ""
    #: A caveat worth a warning annotation (e.g. a file ledger on a GitHub-hosted runner).
    warning: str | None = None

    @abstractmethod
    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        """Reserve the next free slot at or after `not_before` for `holder`; return it (caller's
        clock). `interval` is how long the slot holds the account."""

    @abstractmethod
    def peek(self, key: str, interval: float) -> float:
        """The slot `reserve` would return now, without reserving it."""

    def queue(self, key: str, interval: float) -> list[Slot]:
        """The account's reservations still running or ahead, and the last one that ended, in
        order (caller's clock); [] where nothing is stored."""
        return []

    def give_back(self, key: str, holder_id: str) -> str:
        """Give back the slot of `holder_id` before it begins: `released`, `marked` or `absent`
        (see queue.give_back)."""
        return "absent"

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        """Move the waiting `holder_id` up into a slot given back ahead of it, at or after
        `earliest` (caller's clock); the new slot, or None (see queue.advance)."""
        return None

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        """Make the slot of `holder_id`, whose call was answered late, last until `until`
        (caller's clock): the job behind calls no earlier. Whether it changed (queue.stretch)."""
        return False

    def close(self) -> None:  # noqa: B027 - most backends hold nothing open
        """Release connections or temporary directories."""


class LedgerContext(NamedTuple):
    """What a backend may need besides its URL."""

    environ: Mapping[str, str] = {}
    github_token: str = ""
    now: Now = time.time


try:  # CPython's built-in SHA-256: hashlib would load OpenSSL (milliseconds) for one hash
    from _sha2 import sha256 as _sha256  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # Python 3.11, or another implementation
    try:
        from _sha256 import sha256 as _sha256  # type: ignore[import-not-found, no-redef, unused-ignore]
    except ImportError:
        from hashlib import sha256 as _sha256  # type: ignore[assignment, unused-ignore]

# scheme -> "module:Class", imported lazily.
REGISTRY: dict[str, str] = {
    "none": ".none:NoLedger",
    "file": ".file:FileLedger",
    "redis": ".redis:RedisLedger",
    "rediss": ".redis:RedisLedger",
    "git+file": ".git:GitLedger",
    "git+http": ".git:GitLedger",
    "git+https": ".git:GitLedger",
    "github": ".git:GitLedger",
}

def open_ledger(spec: str, context: LedgerContext | None = None) -> Ledger:
    """Build the backend named by `spec` (not `auto`: the coordinator resolves that first)."""
    from .spec import KNOWN_FORMS, scheme_of, validate_spec  # noqa: PLC0415 - a cycle otherwise

    context = context or LedgerContext()
    target = REGISTRY.get(scheme_of(spec))
    if target is None:
        raise LedgerError(f"unknown ledger `{redact.one_line(scheme_of(spec), 40, escape=True)}`",
                          hint=f"Use one of: {KNOWN_FORMS}.")
    validate_spec(spec)
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name, __name__)
    factory: Callable[[str, LedgerContext], Ledger] = getattr(module, class_name)
    return factory(spec, context)


def account_key(api_url: str, user_id: str) -> str:
    """The per-account key: a hash of the API host and user id (never the raw id or the key)."""
    host = urls.host(api_url)
    digest = _sha256(f"{host}\0{user_id}".encode()).hexdigest()
    return f"sp-{digest[:32]}"
