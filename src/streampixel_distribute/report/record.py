"""One record per run: `build_report` makes it once, from what the run was asked to do (the
Job, if its inputs were valid), what happened (Progress), and how it ended (a Result or an error).
Times stay numbers until they are rendered (outputs, summary).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from .. import redact
from ..answers import Result
from ..clock import iso
from ..coordinator import Progress
from ..errors import DistributeError
from ..settings import Job, Target

OUTPUT_NAMES = (
    "status", "message", "http-status", "attempts", "waited-seconds", "slot-at",
    "triggered-at", "error", "ledger", "position",
)


class Status(StrEnum):
    TRIGGERED = "triggered"
    DRY_RUN = "dry-run"
    FAILED = "failed"


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
    target: Target
    user_id: str
    warnings: tuple[str, ...]

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
        }
        return {name: redact.scrub(values[name]) for name in OUTPUT_NAMES}


DRY_RUN_MESSAGE = "Dry run: inputs valid, nothing sent"


def build_report(job: Job | None, progress: Progress, result: Result | None,
                 error: DistributeError | None) -> Report:
    if error is not None:
        status = Status.FAILED
        message = error.server_message or error.title
        http_status = error.http_status if error.http_status is not None else \
            progress.http_status
    elif result is None:
        status, message, http_status = Status.DRY_RUN, DRY_RUN_MESSAGE, progress.http_status
    else:
        status, message, http_status = Status.TRIGGERED, result.message, result.http_status
    return Report(
        status=status, message=message, http_status=http_status, attempts=progress.attempts,
        waited=progress.waited, slot_at=progress.slot_at, called_at=progress.called_at,
        error=error, ledger=progress.ledger, position=progress.position,
        target=job.target if job else Target(), user_id=job.account.user_id if job else "",
        warnings=tuple(progress.warnings),
    )
