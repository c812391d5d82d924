"""`streampixel-distribute queue`: the account's reserved slots and who holds them.

For operators and for a pipeline that seems stuck: which job holds the slot now, who is queued,
which slots were given back. It reads the ledger only (the user id names the account, the API
URL's host too); it takes no API key and calls nothing at Streampixel.

Exit codes: 0 shown (also when nothing is queued); 2 invalid input, or a ledger that stores
nothing (`none`, or `auto` outside GitHub Actions); 7 the ledger could not be read.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from contextlib import closing
from typing import Any

from . import redact
from .cli import Parsed, flags_of, guarded
from .clock import iso
from .errors import DistributeError, InvalidInput, Problem
from .ledger import account_key
from .ledger.policy import choose_ledger
from .ledger.queue import Slot
from .redact import scrub
from .report import queue_view
from .settings import Command, load, secret_candidates


class _Notes:
    """A ledger's notes (e.g. `auto` falling back) go to stderr."""

    def warning(self, message: str, title: str = "") -> None:
        _err(f"warning: {message}")

    def notice(self, message: str, title: str = "") -> None:
        _err(message)


def show_queue(parsed: Parsed, environ: Mapping[str, str]) -> int:
    """Run `queue` from parsed arguments; returns the exit code."""
    flags = flags_of(Command.QUEUE, parsed)
    for secret in secret_candidates(flags, environ):
        redact.register(secret)
    shown: dict[str, Any] = {}

    def read() -> list[Slot]:
        account = load(Command.QUEUE, flags, environ).account
        ledger = choose_ledger(account.ledger, github_token=account.github_token,
                               environ=environ, now=time.time, notes=_Notes())
        with closing(ledger):
            if ledger.description.startswith("none"):
                raise InvalidInput([Problem(
                    "ledger", f"is {ledger.description}: it stores no reservations.",
                    "Give the ledger your jobs use (file:///…, redis://…, github, git+https://…); "
                    "`auto` is the github ledger only inside GitHub Actions.")])
            from .coordinator import spacing  # noqa: PLC0415

            slots = ledger.queue(account_key(account.api_url, account.user_id),
                                 spacing(account.rate_limit_interval))
            shown.update(account=redact.shorten_id(account.user_id),
                         ledger=ledger.description)
        return slots

    outcome = guarded(read)
    if isinstance(outcome, DistributeError):
        lines = [str(p) for p in outcome.problems] if isinstance(outcome, InvalidInput) \
            else [f"{outcome.title}: {outcome.detail}."]
        if outcome.hint and not isinstance(outcome, InvalidInput):
            lines.append(f"Fix: {outcome.hint}")
        _err("error: " + "\n  ".join(lines))
        if parsed.json:
            _out(json.dumps({"error": outcome.kind.value, "slots": []}))
        return outcome.code
    now = time.time()
    if parsed.json:
        _out(json.dumps(shown | {"now": iso(now), "slots": queue_view.as_json(outcome, now=now)}))
    else:
        _out(f"Account {shown['account']} on ledger {shown['ledger']}, now {iso(now)}:\n"
             + queue_view.text(outcome, now=now))
    return 0


def _out(text: str) -> None:
    sys.stdout.write(scrub(text) + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(scrub(text) + "\n")
    sys.stderr.flush()
