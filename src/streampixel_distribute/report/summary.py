"""The job summary in Markdown: written on success and on failure."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InvalidInput

if TYPE_CHECKING:
    from . import Report


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ") or "—"


def _code(value: str) -> str:
    return f"`{value}`" if value else "—"


def render_summary(report: Report) -> str:
    from . import shorten_id  # noqa: PLC0415 - avoids an import cycle

    heading = {
        "triggered": "✅ Streampixel distribution triggered",
        "dry-run": "🧪 Streampixel distribution: dry run passed",
    }.get(report.status, "❌ Streampixel distribution failed")
    if report.error is not None:
        heading += f": {report.error.title}"
    slot = report.slot_at or "—"
    if report.slot_at and report.position is not None:
        slot += f" (position {report.position})"
    rows = [
        ("Result", report.status),
        ("Server message", report.message),
        ("Project", _code(report.project_id)),
        ("Upload", _code(report.upload_id)),
        ("Account", _code(shorten_id(report.user_id)) if report.user_id else "—"),
        ("Ledger", _code(report.ledger)),
        ("Slot", slot),
        ("Waited", f"{round(report.waited)} s"),
        ("Attempts", str(report.attempts)),
        ("HTTP status", "" if report.http_status is None else str(report.http_status)),
        ("Triggered at", report.triggered_at),
    ]
    lines = [f"## {heading}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    if report.status == "triggered":
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
