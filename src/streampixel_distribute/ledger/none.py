"""`none`: no coordination. The slot is always now; the server's 429 is the only guard."""

from __future__ import annotations

from . import Ledger, LedgerContext
from .queue import Holder


class NoLedger(Ledger):
    description = "none"

    def __init__(self, spec: str = "none", context: LedgerContext | None = None) -> None:
        self._context = context or LedgerContext()

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        return max(self._context.now(), not_before)

    def peek(self, key: str, interval: float) -> float:
        return self._context.now()
