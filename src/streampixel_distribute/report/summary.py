"""The job summary in Markdown: written on success and on failure."""

from __future__ import annotations

from ..clock import iso
from ..errors import InvalidInput
from ..redact import shorten_id
from .record import Report, Status


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ") or "—"


def _code(value: str) -> str:
    return f"`{value}`" if value else "—"


def render_summary(report: Report) -> str:
    heading = {
        Status.TRIGGERED: "✅ Streampixel distribution triggered",
        Status.DRY_RUN: "🧪 Streampixel distribution: dry run passed",
    }.get(report.status, "❌ Streampixel distribution failed")
    if report.error is not None:
        heading += f": {report.error.title}"
    slot = iso(report.slot_at) or "—"
    if report.slot_at is not None and report.position is not None:
        slot += f" (position {report.position})"
    rows = [
        ("Result", report.status.value),
        ("Server message", report.message),
        ("Project", _code(report.target.project_id)),
        ("Upload", _code(report.target.upload_id)),
        ("Account", _code(shorten_id(report.user_id)) if report.user_id else "—"),
        ("Ledger", _code(report.ledger)),
        ("Slot", slot),
        ("Waited", f"{round(report.waited)} s"),
        ("Attempts", str(report.attempts)),
        ("HTTP status", "" if report.http_status is None else str(report.http_status)),
        ("Triggered at", iso(report.called_at)),
    ]
    lines = [f"## {heading}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    if report.status is Status.TRIGGERED:
        lines += ["", "Distribution runs asynchronously on Streampixel's side; the "
                  "`build.distributing` and `build.approved` webhooks tell when it is live."]
    error = report.error
    if error is not None:
        lines += ["", "### What went wrong", ""]
        if isinstance(error, InvalidInput):
            lines += [f"- `{p.input}`: {p.message}" for p in error.problems]
            lines += ["", "### How to fix it", ""]
            lines += [f"- `{p.input}`: {p.fix}" for p in error.problems]
        else:
            lines.append(error.detail.rstrip(".") + ".")
            if error.hint:
                lines += ["", "### How to fix it", "", error.hint]
    if report.warnings:
        lines += ["", "### Warnings", ""] + [f"- {w}" for w in report.warnings]
    return "\n".join(lines) + "\n"
