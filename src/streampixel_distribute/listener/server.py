"""The WSGI application: deliveries, `/healthz`, `/metrics`. Served by waitress (see __init__).

A delivery is answered after at most one SQLite insert: validation is in memory, the insert is
committed and fsynced, and every slow thing (waiting for a rate-limit slot, calling Streampixel or
GitHub) happens later in a worker thread. That keeps every answer far inside Streampixel's 10 s
timeout, which it enforces without retrying.

The delivery path carries the secret token (`/webhook/<token>`, Streampixel webhooks are
unsigned). A wrong token gets byte-for-byte the same 404 as any unknown path, compared in constant
time, and no path is ever logged.
"""

from __future__ import annotations

import functools
import hmac
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .config import ListenerConfig, normalise_id
from .log import JsonLog
from .metrics import CONTENT_TYPE, Metrics
from .queue import Queue, QueueFull

StartResponse = Callable[..., Any]
WEBHOOK_PREFIX = "/webhook/"
ENVELOPE_FIELDS = ("event", "projectId", "uploadId", "fileUrl", "status", "objection",
                   "timestamp")
OBJECTION_LOG_CAP = 500
_NOT_FOUND = json.dumps({"message": "Not found"}).encode()


@functools.cache
def _validator() -> Any:
    from importlib import resources  # noqa: PLC0415

    import jsonschema  # noqa: PLC0415 - loaded once, on first use

    text = resources.files("streampixel_distribute").joinpath(
        "schema/webhook.schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def envelope_problems(body: Any) -> list[str]:
    """What is wrong with a parsed body, by field path and rule; never echoes values."""
    problems = []
    for error in sorted(_validator().iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path) or "body"
        rule = error.validator
        if rule == "required":
            missing = [n for n in error.validator_value if not isinstance(body, dict)
                       or n not in body]
            problems.append(f"missing {', '.join(missing)}")
        else:
            problems.append(f"{where}: fails `{rule}`")
    return problems[:10]


def _one_line(text: str, cap: int) -> str:
    flat = " ".join("".join(c if c.isprintable() else " " for c in text[: cap * 2]).split())
    return flat if len(flat) <= cap else flat[: cap - 1] + "…"


class Response(Exception):
    """Ends request handling with this answer (used for early rejections)."""

    def __init__(self, status: str, payload: Mapping[str, Any], outcome: str) -> None:
        super().__init__(status)
        self.status = status
        self.payload = payload
        self.outcome = outcome


class App:
    def __init__(self, config: ListenerConfig, queue: Queue, metrics: Metrics, log: JsonLog,
                 wake: Callable[[], None], now: Callable[[], float] = time.time) -> None:
        self.config = config
        self.queue = queue
        self.metrics = metrics
        self.log = log
        self.wake = wake
        self.now = now
        state = metrics.state
        state.healthy = lambda: self._queue_problem() is None
        state.depth = lambda: self.queue.depth() if self.queue.ping() else {}
        state.paused = config.paused
        state.capacity = queue.max_pending
        self._token = config.token.encode()
        self._last_problem: str | None = None

    def __call__(self, environ: Mapping[str, Any],
                 start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if path.startswith(WEBHOOK_PREFIX) and self._token_matches(path[len(WEBHOOK_PREFIX):]):
            if method != "POST":
                return self._send(start_response, "405 Method Not Allowed",
                                  {"message": "Deliveries are POSTed"}, [("Allow", "POST")])
            return self._delivery(environ, start_response)
        if method in ("GET", "HEAD") and path == "/healthz":
            return self._health(start_response)
        if method in ("GET", "HEAD") and path == "/metrics":
            return self._metrics(start_response)
        if path.startswith(WEBHOOK_PREFIX):
            self.log.warning("delivery refused: wrong token (answered 404)",
                             remote=environ.get("REMOTE_ADDR", ""))
            self.metrics.delivery(None, "not_found", 0.0)
        # Same bytes for a wrong token as for any unknown path: nothing tells a guesser apart.
        start_response("404 Not Found", [("Content-Type", "application/json"),
                                         ("Content-Length", str(len(_NOT_FOUND)))])
        return [_NOT_FOUND]

    def _token_matches(self, candidate: str) -> bool:
        # PATH_INFO is latin-1 decoded bytes (PEP 3333); compare bytes in constant time.
        return hmac.compare_digest(candidate.encode("latin-1", "replace"), self._token)

    # -- operations ---------------------------------------------------------------------------

    def _health(self, start_response: StartResponse) -> Iterable[bytes]:
        """200 only when a delivery would be queued now: the same insert, committed."""
        problem = self._queue_problem()
        if problem is not None:
            return self._send(start_response, "503 Service Unavailable",
                              {"ok": False, "queue": "unwritable"})
        if self.queue.full():
            return self._send(start_response, "503 Service Unavailable",
                              {"ok": False, "queue": "full"})
        return self._send(start_response, "200 OK", {"ok": True, "queue": "ok",
                                                     "paused": self.config.paused})

    def _queue_problem(self) -> str | None:
        """Why the queue cannot take a delivery now (None: it can); logged when it changes."""
        problem = self.queue.writable()
        if problem != self._last_problem:
            self._last_problem = problem
            if problem is None:
                self.log.info("the queue takes deliveries again")
            else:
                self.log.error("the queue cannot take a delivery: deliveries get 503",
                               error=problem)
        return problem

    def _metrics(self, start_response: StartResponse) -> Iterable[bytes]:
        text = self.metrics.render()
        start_response("200 OK", [("Content-Type", CONTENT_TYPE),
                                  ("Content-Length", str(len(text)))])
        return [text]

    # -- deliveries ---------------------------------------------------------------------------

    def _delivery(self, environ: Mapping[str, Any],
                  start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        event: Any = None
        fields: dict[str, Any] = {"remote": environ.get("REMOTE_ADDR", "")}
        try:
            body = self._parse(environ)
            event = body["event"]
            fields.update(event=event, projectId=body["projectId"],
                          uploadId=body.get("uploadId"))
            status, payload, outcome = self._accept(body, fields)
        except Response as answer:
            status, payload, outcome = answer.status, answer.payload, answer.outcome
        elapsed = time.perf_counter() - started
        self.metrics.delivery(event, outcome, elapsed)
        level = "info" if status[0] == "2" else "warning"
        self.log.emit(level, f"delivery {outcome}", status=int(status[:3]),
                      ms=round(elapsed * 1000, 2), **fields,
                      **({"problems": payload["problems"]} if "problems" in payload else {}))
        return self._send(start_response, status, payload)

    def _parse(self, environ: Mapping[str, Any]) -> dict[str, Any]:
        limit = self.config.body_limit
        too_large = Response("413 Content Too Large",
                             {"message": f"Body larger than {limit} bytes"}, "too_large")
        try:
            declared = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Response("400 Bad Request", {"message": "Invalid Content-Length"},
                           "malformed") from None
        if declared > limit:
            raise too_large
        raw = environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise too_large
        try:
            body = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise Response("400 Bad Request", {"message": "Body is not valid JSON"},
                           "malformed") from None
        problems = envelope_problems(body)
        if problems:
            raise Response("422 Unprocessable Content",
                           {"message": "Not a Streampixel webhook envelope",
                            "problems": problems}, "invalid")
        # Keep only the documented envelope: it becomes a dispatch's client_payload, which
        # GitHub caps at 10 top-level properties.
        return {name: body.get(name) for name in ENVELOPE_FIELDS}

    def _accept(  # noqa: PLR0911 - one answer per documented case
            self, body: dict[str, Any],
                fields: dict[str, Any]) -> tuple[str, Mapping[str, Any], str]:
        event, project_id, upload_id = body["event"], body["projectId"], body["uploadId"]
        # One spelling per ObjectId, so `…C77` after `…c77` is the duplicate it is.
        project_id = normalise_id(project_id)
        upload_id = normalise_id(upload_id) if isinstance(upload_id, str) else upload_id
        rules = self.config.rules
        if not rules.allowed(project_id):
            return ("403 Forbidden", {"message": "Project not served by this listener"},
                    "not_allowed")
        if event == "build.rejected":
            fields["objection"] = _one_line(str(body.get("objection") or "no reason given"),
                                            OBJECTION_LOG_CAP)
            self.log.warning("Streampixel rejected a build", **fields)
        if event == "webhook.test":
            return "200 OK", {"status": "acknowledged", "message": "Test webhook received"}, \
                "acknowledged"
        rule = rules.rule_for(project_id)
        if rule is None or event not in rule.on:
            return "200 OK", {"status": "ignored", "message": "No action configured for "
                              "this event"}, "ignored"
        if not upload_id:
            return "200 OK", {"status": "ignored", "message": "No uploadId to act on"}, \
                "ignored"
        try:
            item = self.queue.enqueue(upload_id=upload_id, event=event, project_id=project_id,
                                      action=rule.action, rule=rule.as_dict(), body=body,
                                      now=self.now())
        except QueueFull:
            self.log.emit("error", "queue full: delivery refused",
                          max_pending=self.queue.max_pending, **fields)
            return "503 Service Unavailable", {"message": "Queue full"}, "queue_full"
        except sqlite3.Error as exc:
            self.log.emit("error", "could not queue a delivery", error=str(exc), **fields)
            return "503 Service Unavailable", {"message": "Queue unavailable"}, "queue_error"
        if item is None:
            return "200 OK", {"status": "duplicate", "message": "Already received"}, "duplicate"
        fields["item"] = item
        fields["action"] = rule.action
        self.wake()
        return "202 Accepted", {"status": "queued", "id": item}, "queued"

    @staticmethod
    def _send(start_response: StartResponse, status: str, payload: Mapping[str, Any],
              extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
        data = json.dumps(payload).encode()
        start_response(status, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(data))), *(extra or [])])
        return [data]
