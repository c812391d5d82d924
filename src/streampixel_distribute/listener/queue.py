"""The durable queue: one SQLite file in WAL mode with `synchronous=FULL`.

A delivery is committed (and fsynced) before the listener answers 2xx, because Streampixel
delivers each webhook once and never retries: an acknowledged event that only lived in memory
would be lost with the process. The UNIQUE (upload_id, event) constraint makes a second delivery of
the same event a no-op at the database level, so it cannot be acted on twice, even when both
copies arrive at the same instant on two server threads.

States: pending -> working -> done | failed; an item found `working` at startup was in hand when
the process died and goes back to `pending`. A retryable failure goes back to `pending` with a
`not_before` time. Done items are deleted after the retention period (`prune`).

The file holds each delivery's `fileUrl`, which may be a presigned link: the database and its
-wal/-shm files are created 0600 (SQLite gives those two the database file's mode), and a missing
directory is created 0700.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DistributeError

if sys.platform != "win32":
    import fcntl

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 5000  # well inside Streampixel's 10 s delivery timeout

_DDL = """
CREATE TABLE IF NOT EXISTS deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    upload_id   TEXT NOT NULL,
    event       TEXT NOT NULL,
    project_id  TEXT NOT NULL,
    action      TEXT NOT NULL,
    rule        TEXT NOT NULL,
    body        TEXT NOT NULL,
    received_at REAL NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL DEFAULT 0,
    updated_at  REAL NOT NULL,
    result      TEXT,
    UNIQUE (upload_id, event)
);
CREATE INDEX IF NOT EXISTS deliveries_todo ON deliveries (state, action, not_before, id);
"""


PROBE_INTERVAL = 1.0  # /healthz may be polled often: one real write per second at most
_PROBE_EVENT = "listener.probe"  # the health probe's row; no delivery has an empty uploadId


class QueueError(DistributeError):
    kind = "queue-error"
    exit_code = 2
    default_title = "Queue unavailable"


class QueueFull(Exception):
    """The queue holds `max_pending` undone items: a new delivery is refused, not stored."""


def _private_dirs(directory: Path) -> None:
    """Create `directory` and any missing parents 0700 (no other user may list the queue)."""
    missing: list[Path] = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        with suppress(FileExistsError):
            path.mkdir(mode=0o700)


def _private_files(path: Path) -> None:
    """Create the database 0600 before SQLite does; tighten an older queue's files."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for name in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            if name.stat().st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


@dataclass(frozen=True)
class Item:
    id: int
    upload_id: str
    event: str
    project_id: str
    action: str
    rule: Mapping[str, Any]
    body: Mapping[str, Any]
    received_at: float
    attempts: int


