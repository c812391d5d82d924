"""The write commands, from a checked Job to a Result: distribute, upload and reserve.

distribute and upload are `WriteCall`s made by `Coordinator.run`; reserve waits for its turn in
the same `Coordinator` without a call of its own. So every write call of an account takes its
turn in one queue; the CLI, the action and the listener differ only in where the account and the
target come from.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from contextlib import closing
from typing import TYPE_CHECKING

from . import STARTED
from .answers import Result
from .ci import origin
from .clock import Clock
from .coordinator import CALLER_ALLOWANCE, Coordinator, Log, Progress, WriteCall
from .errors import Cancelled, NotReady
from .ledger.policy import choose_ledger
from .ledger.queue import Holder
from .settings import Account, Command, Job, Target

if TYPE_CHECKING:
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


class _HttpCall:
    """A write call over HTTP: its client is set up shortly before the slot."""

    name = ""

    def __init__(self, client: StreampixelClient, account: Account, target: Target,
                 *, setup: float = 0.0) -> None:
        self.client = client
        self.account = account
        self.target = target
        self.setup = setup

    def prepare(self) -> None:
        self.client.prepare()

    def prepare_cost(self) -> float:
        return 0.0 if self.client.prepared else self.setup


class Distribute(_HttpCall):
    """`POST /projects/distribute-file`: push an uploaded build to the streaming servers."""

    name = "distribute-file"

    def describe(self) -> str:
        return f"for project {self.target.project_id}, upload {self.target.upload_id}"

    def send(self) -> Result:
        return self.client.distribute(
            api_key=self.account.api_key, user_id=self.account.user_id,
            project_id=self.target.project_id, upload_id=self.target.upload_id)


class Upload(_HttpCall):
    """`POST /projects/upload-file`: register a build's .zip by URL; Streampixel downloads,
    checks and (with `autoRelease`) distributes it, and answers with the new `uploadId`."""

    name = "upload-file"

    def describe(self) -> str:
        release = "auto-release" if self.target.auto_release else "held until distribute"
        return f"for project {self.target.project_id} ({release})"

    def send(self) -> Result:
        return self.client.upload(
            api_key=self.account.api_key, user_id=self.account.user_id,
            project_id=self.target.project_id, file_url=self.target.file_url,
            auto_release=self.target.auto_release)


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
        coordinator = Coordinator(account, ledger=ledger, clock=clock, log=log, progress=progress,
                                  holder=holder_of(job, environ))
        cancelled = False
        try:
            if job.dry_run:
                coordinator.dry_run(_NAMES[job.command])
                return None
            if job.command is Command.RESERVE:
                coordinator.reserve()
                return Result(0, RESERVED)
            return coordinator.run(write_call(job, setup=setup))
        except Cancelled:
            cancelled = True  # the runner kills us soon: no more ledger calls
            raise
        finally:
            if not cancelled:
                coordinator.look()  # the queue around this job, for the summary


def holder_of(job: Job, environ: Mapping[str, str]) -> Holder:
    """How the account's queue names this job's reservations (ids are added per slot)."""
    where = origin(environ)
    return Holder("", job.command.value, job.target.project_id, where.text, where.url)


#: What `reserve` reports when its slot has come.
RESERVED = (f"Slot reached: make the write call within {CALLER_ALLOWANCE:g} s, "
            "then no other job of the account calls for one interval")


def write_call(job: Job, *, setup: float = 0.0) -> WriteCall:
    """The call a distribute or upload job makes in its slot."""
    from .api import StreampixelClient  # noqa: PLC0415 - a dry run or a reserve calls nothing

    client = StreampixelClient(job.account.api_url, timeout=job.account.timeout)
    kind = Upload if job.command is Command.UPLOAD else Distribute
    return kind(client, job.account, job.target, setup=setup)


_NAMES = {Command.DISTRIBUTE: Distribute.name, Command.UPLOAD: Upload.name,
          Command.RESERVE: "another tool's write call"}


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
