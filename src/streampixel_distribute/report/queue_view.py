"""The account's queue as people read it: a Mermaid gantt chart and a table (job summaries), and
plain text or JSON (the `queue` command).

Everything shown here comes from a shared ledger that other jobs (or whoever can write to it)
filled in, so it is data, never markup: labels keep a small safe alphabet in the chart, table
cells are escaped, and a link is shown only for a plain http(s) address.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..clock import iso
from ..ledger.queue import Slot

_UNSAFE_LABEL = re.compile(r"[^A-Za-z0-9 ._/()+…-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SAFE_URL = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/%+-]*)?")
LABEL_CHARS = 90


def state_of(slot: Slot, now: float, mine: str) -> str:
    if slot.holder is not None and slot.holder.id == mine and mine:
        return "this job"
    if slot.released:
        return "given back"
    if slot.until <= now:
        return "ended"
    return "calling" if slot.at <= now else "queued"


def who(slot: Slot) -> str:
    return slot.holder.label() if slot.holder else "a job of an older release (no name stored)"


def _label(slot: Slot, mine: str) -> str:
    text = who(slot) if not (slot.holder and slot.holder.id == mine and mine) else \
        f"this job: {slot.holder.command} {slot.holder.project}".strip()
    if slot.released:
        text = f"given back by {text}"
    text = " ".join(_UNSAFE_LABEL.sub(" ", text).split())
    return text[:LABEL_CHARS] or "a job"


def _time(ts: float) -> str:
    return iso(ts)[11:]  # `12:04:00Z`: the chart's date is in its heading


def mermaid(slots: Sequence[Slot], *, now: float, mine: str) -> str:
    """A gantt chart of the slots, this job's marked (crit), ended ones done, a running one
    active."""
    lines = ["```mermaid", "gantt", "    dateFormat YYYY-MM-DDTHH:mm:ss",
             "    axisFormat %H:%M:%S", f"    title Rate-limit slots of the account, "
             f"{iso(slots[0].at)[:10] if slots else ''} (UTC)", "    section Slots"]
    for number, slot in enumerate(slots):
        state = state_of(slot, now, mine)
        tags = {"this job": "crit, ", "ended": "done, ", "calling": "active, "}.get(state, "")
        seconds = max(1, round(slot.until - slot.at))
        lines.append(f"    {_label(slot, mine)} :{tags}s{number}, "
                     f"{iso(slot.at)[:19]}, {seconds}s")
    lines.append("```")
    return "\n".join(lines)


def _cell(text: str) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "'").replace(
        "<", "&lt;").replace(">", "&gt;").replace("[", "\\[").replace("]", "\\]") or "—"


def table(slots: Sequence[Slot], *, now: float, mine: str) -> str:
    rows = ["| slot (UTC) | until | holder | state |", "|---|---|---|---|"]
    for slot in slots:
        holder = _cell(who(slot))
        url = slot.holder.url if slot.holder else ""
        if _SAFE_URL.fullmatch(url):
            holder = f"[{holder}]({url})"
        state = state_of(slot, now, mine)
        mark = "**" if state == "this job" else ""
        rows.append(f"| {mark}{_time(slot.at)}{mark} | {_time(slot.until)} | {holder} | "
                    f"{mark}{state}{mark} |")
    return "\n".join(rows)


def summary_section(slots: Sequence[Slot], *, now: float, mine: str) -> list[str]:
    """The collapsible queue section of a job summary; [] when the ledger showed nothing."""
    if not slots:
        return []
    ahead = sum(1 for s in slots if state_of(s, now, mine) in ("queued", "calling"))
    return ["", f"<details><summary>The account's queue: {len(slots)} slots around this job's "
            f"({ahead} still to run)</summary>", "", mermaid(slots, now=now, mine=mine), "",
            table(slots, now=now, mine=mine), "", "</details>"]


def as_json(slots: Sequence[Slot], *, now: float) -> list[dict[str, Any]]:
    out = []
    for slot in slots:
        holder = slot.holder
        out.append({"at": iso(slot.at), "until": iso(slot.until),
                    "state": state_of(slot, now, ""),
                    "command": holder.command if holder else "",
                    "project": holder.project if holder else "",
                    "origin": holder.origin if holder else "",
                    "url": holder.url if holder and _SAFE_URL.fullmatch(holder.url) else ""})
    return out


def text(slots: Sequence[Slot], *, now: float) -> str:
    """The `queue` command's table, for a terminal."""
    if not slots:
        return "No reservations stored (the account is free now)."
    lines = [f"{'slot (UTC)':<12} {'until':<11} {'state':<10} holder"]
    lines += [f"{_time(s.at):<12} {_time(s.until):<11} {state_of(s, now, ''):<10} {who(s)}"
              for s in slots]
    return "\n".join(lines)