class Queue:
    def __init__(self, path: Path, *, max_pending: int | None = None) -> None:
        self.path = path
        self.max_pending = max_pending
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._probed_at = -PROBE_INTERVAL
        self._probe_error: str | None = None
        try:
            _private_dirs(path.parent)
            self._own(path)
            _private_files(path)
            # One connection shared under a lock: every statement is short, and SQLite
            # serialises writers anyway.
            self._db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_MS / 1000,
                                       check_same_thread=False, isolation_level=None)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise QueueError(f"{path} does not support WAL mode (got {mode})",
                                 hint="Put the queue on a local disk (not NFS or SMB).")
            self._db.execute("PRAGMA synchronous = FULL")
            self._db.executescript(_DDL)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._write_probe()  # SQLite opens a read-only file read-only, without a word
        except (sqlite3.Error, OSError) as exc:
            if hasattr(self, "_db"):
                self._db.close()
            if self._owner is not None:
                os.close(self._owner)
                self._owner = None
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise QueueError(
                f"cannot open the queue database {path} for writing: {reason}",
                hint="Point `--queue` (STREAMPIXEL_QUEUE) at a writable path on a local disk "
                "(in a container: a volume writable by the user the listener runs as, e.g. "
                "`chown 10001 DIR` for the image's listener user).",
            ) from None

    def _own(self, path: Path) -> None:
        """One listener per queue: a second one would re-queue the first one's item in hand."""
        if sys.platform == "win32":
            return
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QueueError(
                f"another listener is using the queue {path}",
                hint="Run one listener per queue file (stop the other one), or give this one "
                "its own --queue. The kernel releases the lock when that process ends.",
            ) from None
        self._owner = fd  # held (and the lock with it) until close() or process exit

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # Also when COMMIT fails (disk full, I/O error): a transaction left open would
                # make every later BEGIN fail, long after the disk has space again.
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):  # the original error says why
                        self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None

    # -- the server side ------------------------------------------------------------------

    def enqueue(self, *, upload_id: str, event: str, project_id: str, action: str,
                rule: Mapping[str, Any], body: Mapping[str, Any], now: float) -> int | None:
        """Insert one delivery; the new id, or None when (upload_id, event) is already known.

        Raises QueueFull when `max_pending` items are not done yet (a duplicate is still None).
        """
        with self._tx() as db:
            known = db.execute("SELECT 1 FROM deliveries WHERE upload_id = ? AND event = ?",
                               (upload_id, event)).fetchone()
            if known:
                return None
            if self.max_pending is not None and self._undone(db) >= self.max_pending:
                raise QueueFull(self.max_pending)
            cursor = db.execute(
                "INSERT INTO deliveries (upload_id, event, project_id, action, rule, body, "
                "received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (upload_id, event) DO NOTHING",
                (upload_id, event, project_id, action, json.dumps(rule), json.dumps(body),
                 now, now),
            )
            return cursor.lastrowid if cursor.rowcount == 1 else None

    @staticmethod
    def _undone(db: sqlite3.Connection) -> int:
        row = db.execute("SELECT COUNT(*) FROM deliveries "
                         "WHERE state IN ('pending', 'working')").fetchone()
        return int(row[0])

    def full(self) -> bool:
        if self.max_pending is None:
            return False
        with self._lock:
            return self._undone(self._db) >= self.max_pending

    def _write_probe(self) -> None:
        """What a delivery does, committed: an insert into the queue (removed again at once).

        Committing writes and fsyncs the WAL, so a full disk, a read-only file or filesystem, a
        lost lock or an insert the schema refuses all show here as they would for a delivery.
        """
        with self._tx() as db:
            db.execute("INSERT INTO deliveries (upload_id, event, project_id, action, rule, body, "
                       "received_at, updated_at, state) VALUES ('', ?, '', '', '{}', '{}', 0, 0, "
                       "'probe')", (_PROBE_EVENT,))
            db.execute("DELETE FROM deliveries WHERE event = ? AND state = 'probe'",
                       (_PROBE_EVENT,))
            # Give the probe's id back, so the ids that deliveries are answered with stay
            # consecutive however often /healthz is polled (the probe's id was never shown).
            db.execute("UPDATE sqlite_sequence SET seq = seq - 1 WHERE name = 'deliveries'")

    def writable(self) -> str | None:
        """None when a delivery could be committed now, else why not (at most one probe/s)."""
        now = time.monotonic()
        if now - self._probed_at >= PROBE_INTERVAL:
            try:
                self._write_probe()
                self._probe_error = None
            except sqlite3.Error as exc:
                self._probe_error = str(exc)
            self._probed_at = now
        return self._probe_error

    def ping(self) -> bool:
        try:
            with self._lock:
                self._db.execute("SELECT 1 FROM deliveries LIMIT 1").fetchall()
        except sqlite3.Error:
            return False
        return True

    def depth(self) -> dict[str, int]:
        with self._lock:
            rows = self._db.execute(
                "SELECT state, COUNT(*) FROM deliveries GROUP BY state").fetchall()
        counts = {"pending": 0, "working": 0, "done": 0, "failed": 0}
        counts.update({str(state): int(n) for state, n in rows if state in counts})
        return counts

    def prune(self, before: float) -> int:
        """Delete done items last updated before `before`; how many. Failed ones stay."""
        with self._tx() as db:
            return db.execute("DELETE FROM deliveries WHERE state = 'done' AND updated_at < ?",
                              (before,)).rowcount

    # -- the worker side ------------------------------------------------------------------

    def recover(self, now: float) -> int:
        """Put back items that were in hand when the process stopped; how many."""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE deliveries SET state = 'pending', updated_at = ? WHERE state = 'working'",
                (now,))
            return cursor.rowcount

    def claim(self, action: str, now: float) -> Item | None:
        """Take the oldest due pending item of this action kind and mark it working."""
        with self._tx() as db:
            row = db.execute(
                "SELECT id, upload_id, event, project_id, action, rule, body, received_at, "
                "attempts FROM deliveries WHERE state = 'pending' AND action = ? "
                "AND not_before <= ? ORDER BY id LIMIT 1", (action, now)).fetchone()
            if row is None:
                return None
            db.execute("UPDATE deliveries SET state = 'working', attempts = attempts + 1, "
                       "updated_at = ? WHERE id = ?", (now, row[0]))
        return Item(id=row[0], upload_id=row[1], event=row[2], project_id=row[3],
                    action=row[4], rule=json.loads(row[5]), body=json.loads(row[6]),
                    received_at=row[7], attempts=row[8] + 1)

    def next_due(self, action: str) -> float | None:
        """When the earliest pending item of this kind becomes due (None: nothing pending)."""
        with self._lock:
            row = self._db.execute(
                "SELECT MIN(not_before) FROM deliveries WHERE state = 'pending' AND action = ?",
                (action,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def finish(self, item_id: int, state: str, result: Mapping[str, Any], now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state = ?, result = ?, updated_at = ? WHERE id = ?",
                       (state, json.dumps(result), now, item_id))

    def retry_later(self, item_id: int, not_before: float, result: Mapping[str, Any],
                    now: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state = 'pending', not_before = ?, result = ?, "
                       "updated_at = ? WHERE id = ?",
                       (not_before, json.dumps(result), now, item_id))

    def requeue(self, item_id: int, now: float) -> None:
        """Give an item back untouched (shutdown before it was acted on)."""
        with self._tx() as db:
            db.execute("UPDATE deliveries SET state = 'pending', attempts = MAX(0, attempts - 1),"
                       " updated_at = ? WHERE id = ?", (now, item_id))
