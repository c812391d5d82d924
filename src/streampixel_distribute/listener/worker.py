"""Worker threads: take queued deliveries one at a time and act on them.

One thread per action kind, so a GitHub dispatch never waits behind a distribute that is waiting
two minutes for the account's next slot. Distributes are handled one after another on purpose:
the account allows one call per interval anyway, and the ledger hands out the turns.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Protocol

from ..redact import scrub
from .actions import Outcome
from .log import JsonLog
from .metrics import Metrics
from .queue import Item, Queue

IDLE_POLL = 5.0  # also picks up items whose retry time has come
RECORD_RETRY_FIRST = 1.0
RECORD_RETRY_CAP = 30.0
RETRY_BASE = 60.0
RETRY_CAP = 3600.0
RESULT_LABELS = {"distribute": "triggered", "dispatch": "dispatched"}


class Action(Protocol):
    kind: str

    def run(self, item: Item, log: JsonLog) -> Outcome: ...


def retry_delay(attempts: int) -> float:
    return min(RETRY_CAP, RETRY_BASE * 2.0 ** max(0, attempts - 1))


class Worker(threading.Thread):
    def __init__(self, action: Action, *, queue: Queue, stop: threading.Event, log: JsonLog,
                 metrics: Metrics, max_attempts: int,
                 now: Callable[[], float] = time.time) -> None:
        super().__init__(name=f"worker-{action.kind}", daemon=True)
        self.action = action
        self.queue = queue
        self.stop = stop
        self.log = log
        self.metrics = metrics
        self.max_attempts = max_attempts
        self.now = now
        self.wake = threading.Event()

    def run(self) -> None:
        kind = self.action.kind
        while not self.stop.is_set():
            try:
                item = self.queue.claim(kind, self.now())
                due = self.queue.next_due(kind) if item is None else None
            except Exception as exc:  # noqa: BLE001 - a locked or broken DB must not kill us
                self.log.emit("error", "could not read the queue", error=scrub(str(exc)))
                self.stop.wait(IDLE_POLL)
                continue
            if item is None:
                wait = IDLE_POLL if due is None else min(IDLE_POLL, max(0.05, due - self.now()))
                self.wake.wait(wait)
                self.wake.clear()
                continue
            self.process(item)

    def process(self, item: Item) -> None:
        kind = self.action.kind
        log = self.log.bind(item=item.id, event=item.event, projectId=item.project_id,
                            uploadId=item.upload_id, action=kind, attempt=item.attempts)
        if self.stop.is_set():
            self._record(log, "requeue", lambda: self.queue.requeue(item.id, self.now()))
            return
        log.info(f"acting on {item.event}: {kind}")
        try:
            outcome = self.action.run(item, log)
        except Exception as exc:  # noqa: BLE001 - one bad item must not stop the others
            outcome = Outcome("failed", {
                "error": "internal-error", "title": f"{type(exc).__name__}: {exc}"[:300],
                "hint": "A bug: please report it with this log line."})
            log.emit("error", "internal error while acting on a delivery",
                     traceback=scrub(traceback.format_exc())[-2000:])
        now = self.now()
        result = outcome.result
        if outcome.state == "done":
            self._record(log, "done", lambda: self.queue.finish(item.id, "done", result, now))
            self.metrics.action(kind, RESULT_LABELS.get(kind, "ok"))
            log.info(f"{kind} done", result=result)
        elif outcome.state == "requeue":
            self._record(log, "requeue", lambda: self.queue.requeue(item.id, now))
            self.metrics.action(kind, "requeued")
            log.info("stopping: the item goes back to the queue and is acted on after the "
                     "restart", result=result)
        elif outcome.state == "retry" and item.attempts < self.max_attempts:
            delay = retry_delay(item.attempts)
            self._record(log, "retry",
                         lambda: self.queue.retry_later(item.id, now + delay, result, now))
            self.metrics.action(kind, "retry")
            log.warning(f"{kind} failed for now; retrying in {delay:g} s "
                        f"(attempt {item.attempts} of {self.max_attempts})", result=result)
        else:
            self._record(log, "failed", lambda: self.queue.finish(item.id, "failed", result, now))
            self.metrics.action(kind, "failed")
            log.error(f"{kind} failed: {result.get('title', 'error')}", result=result)

    def _record(self, log: JsonLog, state: str, write: Callable[[], None]) -> None:
        """Commit an item's outcome, retrying until it is written or the listener stops.

        The action has already happened: if its outcome were not recorded the item would stay
        `working`, and the next start would act on it again (distribute twice). A full disk or a
        read-only queue is waited out instead; this worker takes no other item meanwhile.
        """
        delay = RECORD_RETRY_FIRST
        while True:
            try:
                write()
            except Exception as exc:  # noqa: BLE001 - sqlite3.Error, or the queue closed under us
                if self.stop.is_set():
                    log.emit("error", f"could not record the result ({state}) before stopping; "
                             "the item is acted on again at the next start",
                             error=scrub(str(exc)))
                    return
                log.emit("error", f"could not record the result ({state}); retrying in "
                         f"{delay:g} s", error=scrub(str(exc)))
                self.stop.wait(delay)
                delay = min(RECORD_RETRY_CAP, delay * 2)
                continue
            return
