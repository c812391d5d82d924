"""The webhook side: pipeline events, their schedule, and one-shot deliveries to loopback.

Each build has one worker thread that sends its events one after another, each when it is due on
the emulator's clock, so a build's events arrive in order even when distribute-file adds more
while the pipeline is still running.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from .safety import is_loopback_url, origin

if TYPE_CHECKING:
    from .state import Upload

WEBHOOK_TIMEOUT: Final = 10.0  # what Streampixel documents; deliveries are never retried

# Pipeline events: (event, the build's status when it fires), in pipeline order.
EV_UPLOADED: Final = ("build.uploaded", "pending")
EV_DOWNLOADING: Final = ("build.downloading", "Downloading Files")
EV_EXTRACTING: Final = ("build.extracting", "Extracting & Scanning")
EV_SAVING: Final = ("build.saving", "Saving to Repository")
EV_DISTRIBUTING: Final = ("build.distributing", "Distribute")
EV_APPROVED: Final = ("build.approved", "Approved")
EV_REJECTED: Final = ("build.rejected", "Reject")
EV_TEST: Final = ("webhook.test", "test")

Event = tuple[str, str]


def pipeline_events(
    *, rejected: bool, auto_release: bool, approve_after_distribute: bool
) -> list[Event]:
    """The events of an upload-file, from `build.uploaded` to the end of processing. A held
    build (autoRelease false) stops there until distribute-file: after `build.approved`, or
    after `build.saving` when approval comes with the distribution."""
    processing = [EV_UPLOADED, EV_DOWNLOADING, EV_EXTRACTING]
    if rejected:
        return [*processing, EV_REJECTED]
    if auto_release:
        return [*processing, EV_SAVING, EV_DISTRIBUTING, EV_APPROVED]
    if approve_after_distribute:
        return [*processing, EV_SAVING]
    return [*processing, EV_SAVING, EV_APPROVED]


def distribute_events(*, approve_after_distribute: bool) -> list[Event]:
    """The events of a successful distribute-file."""
    return [EV_DISTRIBUTING, EV_APPROVED] if approve_after_distribute else [EV_DISTRIBUTING]


@dataclass(frozen=True)
class Step:
    due: float  # emulator-monotonic time
    event: Event
    go_live: bool = False  # the build becomes its project's live build when this fires


def spread(
    events: list[Event], start: float, seconds: float, *, go_live_on: str = ""
) -> list[Step]:
    """Events spread evenly over `seconds`: the first at `start`, the last at `start + seconds`."""
    step = seconds / (len(events) - 1) if len(events) > 1 else 0.0
    return [Step(start + i * step, ev, ev[0] == go_live_on) for i, ev in enumerate(events)]


def iso(epoch: float) -> str:
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def envelope(event: Event, project_id: str, upload: Upload | None, epoch: float) -> dict[str, Any]:
    """The documented payload; `objection` is set on `build.rejected` only."""
    name, status = event
    return {
        "event": name,
        "projectId": project_id,
        "uploadId": upload.upload_id if upload else None,
        "fileUrl": upload.file_url if upload else None,
        "status": status,
        "objection": upload.objection if upload and event == EV_REJECTED else None,
        "timestamp": iso(epoch),
    }


class Host(Protocol):
    """What the deliveries need from the emulator's state (`state.Emulator`)."""

    cond: threading.Condition  # the emulator's one lock; notified when the clock moves

    @property
    def generation(self) -> int: ...  # changes on reset: older work must not touch new state

    def now(self) -> float: ...

    def epoch(self) -> float: ...

    def fire_locked(self, upload: Upload, step: Step) -> str | None:
        """Apply the step's state change; returns the project's webhook URL (read as it fires)."""

    def log(self, text: str) -> None: ...


class Webhooks:
    """Scheduled pipeline events, and the log of deliveries made (`/_emulator/webhooks`)."""

    def __init__(self, host: Host) -> None:
        self._host = host
        self.deliveries: list[dict[str, Any]] = []
        self._queues: dict[str, deque[Step]] = {}

    def reset_locked(self) -> None:
        """Forget the log and every pending event (their workers see the new generation)."""
        self.deliveries = []
        self._queues = {}
        self._host.cond.notify_all()

    def schedule_locked(self, upload: Upload, steps: list[Step]) -> None:
        """Queue events after the build's pending ones; starts its worker if none runs."""
        queue = self._queues.get(upload.upload_id)
        if queue is not None:
            queue.extend(steps)
            return
        queue = self._queues[upload.upload_id] = deque(steps)
        threading.Thread(
            target=self._run,
            args=(self._host.generation, upload, queue),
            name=f"pipeline-{upload.upload_id}",
            daemon=True,
        ).start()

    def _run(self, generation: int, upload: Upload, queue: deque[Step]) -> None:
        host = self._host
        while True:
            with host.cond:
                step = self._next_locked(generation, upload.upload_id, queue)
                if step is None:
                    return
                url = host.fire_locked(upload, step)
                payload = envelope(step.event, upload.project_id, upload, host.epoch())
            if url:
                self.deliver(url, payload, generation)  # outside the lock: may take 10 s

    def _next_locked(self, generation: int, upload_id: str, queue: deque[Step]) -> Step | None:
        """The next step once it is due; None when the queue is done or a reset ended it."""
        host = self._host
        while host.generation == generation and queue:
            wait = queue[0].due - host.now()
            if wait <= 0:
                return queue.popleft()
            host.cond.wait(min(wait, 0.5))
        if self._queues.get(upload_id) is queue:
            del self._queues[upload_id]
        return None

    def deliver(self, url: str, payload: dict[str, Any], generation: int) -> int:
        """POST once with a 10 s timeout and no retries; returns the status code, 0 if none."""
        started = time.monotonic()
        code, error = 0, None
        if not is_loopback_url(url):
            error = "refused: the emulator delivers only to loopback URLs"
        else:
            code, error = post_json(url, payload, WEBHOOK_TIMEOUT)
        entry = {
            "time": self._host.epoch(),
            "event": payload["event"],
            "url": url,
            "projectId": payload["projectId"],
            "uploadId": payload["uploadId"],
            "statusCode": code,
            "error": error,
            "duration": round(time.monotonic() - started, 4),
        }
        with self._host.cond:
            if self._host.generation == generation:
                self.deliveries.append(entry)
        self._host.log(f"webhook {payload['event']} -> {origin(url)}: {code or error}")
        return code


def post_json(url: str, payload: dict[str, Any], timeout: float) -> tuple[int, str | None]:
    """One POST; returns (status, None), or (0, why) when no answer came."""
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "streampixel-emulator"}
    try:
        parts = urllib.parse.urlsplit(url)
        conn_cls: type[http.client.HTTPConnection] = http.client.HTTPConnection
        if parts.scheme == "https":
            conn_cls = http.client.HTTPSConnection
        conn = conn_cls(parts.hostname or "localhost", parts.port, timeout=timeout)
    except ValueError as exc:  # e.g. a port out of range: no connection is attempted
        return 0, f"invalid URL: {exc}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        conn.request("POST", target, body=body, headers=headers)
        resp = conn.getresponse()
        resp.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    else:
        return resp.status, None
    finally:
        conn.close()
