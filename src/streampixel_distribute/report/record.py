"""One record per run: `build_report` makes it once, from what the run was asked to do (the
Job, if its inputs were valid), what happened (Progress), and how it ended (a Result or an error).
Times stay numbers until they are rendered (outputs, summary).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import NamedTuple

from .. import redact
from ..answers import Result
from ..clock import iso
from ..coordinator import Progress
from ..errors import DistributeError
from ..ledger.queue import Slot
from ..settings import Command, Job, Target

OUTPUT_NAMES = (
    "status", "message", "http-status", "attempts", "waited-seconds", "slot-at",
    "triggered-at", "error", "ledger", "position", "upload-id",
)


class Status(StrEnum):
    TRIGGERED = "triggered"  # distribute
    UPLOADED = "uploaded"  # upload
    RESERVED = "reserved"  # reserve
    DRY_RUN = "dry-run"
    FAILED = "failed"


_DONE = {Command.DISTRIBUTE: Status.TRIGGERED, Command.UPLOAD: Status.UPLOADED,
         Command.RESERVE: Status.RESERVED}
_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


class Report(NamedTuple):
    """Everything the final outputs and summary say about one run."""

    status: Status
    message: str
    http_status: int | None
    attempts: int
    waited: float
    slot_at: float | None
    called_at: float | None
    error: DistributeError | None
    ledger: str
    position: int | None
    command: Command
    target: Target
    upload_id: str  # the build's: given (distribute), or returned by upload-file
    user_id: str
    warnings: tuple[str, ...]
    queue: tuple[Slot, ...] = ()  # the account's slots around this job's, as the ledger showed
    holder_id: str = ""  # this job's slot in `queue`
    gave_back: str = ""  # `released` or `marked`: cancelled, it gave its slot back
    now: float = 0.0  # when the run ended: what has ended and what is still ahead

    def outputs(self) -> dict[str, str]:
        values = {
            "status": self.status.value,
            "message": self.message,
            "http-status": "" if self.http_status is None else str(self.http_status),
            "attempts": str(self.attempts),
            "waited-seconds": f"{round(self.waited)}",
            "slot-at": iso(self.slot_at),
            "triggered-at": iso(self.called_at),
            "error": self.error.kind.value if self.error else "",
            "ledger": self.ledger,
            "position": "" if self.position is None else str(self.position),
            "upload-id": self.upload_id,
        }
        return {name: redact.scrub(values[name]) for name in OUTPUT_NAMES}


DRY_RUN_MESSAGE = "Dry run: inputs valid, nothing sent"


def build_report(command: Command, job: Job | None, progress: Progress, result: Result | None,
                 error: DistributeError | None, *, now: float = 0.0) -> Report:
    """The record of a run of `command`; `job` is None when its inputs did not pass."""
    if error is not None:
        status = Status.FAILED
        message = error.server_message or error.title
        http_status = error.http_status if error.http_status is not None else \
            progress.http_status
    elif result is None:
        status, message, http_status = Status.DRY_RUN, DRY_RUN_MESSAGE, progress.http_status
    else:
        status = _DONE.get(command, Status.TRIGGERED)
        message, http_status = result.message, result.http_status or None
    target = job.target if job else Target()
    return Report(
        status=status, message=message, http_status=http_status, attempts=progress.attempts,
        waited=progress.waited, slot_at=progress.slot_at, called_at=progress.called_at,
        error=error, ledger=progress.ledger, position=progress.position, command=command,
        target=target, upload_id=_upload_id(command, target, result),
        user_id=job.account.user_id if job else "", warnings=tuple(progress.warnings),
        queue=tuple(sorted(progress.queue.values())), holder_id=progress.holder_id,
        gave_back=progress.gave_back, now=now,
    )


def _upload_id(command: Command, target: Target, result: Result | None) -> str:
    """The build's uploadId: the one upload-file returned, or the one distributed."""
    if command is not Command.UPLOAD:
        return target.upload_id
    found = result.body.get("uploadId") if result is not None else None
    return found if isinstance(found, str) and _UPLOAD_ID.fullmatch(found) else ""
