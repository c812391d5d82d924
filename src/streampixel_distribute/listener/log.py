"""Structured logs for a long-running server: one JSON object per line on stderr.

A log collector (journald, Docker, Loki, CloudWatch) parses these without regexes. Every line is
serialised first and scrubbed as a whole, so a secret cannot leak through any field, and JSON
escaping keeps payload text (an `objection` with line breaks) from forging extra log lines.
It also implements the coordinator's `Log` protocol, so the coordinator's messages land here.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from .. import redact
from ..clock import iso


class JsonLog:
    def __init__(self, stream: TextIO | None = None, fields: Mapping[str, Any] | None = None,
                 *, _lock: threading.Lock | None = None) -> None:
        self.stream = stream or sys.stderr
        self.fields = dict(fields or {})
        self._lock = _lock or threading.Lock()

    def bind(self, **fields: Any) -> JsonLog:
        """A logger that adds `fields` to every line (e.g. the queue item being processed)."""
        return JsonLog(self.stream, {**self.fields, **fields}, _lock=self._lock)

    def emit(self, level: str, msg: str, **fields: Any) -> None:
        record = {
            "ts": iso(time.time(), millis=True),
            "level": level,
            "msg": msg,
            **self.fields,
            **fields,
        }
        line = redact.scrub(json.dumps(record, default=str, ensure_ascii=False))
        with self._lock:
            try:
                self.stream.write(line + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr must not take the server down

    # -- the coordinator's Log protocol --------------------------------------------------------

    def info(self, message: str, **fields: Any) -> None:
        self.emit("info", message, **fields)

    def warning(self, message: str, title: str = "", **fields: Any) -> None:
        self.emit("warning", message, **({"title": title} if title else {}), **fields)

    def notice(self, message: str, title: str = "") -> None:
        self.emit("notice", message, **({"title": title} if title else {}))

    def error(self, message: str, **fields: Any) -> None:
        self.emit("error", message, **fields)

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        self.emit("info", title)
        yield


class _Bridge(logging.Handler):
    """Sends the `waitress` logger (startup, queue depth warnings, app errors) to JSON lines."""

    def __init__(self, log: JsonLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except (TypeError, ValueError):
            text = str(record.msg)
        extra: dict[str, Any] = {"logger": record.name}
        if record.exc_info and record.exc_info[1] is not None:
            extra["exception"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        level = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "error"}.get(
            record.levelname, "info")
        self.log.emit(level, text, **extra)


def route_library_logs(log: JsonLog) -> None:
    logger = logging.getLogger("waitress")
    logger.handlers[:] = [_Bridge(log)]
    logger.setLevel(logging.INFO)
    logger.propagate = False
