"""Which ledger a run uses: `auto`, and what happens when the chosen one fails.

`auto` means the `github` ledger inside GitHub Actions when there is a token and a repository,
else `none` with one notice that says how to coordinate. A ledger the user named explicitly that
refuses or is unreachable fails the run (exit 7); under `auto` it degrades to `none` (429
handling only) with a warning instead, since the user asked for no particular ledger.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import LedgerError
from . import Ledger, LedgerContext, open_ledger
from .none import NoLedger
from .queue import Holder, Slot


class Notes(Protocol):
    """Where a ledger's caveats go (the run's log)."""

    def warning(self, message: str, title: str = "") -> None: ...
    def notice(self, message: str, title: str = "") -> None: ...


class FallbackLedger(Ledger):
    """`auto`: a ledger that refuses or is unreachable degrades to `none` with a warning."""

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

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        return self._call(lambda ledger: ledger.reserve(key, interval, not_before, holder))

    def peek(self, key: str, interval: float) -> float:
        return self._call(lambda ledger: ledger.peek(key, interval))

    # Showing the queue and giving a slot back are best effort: their failure degrades nothing.
    def queue(self, key: str, interval: float) -> list[Slot]:
        return (self.primary or self.fallback).queue(key, interval)

    def give_back(self, key: str, holder_id: str) -> str:
        return (self.primary or self.fallback).give_back(key, holder_id)

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        return (self.primary or self.fallback).advance(key, holder_id, earliest)

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        return (self.primary or self.fallback).stretch(key, holder_id, until)

    def close(self) -> None:
        if self.primary is not None:
            self.primary.close()


def choose_ledger(spec: str, *, github_token: str, environ: Mapping[str, str],
                  now: Callable[[], float], notes: Notes) -> Ledger:
    context = LedgerContext(environ=environ, github_token=github_token, now=now)
    if spec != "auto":
        ledger = open_ledger(spec, context)
        if ledger.warning:
            notes.warning(ledger.warning, title="Ledger")
        return ledger
    if (environ.get("GITHUB_ACTIONS") == "true" and github_token
            and environ.get("GITHUB_REPOSITORY")):

        def degrade(exc: LedgerError) -> None:
            notes.warning(
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
        return FallbackLedger(primary, degrade, now)
    notes.notice(
        "Parallel jobs are not coordinated (`ledger: none`): only 429 handling protects the "
        "account's rate limit. Inside GitHub Actions give the job `permissions: contents: write` "
        "(uses `ledger: github`), or set `ledger` to a Redis URL.",
        title="No ledger",
    )
    return NoLedger("none", context)
