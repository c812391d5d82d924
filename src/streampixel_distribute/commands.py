"""The write commands: what a run of `distribute` does, from a checked Job to a Result.

Each command is a `WriteCall` made through the one coordinator path (coordinator.py); the CLI,
the action and the listener differ only in where the account and the target come from.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import closing
from typing import TYPE_CHECKING

from . import STARTED
from .clock import Clock
from .coordinator import Coordinator, Log, Progress
from .errors import NotReady
from .ledger.policy import choose_ledger
from .settings import Account, Job, Target

if TYPE_CHECKING:
    from .answers import Result
    from .api import StreampixelClient

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")


#: Importing requests and setting up its session costs about this many times what the start-up
#: up to the ledger cost (imports, parsing, checks): both are Python start-up work, slowed alike
#: by the machine's load and by instrumentation such as coverage.
SETUP_PER_START = 4.0
SETUP_CAP = 3.0


def setup_estimate() -> float:
    """Seconds `Distribute.prepare` will likely take, from how long this process took so far."""
    return min(SETUP_CAP, SETUP_PER_START * (time.perf_counter() - STARTED))


class Distribute:
    """`POST /projects/distribute-file`: push an uploaded build to the streaming servers."""

    name = "distribute-file"

    def __init__(self, client: StreampixelClient, account: Account, target: Target,
                 *, setup: float = 0.0) -> None:
        self.client = client
        self.account = account
        self.target = target
        self.setup = setup

    def describe(self) -> str:
        return f"for project {self.target.project_id}, upload {self.target.upload_id}"

    def prepare(self) -> None:
        self.client.prepare()

    def prepare_cost(self) -> float:
        return 0.0 if self.client.prepared else self.setup

    def send(self) -> Result:
        return self.client.distribute(
            api_key=self.account.api_key, user_id=self.account.user_id,
            project_id=self.target.project_id, upload_id=self.target.upload_id)


def run(job: Job, *, environ: Mapping[str, str], clock: Clock, log: Log,
        progress: Progress) -> Result | None:
    """Do what `job` asks; the Result of the call, or None for a dry run."""
    rejected = rejected_build(job)
    if rejected is not None:
        raise rejected
    account = job.account
    setup = setup_estimate()  # measured before the ledger, whose I/O is not start-up work
    ledger = choose_ledger(account.ledger, github_token=account.github_token, environ=environ,
                           now=clock.time, notes=log)
    with closing(ledger):
        coordinator = Coordinator(account, ledger=ledger, clock=clock, log=log, progress=progress)
        if job.dry_run:
            coordinator.dry_run(Distribute.name)
            return None
        from .api import StreampixelClient  # noqa: PLC0415 - a dry run calls nothing

        client = StreampixelClient(account.api_url, timeout=account.timeout)
        return coordinator.run(Distribute(client, account, job.target, setup=setup))


def rejected_build(job: Job) -> NotReady | None:
    """A run triggered by `build.rejected` for the build it would distribute has nothing to do.

    Given another upload-id explicitly (say, a rollback to an older build), the payload is about
    a different build and does not stop the run.
    """
    hook = job.webhook
    if hook is None:
        return None
    from .settings.event import REJECTED  # noqa: PLC0415 - only runs started by a webhook

    if hook.event != REJECTED:
        return None
    payload_upload = hook.ids.get("uploadId")
    ours = job.webhook_supplied or (
        payload_upload is not None and payload_upload.lower() == job.target.upload_id.lower())
    if not ours:
        return None
    upload, project = hook.ids.get("uploadId", ""), hook.ids.get("projectId", "")
    which = f"build {upload.lower()}" if _HEX24.fullmatch(upload) else "the build"
    if _HEX24.fullmatch(project):
        which += f" of project {project.lower()}"
    objection = hook.objection or "no reason given"
    return NotReady(
        f"Streampixel rejected {which} (webhook build.rejected): {objection}",
        title="Build rejected by Streampixel",
        hint="Nothing was distributed. Fix what the objection names, upload a new build, and "
        "distribute it once its `build.approved` webhook arrives.",
        server_message=objection,
    )
