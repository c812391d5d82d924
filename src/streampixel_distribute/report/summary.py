"""The job summary in Markdown: written on success and on failure."""

from __future__ import annotations

from ..clock import iso
from ..coordinator import CALLER_ALLOWANCE
from ..errors import InvalidInput
from ..redact import shorten_id
from ..settings import Command
from .record import Report, Status


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ") or "—"


def _code(value: str) -> str:
    return f"`{value}`" if value else "—"


_WHAT = {Command.DISTRIBUTE: "distribution", Command.UPLOAD: "upload",
         Command.RESERVE: "slot reservation"}
_DONE = {Status.TRIGGERED: "✅ Streampixel distribution triggered",
         Status.UPLOADED: "✅ Streampixel upload: build queued for processing",
         Status.RESERVED: "✅ Streampixel rate-limit slot reached"}
_NEXT = {
    Status.TRIGGERED: "Distribution runs asynchronously on Streampixel's side; the "
    "`build.distributing` and `build.approved` webhooks tell when it is live.",
    Status.UPLOADED: "Streampixel now downloads and checks the build; the `build.*` webhooks "
    "follow its progress. With `auto-release: false` it is held after approval until a "
    "distribute call.",
    Status.RESERVED: "This slot of the account's rate limit is yours: make the write call "
    f"within {CALLER_ALLOWANCE:g} s. The next job's slot starts one interval after that.",
}


def render_summary(report: Report) -> str:
    what = _WHAT[report.command]
    heading = _DONE.get(report.status) or (
        f"🧪 Streampixel {what}: dry run passed" if report.status is Status.DRY_RUN
        else f"❌ Streampixel {what} failed")
    if report.error is not None:
        heading += f": {report.error.title}"
    slot = iso(report.slot_at) or "—"
    if report.slot_at is not None and report.position is not None:
        slot += f" (position {report.position})"
    if report.gave_back:
        slot += (" — given back: the next job may call in it" if report.gave_back == "released"
                 else " — given back: marked for the next job to take")
    rows = [("Result", report.status.value), ("Server message", report.message)]
    if report.command is not Command.RESERVE:
        rows.append(("Project", _code(report.target.project_id)))
    if report.command is Command.UPLOAD:
        rows += [("File", "hidden (a presigned link is a credential)"),
                 ("Auto-release", "yes" if report.target.auto_release else
                  "no: held after approval until a distribute call"),
                 ("Upload id (returned)", _code(report.upload_id))]
    elif report.command is Command.DISTRIBUTE:
        rows.append(("Upload", _code(report.upload_id)))
    rows += [
        ("Account", _code(shorten_id(report.user_id)) if report.user_id else "—"),
        ("Ledger", _code(report.ledger)),
        ("Slot", slot),
        ("Waited", f"{round(report.waited)} s"),
        ("Attempts", str(report.attempts)),
        ("HTTP status", "" if report.http_status is None else str(report.http_status)),
        ("Done at", iso(report.called_at)),
    ]
    lines = [f"## {heading}", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_cell(value)} |" for name, value in rows]
    if report.status in _NEXT:
        lines += ["", _NEXT[report.status]]
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
    from .queue_view import summary_section  # noqa: PLC0415 - only a summary with a queue

    lines += summary_section(report.queue, now=report.now, mine=report.holder_id)
    return "\n".join(lines) + "\n"
