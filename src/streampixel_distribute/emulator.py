"""A local stand-in for the Streampixel API: a real HTTP server for demos, tests, offline pipelines.

It answers `.../projects/distribute-file`, `.../projects/upload-file` and
`.../projects/test-webhook` under any path prefix with the documented status codes and `message`
strings, enforces the per-user write rate limit, runs a fake build pipeline that sends webhook
events (to loopback URLs only), and exposes `/_emulator/...` control endpoints so a test can
inspect what it received and inject faults. See docs/emulator.md.

Only the standard library is used so the emulator starts fast in a subprocess.
"""

from __future__ import annotations

import argparse
import copy
import hmac
import http.client
import json
import math
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

from . import __version__, redact
from .settings import is_loopback_host

API_BASE: Final = "/pixelStripeApi"
DEFAULT_INTERVAL: Final = 120.0
DEFAULT_PROCESSING_SECONDS: Final = 5.0
WEBHOOK_TIMEOUT: Final = 10.0  # what Streampixel documents; deliveries are never retried
MAX_REQUEST_BODY: Final = 1_000_000
MAX_FAULT_BODY: Final = 100_000_000
ENDPOINTS: Final = ("distribute-file", "upload-file", "test-webhook")

# The documented strings (reference/streampixel-api.md §2-§6). MSG_NO_URL, MSG_UNSUPPORTED,
# MSG_BAD_JSON and MSG_BAD_FILE_URL are our choice: the docs' exact wording is not readable.
MSG_MISSING: Final = "Missing required field: {}"
MSG_INVALID_USER: Final = "Invalid User"
MSG_INVALID_KEY: Final = "Unauthorized: Invalid API Key"
MSG_UNAUTHORIZED: Final = "Unauthorized"
MSG_ACCESS_DENIED: Final = "Access denied"
MSG_PROJECT_NOT_FOUND: Final = "Project not found"
MSG_FILE_NOT_FOUND: Final = "File not found in project"
MSG_NO_URL: Final = "File has no URL yet"
MSG_TRIGGERED: Final = "Distribution triggered"
MSG_QUEUED: Final = "Build queued for processing"
MSG_NO_WEBHOOK: Final = "No webhook URL configured"
MSG_WEBHOOK_OK: Final = "Test webhook delivered"
MSG_WEBHOOK_FAIL: Final = "Webhook endpoint returned non-2xx status"
MSG_UNSUPPORTED: Final = "Unsupported Media Type: send Content-Type: application/json"
MSG_BAD_JSON: Final = "Invalid JSON body"
MSG_BAD_FILE_URL: Final = "Invalid fileUrl: must be a direct download link to a .zip file"
MSG_BAD_AUTO_RELEASE: Final = "Invalid field: autoRelease must be a boolean"
MSG_NOT_FOUND: Final = "Not found"
MSG_TOO_LARGE: Final = "Payload too large"


def rate_limit_message(remaining: float) -> str:
    """The 429 text, rendered from the real remaining time (the docs show `... in 2 minutes.`)."""
    if remaining >= 60:
        count, unit = math.ceil(remaining / 60), "minute"
    else:
        count, unit = max(1, math.ceil(remaining)), "second"
    return f"Rate limit exceeded. Try again in {count} {unit}{'' if count == 1 else 's'}."


# --- the built-in demo account ---------------------------------------------------------------


@dataclass(frozen=True)
class DemoAccount:
    """Fixed, deterministic ids of the demo data (safe to print: nothing here is a secret)."""

    user_id: str = "65de0000000000000000a001"
    api_key: str = "demo-api-key-not-a-secret"
    project_id: str = "65de0000000000000000b001"
    region: str = "europe"
    upload_id: str = "65de0000000000000000c001"  # ready: distribute-file succeeds
    processing_upload_id: str = "65de0000000000000000c002"  # processing forever: 400 no URL
    rejected_upload_id: str = "65de0000000000000000c003"  # rejected: 400 no URL
    disabled_project_id: str = "65de0000000000000000b002"  # disabled by an admin: 403
    other_user_id: str = "65de0000000000000000a002"
    other_api_key: str = "other-api-key-not-a-secret"
    foreign_project_id: str = "65de0000000000000000b003"  # owned by other_user_id: 403 for demo
    foreign_upload_id: str = "65de0000000000000000c004"  # ready, in foreign_project_id


DEMO: Final = DemoAccount()
DEMO_OBJECTION: Final = "No packaged Windows executable found in the archive"


def demo_seed() -> list[dict[str, Any]]:
    return [
        {
            "userId": DEMO.user_id,
            "apiKey": DEMO.api_key,
            "projects": [
                {
                    "projectId": DEMO.project_id,
                    "region": DEMO.region,
                    "uploads": [
                        {"uploadId": DEMO.upload_id, "ready": True},
                        {"uploadId": DEMO.processing_upload_id, "ready": False},
                        {"uploadId": DEMO.rejected_upload_id, "objection": DEMO_OBJECTION},
                    ],
                },
                {"projectId": DEMO.disabled_project_id, "enabled": False},
            ],
        },
        {
            "userId": DEMO.other_user_id,
            "apiKey": DEMO.other_api_key,
            "projects": [
                {
                    "projectId": DEMO.foreign_project_id,
                    "region": "us-east-1",
                    "uploads": [{"uploadId": DEMO.foreign_upload_id, "ready": True}],
                }
            ],
        },
    ]


# --- the seed file ---------------------------------------------------------------------------


class SeedError(ValueError):
    """A seed file or `/_emulator/accounts` body that does not have the documented shape."""


def _opt(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SeedError(f"{where}.{key} must be {names}, got {type(value).__name__}")
    return value


def _req_str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise SeedError(f"{where}.{key} is required (a non-empty string)")
    return value


def _as_obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SeedError(f"{where} must be a JSON object")
    return value


def _as_list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeedError(f"{where} must be a JSON array")
    return value


_ACCOUNT_KEYS: Final = {"userId", "apiKey", "projects"}
_PROJECT_KEYS: Final = {
    "projectId", "enabled", "region", "webhookUrl", "rejectObjection", "uploads",
}  # fmt: skip
_UPLOAD_KEYS: Final = {"uploadId", "ready", "readyIn", "objection", "fileUrl", "autoRelease"}


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise SeedError(f"{where} has unknown field(s) {', '.join(unknown)}")


def parse_accounts(data: Any, where: str = "seed") -> tuple[list[dict[str, Any]], bool]:
    """Validate the seed shape; returns (accounts, include_demo). Raises `SeedError`."""
    if isinstance(data, list):
        data = {"accounts": data}
    top = _as_obj(data, where)
    _no_unknown(top, {"accounts", "demo"}, where)
    include_demo = _opt(top, "demo", bool, where)
    accounts = _as_list(top.get("accounts"), f"{where}.accounts")
    for i, raw_account in enumerate(accounts):
        at = f"{where}.accounts[{i}]"
        account = _as_obj(raw_account, at)
        _no_unknown(account, _ACCOUNT_KEYS, at)
        _req_str(account, "userId", at)
        _req_str(account, "apiKey", at)
        for j, raw_project in enumerate(_as_list(account.get("projects"), f"{at}.projects")):
            pt = f"{at}.projects[{j}]"
            project = _as_obj(raw_project, pt)
            _no_unknown(project, _PROJECT_KEYS, pt)
            _req_str(project, "projectId", pt)
            _opt(project, "enabled", bool, pt)
            _opt(project, "region", str, pt)
            _opt(project, "webhookUrl", str, pt)
            _opt(project, "rejectObjection", str, pt)
            for k, raw_upload in enumerate(_as_list(project.get("uploads"), f"{pt}.uploads")):
                ut = f"{pt}.uploads[{k}]"
                upload = _as_obj(raw_upload, ut)
                _no_unknown(upload, _UPLOAD_KEYS, ut)
                _req_str(upload, "uploadId", ut)
                _opt(upload, "ready", bool, ut)
                ready_in = _opt(upload, "readyIn", (int, float), ut)
                if isinstance(ready_in, bool) or (ready_in is not None and ready_in < 0):
                    raise SeedError(f"{ut}.readyIn must be a number of seconds >= 0")
                _opt(upload, "objection", str, ut)
                _opt(upload, "fileUrl", str, ut)
                _opt(upload, "autoRelease", bool, ut)
    return accounts, include_demo is not False


def load_seed(path: str | os.PathLike[str]) -> tuple[list[dict[str, Any]], bool]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SeedError(f"cannot read seed file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SeedError(f"seed file {path} is not valid JSON: {exc}") from None
    return parse_accounts(data, where=Path(path).name)


# --- state -----------------------------------------------------------------------------------


@dataclass
class Upload:
    upload_id: str
    project_id: str
    file_url: str | None
    done_at: float | None  # emulator-monotonic time processing ends; None = processing forever
    objection: str | None = None
    auto_release: bool = True
    distributions: int = 0

    def state(self, now: float) -> str:
        if self.done_at is None or now < self.done_at:
            return "processing"
        return "rejected" if self.objection else "ready"


@dataclass
class Project:
    project_id: str
    user_id: str
    enabled: bool = True
    region: str = "asia-pacific"  # Streampixel's documented default region
    webhook_url: str | None = None
    reject_objection: str | None = None
    live_upload_id: str | None = None
    uploads: dict[str, Upload] = field(default_factory=dict)


@dataclass
class Config:
    interval: float = DEFAULT_INTERVAL
    processing_seconds: float = DEFAULT_PROCESSING_SECONDS
    retry_after_header: bool = False


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"message": text}, headers)


class _Reply(Exception):
    """Ends request handling early with an error response."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = message(status, text, headers)


DROPS: Final = ("before_read", "before_response", "mid_body")
_FAULT_KEYS: Final = {
    "path", "method", "times", "status", "body", "content_type", "delay", "drop", "headers",
    "body_size",
}  # fmt: skip


@dataclass
class Fault:
    path: str = "*"
    method: str | None = None
    times: int = 1
    status: int | None = None
    body: str | bytes | None = None
    content_type: str | None = None
    delay: float = 0.0
    drop: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_size: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        obj = _as_obj(raw, "fault")
        _no_unknown(obj, _FAULT_KEYS, "fault")
        fault = cls()
        fault.path = str(obj.get("path") or "*")
        method = _opt(obj, "method", str, "fault")
        fault.method = method.upper() if method else None
        times = obj.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise SeedError("fault.times must be an integer >= 1")
        fault.times = times
        status = obj.get("status")
        if status is not None and (
            not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599
        ):
            raise SeedError("fault.status must be an HTTP status code (100-599)")
        fault.status = status
        body = obj.get("body")
        fault.body = body if body is None or isinstance(body, str) else json.dumps(body)
        fault.content_type = _opt(obj, "content_type", str, "fault")
        if fault.content_type is None and body is not None and isinstance(body, str):
            fault.content_type = "text/plain; charset=utf-8"
        delay = _opt(obj, "delay", (int, float), "fault") or 0.0
        if isinstance(delay, bool) or delay < 0:
            raise SeedError("fault.delay must be a number of seconds >= 0")
        fault.delay = float(delay)
        drop = obj.get("drop")
        if drop is not None and drop not in DROPS:
            raise SeedError(f"fault.drop must be one of {', '.join(DROPS)}")
        fault.drop = drop
        headers = _opt(obj, "headers", dict, "fault") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise SeedError("fault.headers must map header names to strings")
        fault.headers = headers
        size = obj.get("body_size")
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_FAULT_BODY
        ):
            raise SeedError(f"fault.body_size must be an integer in 0..{MAX_FAULT_BODY}")
        fault.body_size = size
        return fault

    def matches(self, endpoint: str | None, path: str, method: str) -> bool:
        if self.method and self.method != method:
            return False
        return self.path in ("*", endpoint) or path.endswith(self.path)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        for key in ("status", "delay", "drop", "body_size"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.headers:
            out["headers"] = sorted(self.headers)
        return out

    def response(self) -> Response:
        """The whole response of a fault that sets `status` (the request is not processed)."""
        status = self.status or 500
        if self.body is None:
            return self.decorate(message(status, _phrase(status)))
        body = self.body.encode() if isinstance(self.body, str) else self.body
        resp = Response(status, body, self.content_type or "application/json; charset=utf-8")
        return self.decorate(resp)

    def decorate(self, resp: Response) -> Response:
        resp.headers.update(self.headers)
        if self.body_size is not None and len(resp.body) < self.body_size:
            # trailing whitespace keeps a JSON body valid JSON
            resp.body += b" " * (self.body_size - len(resp.body))
        return resp


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _iso(epoch: float) -> str:
    text = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def is_loopback_url(url: str) -> bool:
    """Only loopback receivers get deliveries: the emulator must never reach out to the internet."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_loopback_host(host)


# Pipeline events: (event, status at trigger) per reference §6.2.
EV_UPLOADED = ("build.uploaded", "pending")
EV_DOWNLOADING = ("build.downloading", "Downloading Files")
EV_EXTRACTING = ("build.extracting", "Extracting & Scanning")
EV_SAVING = ("build.saving", "Saving to Repository")
EV_DISTRIBUTING = ("build.distributing", "Distribute")
EV_APPROVED = ("build.approved", "Approved")
EV_REJECTED = ("build.rejected", "Reject")


def pipeline_events(*, rejected: bool, auto_release: bool) -> list[tuple[str, str]]:
    if rejected:
        return [EV_UPLOADED, EV_DOWNLOADING, EV_EXTRACTING, EV_REJECTED]
    if auto_release:
        return [EV_UPLOADED, EV_DOWNLOADING, EV_EXTRACTING, EV_SAVING, EV_DISTRIBUTING, EV_APPROVED]
    return [EV_UPLOADED, EV_DOWNLOADING, EV_EXTRACTING, EV_SAVING, EV_APPROVED]


class Emulator:
    """All state, behind one lock. The HTTP handler only parses and writes bytes."""

    def __init__(
        self,
        config: Config,
        seed: list[dict[str, Any]] | None = None,
        *,
        include_demo: bool = True,
        log: Any = None,
    ) -> None:
        self._initial_config = copy.copy(config)
        self._seed = seed or []
        self.include_demo = include_demo
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._log = log
        self._generation = 0
        with self._lock:
            self._reset_locked()

    # - time: a settable offset lets tests jump past a rate-limit window without sleeping
    def now(self) -> float:
        return time.monotonic() + self._offset

    def epoch(self) -> float:
        return time.time() + self._offset

    def _reset_locked(self) -> None:
        self._generation += 1
        self._cond.notify_all()  # pipelines of the previous generation stop
        self._offset = 0.0
        self.config = copy.copy(self._initial_config)
        self.accounts: dict[str, str] = {}  # userId -> apiKey
        self.projects: dict[str, Project] = {}
        self.next_free: dict[str, float] = {}
        self.requests: list[dict[str, Any]] = []
        self.webhooks: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        seeds = (demo_seed() if self.include_demo else []) + self._seed
        self._add_accounts_locked(seeds)

    def reset(self) -> None:
        with self._lock:
            self._reset_locked()

    @property
    def generation(self) -> int:
        """Changes on every reset; a request that outlived a reset must not touch the new state."""
        with self._lock:
            return self._generation

    def add_accounts(self, data: Any) -> int:
        accounts, _ = parse_accounts(data, where="accounts")
        with self._lock:
            self._add_accounts_locked(accounts)
        return len(accounts)

    def _add_accounts_locked(self, accounts: list[dict[str, Any]]) -> None:
        now = self.now()
        for account in accounts:
            user_id = account["userId"]
            self.accounts[user_id] = account["apiKey"]
            if account["apiKey"] != DEMO.api_key and account["apiKey"] != DEMO.other_api_key:
                redact.register(account["apiKey"])  # keep real-looking keys out of the log
            for spec in account.get("projects") or []:
                project = Project(
                    project_id=spec["projectId"],
                    user_id=user_id,
                    enabled=spec.get("enabled", True),
                    region=spec.get("region") or "asia-pacific",
                    webhook_url=spec.get("webhookUrl"),
                    reject_objection=spec.get("rejectObjection"),
                )
                old = self.projects.get(project.project_id)
                if old is not None:
                    project.uploads = old.uploads
                self.projects[project.project_id] = project
                for up in spec.get("uploads") or []:
                    ready_in = up.get("readyIn")
                    if ready_in is not None:
                        done_at: float | None = now + float(ready_in)
                    elif up.get("ready", True) or up.get("objection"):
                        done_at = now
                    else:
                        done_at = None
                    project.uploads[up["uploadId"]] = Upload(
                        upload_id=up["uploadId"],
                        project_id=project.project_id,
                        file_url=up.get("fileUrl"),
                        done_at=done_at,
                        objection=up.get("objection"),
                        auto_release=up.get("autoRelease", True),
                    )

    def set_webhook(self, project_id: str, url: str | None) -> bool:
        with self._lock:
            project = self.projects.get(project_id)
            if project is None:
                return False
            project.webhook_url = url or None
            return True

    def add_faults(self, raw: Any) -> int:
        faults = [Fault.parse(item) for item in (raw if isinstance(raw, list) else [raw])]
        with self._lock:
            self.faults.extend(faults)
        return len(faults)

    def pending_faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.describe() | {"times": f.times} for f in self.faults]

    def take_fault(self, endpoint: str | None, path: str, method: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.matches(endpoint, path, method):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def configure(self, raw: Any) -> dict[str, Any]:
        obj = _as_obj(raw, "config")
        _no_unknown(obj, {"interval", "processing_seconds", "retry_after_header"}, "config")
        for key in ("interval", "processing_seconds"):
            value = _opt(obj, key, (int, float), "config")
            if isinstance(value, bool) or (value is not None and value < 0):
                raise SeedError(f"config.{key} must be a number of seconds >= 0")
        _opt(obj, "retry_after_header", bool, "config")
        with self._lock:
            for key, value in obj.items():
                if value is not None:
                    setattr(self.config, key, value if isinstance(value, bool) else float(value))
            return self.config_dict()

    def config_dict(self) -> dict[str, Any]:
        return {
            "interval": self.config.interval,
            "processing_seconds": self.config.processing_seconds,
            "retry_after_header": self.config.retry_after_header,
        }

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._offset += seconds
            self._cond.notify_all()
            return self._offset

    # - recording: never the apiKey, only whether it matched
    def record(self, rec: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(rec)

    def update(self, rec: dict[str, Any], **fields: Any) -> None:
        with self._lock:
            rec.update(fields)

    def snapshot_requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.requests if endpoint in (None, r.get("endpoint"))]

    def snapshot_webhooks(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(w) for w in self.webhooks]

    def state(self) -> dict[str, Any]:
        with self._lock:
            now = self.now()
            out = []
            for user_id in self.accounts:
                projects = []
                for p in self.projects.values():
                    if p.user_id != user_id:
                        continue
                    uploads = [
                        {
                            "uploadId": u.upload_id,
                            "state": u.state(now),
                            "objection": u.objection,
                            "autoRelease": u.auto_release,
                            "distributions": u.distributions,
                        }
                        for u in p.uploads.values()
                    ]
                    projects.append(
                        {
                            "projectId": p.project_id,
                            "enabled": p.enabled,
                            "region": p.region,
                            "webhookUrl": p.webhook_url,
                            "rejectObjection": p.reject_objection,
                            "liveUploadId": p.live_upload_id,
                            "uploads": uploads,
                        }
                    )
                wait = max(0.0, self.next_free.get(user_id, now) - now)
                out.append({"userId": user_id, "rateLimitWait": wait, "projects": projects})
            return {"time": self.epoch(), "config": self.config_dict(), "accounts": out}

    # - the API: each check raises _Reply with the documented error, in the server's order
    def handle_api(
        self, endpoint: str | None, method: str, content_type: str, body: bytes,
        rec: dict[str, Any],
    ) -> Response:  # fmt: skip
        try:
            data = self._parse_body(endpoint, method, content_type, body)
            for key in ("userId", "projectId", "uploadId"):
                if isinstance(data.get(key), str):
                    rec[key] = data[key][:100]
            if endpoint == "distribute-file":
                return self._distribute(data, rec)
            if endpoint == "upload-file":
                return self._upload(data, rec)
            return self._test_webhook(data, rec)
        except _Reply as reply:
            return reply.response

    @staticmethod
    def _parse_body(
        endpoint: str | None, method: str, content_type: str, body: bytes
    ) -> dict[str, Any]:
        if endpoint is None or method != "POST":
            raise _Reply(404, MSG_NOT_FOUND)
        mime = content_type.split(";", 1)[0].strip().lower()
        if mime != "application/json" and not mime.endswith("+json"):
            raise _Reply(415, MSG_UNSUPPORTED)
        try:
            data = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise _Reply(400, MSG_BAD_JSON) from None
        if not isinstance(data, dict):
            raise _Reply(400, MSG_BAD_JSON)
        return data

    @staticmethod
    def _require(data: dict[str, Any], names: tuple[str, ...]) -> None:
        for name in names:
            value = data.get(name)
            if not isinstance(value, str) or not value:
                raise _Reply(400, MSG_MISSING.format(name))

    def _authenticate(self, data: dict[str, Any], rec: dict[str, Any], bad_key: str) -> None:
        """Unknown user first, then the key (401 either way). Caller holds the lock."""
        expected = self.accounts.get(data["userId"])
        if expected is None:
            raise _Reply(401, MSG_INVALID_USER)
        key = data.get("apiKey")
        ok = isinstance(key, str) and hmac.compare_digest(expected.encode(), key.encode())
        rec["api_key_ok"] = ok
        if not ok:
            raise _Reply(401, bad_key)

    def _take_slot(self, user_id: str) -> None:
        """Per-user write window, shared by upload-file and distribute-file. A 429 does not extend
        it. Caller holds the lock."""
        now = self.now()
        next_free = self.next_free.get(user_id)
        if next_free is not None and now < next_free:
            remaining = next_free - now
            headers = {}
            if self.config.retry_after_header:
                headers["Retry-After"] = str(math.ceil(remaining))
            raise _Reply(429, rate_limit_message(remaining), headers)
        if self.config.interval > 0:
            self.next_free[user_id] = now + self.config.interval

    def _project_for(self, data: dict[str, Any]) -> Project:
        project = self.projects.get(data["projectId"])
        if project is None:
            raise _Reply(404, MSG_PROJECT_NOT_FOUND)
        if project.user_id != data["userId"] or not project.enabled:
            raise _Reply(403, MSG_ACCESS_DENIED)
        return project

    def _distribute(self, data: dict[str, Any], rec: dict[str, Any]) -> Response:
        self._require(data, ("apiKey", "userId", "projectId", "uploadId"))
        with self._lock:
            self._authenticate(data, rec, MSG_INVALID_KEY)
            self._take_slot(data["userId"])
            project = self._project_for(data)
            upload = project.uploads.get(data["uploadId"])
            if upload is None:
                raise _Reply(404, MSG_FILE_NOT_FOUND)
            if upload.state(self.now()) != "ready":
                raise _Reply(400, MSG_NO_URL)
            upload.distributions += 1
            project.live_upload_id = upload.upload_id
            self._start_pipeline_locked(project, upload, [EV_DISTRIBUTING], spread=0.0)
            return json_response(
                200,
                {
                    "message": MSG_TRIGGERED,
                    "success": True,
                    "uploadId": upload.upload_id,
                    "region": project.region,
                },
            )

    def _upload(self, data: dict[str, Any], rec: dict[str, Any]) -> Response:
        self._require(data, ("apiKey", "userId", "projectId", "fileUrl"))
        auto_release = data.get("autoRelease", True)
        if not isinstance(auto_release, bool):
            raise _Reply(400, MSG_BAD_AUTO_RELEASE)
        url = urllib.parse.urlsplit(data["fileUrl"])
        # Query strings pass: the docs forbid them but also recommend presigned S3 URLs.
        if url.scheme not in ("http", "https") or not url.netloc:
            raise _Reply(400, MSG_BAD_FILE_URL)
        if not url.path.lower().endswith(".zip"):
            raise _Reply(400, MSG_BAD_FILE_URL)
        with self._lock:
            self._authenticate(data, rec, MSG_INVALID_KEY)
            self._take_slot(data["userId"])
            project = self._project_for(data)
            # ObjectId-like: 4 bytes of time, 8 random bytes
            upload_id = f"{int(self.epoch()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"
            spread = self.config.processing_seconds
            upload = Upload(
                upload_id=upload_id,
                project_id=project.project_id,
                file_url=data["fileUrl"],
                done_at=self.now() + spread,
                objection=project.reject_objection,
                auto_release=auto_release,
            )
            project.uploads[upload_id] = upload
            rec["uploadId"] = upload_id
            events = pipeline_events(rejected=bool(upload.objection), auto_release=auto_release)
            self._start_pipeline_locked(project, upload, events, spread=spread)
            return json_response(200, {"message": MSG_QUEUED, "uploadId": upload_id})

    def _test_webhook(self, data: dict[str, Any], rec: dict[str, Any]) -> Response:
        self._require(data, ("userId", "projectId"))  # a missing apiKey is a 401 here
        with self._lock:
            self._authenticate(data, rec, MSG_UNAUTHORIZED)
            url = self._project_for(data).webhook_url
            generation = self._generation
        if not url:
            raise _Reply(404, MSG_NO_WEBHOOK)
        payload = self._envelope("webhook.test", "test", data["projectId"], None)
        code = self._deliver(url, payload, generation)  # outside the lock: may take 10 s
        ok = 200 <= code < 300
        return json_response(
            200,
            {
                "success": ok,
                "message": MSG_WEBHOOK_OK if ok else MSG_WEBHOOK_FAIL,
                "statusCode": code,
            },
        )

    # - webhooks
    def _envelope(
        self, event: str, status: str, project_id: str, upload: Upload | None
    ) -> dict[str, Any]:
        return {
            "event": event,
            "projectId": project_id,
            "uploadId": upload.upload_id if upload else None,
            "fileUrl": upload.file_url if upload else None,
            "status": status,
            "objection": upload.objection if upload and event == EV_REJECTED[0] else None,
            "timestamp": _iso(self.epoch()),
        }

    def _start_pipeline_locked(
        self, project: Project, upload: Upload, events: list[tuple[str, str]], spread: float
    ) -> None:
        start = self.now()
        step = spread / (len(events) - 1) if len(events) > 1 else 0.0
        schedule = [(start + i * step, ev) for i, ev in enumerate(events)]
        thread = threading.Thread(
            target=self._run_pipeline,
            args=(self._generation, project.project_id, upload, schedule),
            name=f"pipeline-{upload.upload_id}",
            daemon=True,
        )
        thread.start()

    def _run_pipeline(
        self,
        generation: int,
        project_id: str,
        upload: Upload,
        schedule: list[tuple[float, tuple[str, str]]],
    ) -> None:
        # One thread per build delivers its events one after another, so their order holds.
        for due, (event, status) in schedule:
            with self._cond:
                while self._generation == generation and self.now() < due:
                    self._cond.wait(min(due - self.now(), 0.5))
                if self._generation != generation:
                    return
                project = self.projects.get(project_id)
                if event == EV_APPROVED[0] and upload.auto_release and project is not None:
                    project.live_upload_id = upload.upload_id
                url = project.webhook_url if project else None
                payload = self._envelope(event, status, project_id, upload)
            if url:
                self._deliver(url, payload, generation)

    def _deliver(self, url: str, payload: dict[str, Any], generation: int) -> int:
        """POST once with a 10 s timeout and no retries; returns the status code, 0 if none."""
        started = time.monotonic()
        code, error = 0, None
        if not is_loopback_url(url):
            error = "refused: the emulator delivers only to loopback URLs"
        else:
            code, error = _post_json(url, payload, WEBHOOK_TIMEOUT)
        entry = {
            "time": self.epoch(),
            "event": payload["event"],
            "url": url,
            "projectId": payload["projectId"],
            "uploadId": payload["uploadId"],
            "statusCode": code,
            "error": error,
            "duration": round(time.monotonic() - started, 4),
        }
        with self._lock:
            if self._generation == generation:
                self.webhooks.append(entry)
        self.log(f"webhook {payload['event']} -> {url}: {code or error}")
        return code

    def log(self, text: str) -> None:
        if self._log is not None:
            print(f"emulator: {redact.scrub(text)}", file=self._log, flush=True)


def _post_json(url: str, payload: dict[str, Any], timeout: float) -> tuple[int, str | None]:
    parts = urllib.parse.urlsplit(url)
    conn_cls: type[http.client.HTTPConnection] = http.client.HTTPConnection
    if parts.scheme == "https":
        conn_cls = http.client.HTTPSConnection
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    body = json.dumps(payload).encode()
    conn = conn_cls(parts.hostname or "localhost", parts.port, timeout=timeout)
    try:
        conn.request(
            "POST",
            target,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": "streampixel-emulator"},
        )
        resp = conn.getresponse()
        resp.read(65536)
    except (OSError, http.client.HTTPException) as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    else:
        return resp.status, None
    finally:
        conn.close()


# --- HTTP ------------------------------------------------------------------------------------


def endpoint_of(path: str) -> str | None:
    for name in ENDPOINTS:
        if path.endswith("/projects/" + name):
            return name
    return None


Query = dict[str, list[str]]


def _ctl_health(_emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, {"ok": True, "pid": os.getpid()})


def _ctl_requests(emu: Emulator, _data: Any, query: Query) -> Response:
    endpoint = query["endpoint"][0] if query.get("endpoint") else None
    return json_response(200, emu.snapshot_requests(endpoint))


def _ctl_webhooks(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.snapshot_webhooks())


def _ctl_state(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.state())


def _ctl_reset(emu: Emulator, _data: Any, _query: Query) -> Response:
    emu.reset()
    return json_response(200, {"reset": True})


def _ctl_faults(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.pending_faults())


def _ctl_add_faults(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, {"queued": emu.add_faults(data)})


def _ctl_accounts(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, {"added": emu.add_accounts(data)})


def _ctl_config(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.configure({}))


def _ctl_configure(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, emu.configure(data))


def _ctl_clock(emu: Emulator, data: Any, _query: Query) -> Response:
    advance = _as_obj(data, "clock").get("advance")
    if not isinstance(advance, int | float) or isinstance(advance, bool) or advance < 0:
        return message(400, "clock.advance must be a number of seconds >= 0")
    return json_response(200, {"offset": emu.advance(float(advance))})


def _control_webhook(emu: Emulator, project_id: str, data: Any) -> Response:
    obj = _as_obj(data, "webhook")
    url = obj.get("url", obj.get("webhookUrl"))
    if url is not None and not isinstance(url, str):
        return message(400, "webhook.url must be a string or null")
    if not emu.set_webhook(project_id, url):
        return message(404, MSG_PROJECT_NOT_FOUND)
    deliverable = bool(url) and is_loopback_url(str(url))
    return json_response(200, {"webhookUrl": url or None, "deliverable": deliverable})


_CONTROL: Final[dict[tuple[str, str], Callable[[Emulator, Any, Query], Response]]] = {
    ("GET", ""): _ctl_health,
    ("GET", "health"): _ctl_health,
    ("GET", "requests"): _ctl_requests,
    ("GET", "webhooks"): _ctl_webhooks,
    ("GET", "state"): _ctl_state,
    ("GET", "accounts"): _ctl_state,
    ("POST", "reset"): _ctl_reset,
    ("GET", "faults"): _ctl_faults,
    ("POST", "faults"): _ctl_add_faults,
    ("POST", "accounts"): _ctl_accounts,
    ("GET", "config"): _ctl_config,
    ("POST", "config"): _ctl_configure,
    ("POST", "clock"): _ctl_clock,
}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API behind a proxy
    server: EmulatorServer

    def version_string(self) -> str:
        return f"streampixel-emulator/{__version__}"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def _dispatch(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.path == "/_emulator" or parts.path.startswith("/_emulator/"):
            try:
                body = self._read_body()
                resp = self._control(parts.path, urllib.parse.parse_qs(parts.query), body)
            except _Reply as exc:
                resp = exc.response
            except SeedError as exc:
                resp = message(400, str(exc))
            self._send(resp)
            return
        self._api(parts.path)

    def _read_body(self) -> bytes:
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise _Reply(411, "Length Required")
            return b""
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise _Reply(400, "Invalid Content-Length") from None
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            raise _Reply(413, MSG_TOO_LARGE)
        return self.rfile.read(length)

    def _api(self, path: str) -> None:
        emu = self.emu
        endpoint = endpoint_of(path)
        rec: dict[str, Any] = {
            "time": emu.epoch(),
            "method": self.command,
            "path": path,  # without the query string: a GET could carry `apikey` there
            "endpoint": endpoint,
            "status": None,
            "userId": None,
            "projectId": None,
            "uploadId": None,
            "api_key_ok": None,
            "content_type": self.headers.get("Content-Type"),
            "user_agent": self.headers.get("User-Agent"),
        }
        emu.record(rec)
        generation = emu.generation
        fault = emu.take_fault(endpoint, path, self.command)
        if fault is not None:
            emu.update(rec, fault=fault.describe())
            if fault.delay:
                time.sleep(fault.delay)
            if emu.generation != generation:  # reset while we slept: belongs to an old test
                self._abort()
                return
            if fault.drop == "before_read":
                emu.update(rec, dropped=fault.drop)
                self._abort()
                return
        try:
            body = self._read_body()
        except _Reply as exc:
            emu.update(rec, status=exc.response.status)
            self._send(exc.response)
            return
        if fault is not None and fault.status is not None:
            resp = fault.response()  # replaces the server: nothing processed, no window used
        else:
            scratch: dict[str, Any] = {}
            resp = emu.handle_api(
                endpoint, self.command, self.headers.get("Content-Type", ""), body, scratch
            )
            emu.update(rec, **scratch)
            if fault is not None:
                resp = fault.decorate(resp)
        if fault is not None and fault.drop == "before_response":
            emu.update(rec, dropped=fault.drop)  # processed, but the client never learns it
            self._abort()
            return
        emu.update(rec, status=resp.status)
        if fault is not None and fault.drop == "mid_body":
            emu.update(rec, dropped=fault.drop)
            self._send(resp, cut=True)
            return
        self._send(resp)

    def _control(self, path: str, query: dict[str, list[str]], body: bytes) -> Response:
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return message(400, MSG_BAD_JSON)
        route = path.removeprefix("/_emulator").strip("/")
        handler = _CONTROL.get((self.command, route))
        if handler is not None:
            return handler(self.emu, data, query)
        segments = route.split("/")
        if (
            self.command == "PUT"
            and len(segments) == 3
            and segments[::2] == ["projects", "webhook"]
        ):
            return _control_webhook(self.emu, segments[1], data)
        return message(404, f"No control endpoint {self.command} {path}")

    def _send(self, resp: Response, *, cut: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self._abort()
            return
        self.wfile.write(resp.body)

    def _abort(self) -> None:
        """Close the connection with no (or no complete) response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_request(self, code: int | str = "-", _size: int | str = "-") -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.log_message("%s %s %s", self.command, path, str(code))

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            text = redact.scrub(format % args)
            print(f"emulator: {self.address_string()} {text}", file=sys.stderr, flush=True)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, *, quiet: bool, family: int
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.quiet = quiet
        super().__init__(address, Handler)

    def handle_error(self, _request: Any, client_address: Any) -> None:
        # Clients that hang up (our own drop faults, TLS tests) are routine here, not tracebacks.
        exc = sys.exc_info()[1]
        if not self.quiet:
            print(f"emulator: connection error from {client_address[0]}: {exc!r}", file=sys.stderr)


# --- command line ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streampixel-distribute emulator",
        description="Run a local stand-in of the Streampixel API (see docs/emulator.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between two write calls of one userId; 0 disables the limit (default 120)",
    )
    p.add_argument("--seed", metavar="FILE", help="JSON file with accounts, projects and uploads")
    p.add_argument("--no-demo", action="store_true", help="leave out the built-in demo accounts")
    p.add_argument(
        "--ready-file", metavar="FILE", help='write {"url", "port", "pid"} here once listening'
    )
    p.add_argument(
        "--processing-seconds",
        type=float,
        default=DEFAULT_PROCESSING_SECONDS,
        help="how long a new upload stays processing; pipeline webhooks are spread over it "
        "(default 5)",
    )
    p.add_argument(
        "--retry-after-header", action="store_true", help="send Retry-After with every 429"
    )
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def _banner(url: str, control: str, config: Config, demo: bool) -> str:
    lines = [
        f"Streampixel emulator listening on {url}",
        f"  rate limit: 1 write call per {config.interval:g} s per userId; "
        f"new builds process for {config.processing_seconds:g} s",
        f"  control endpoints: {control}/_emulator/requests, /_emulator/faults, ... "
        "(see docs/emulator.md)",
    ]
    if demo:
        lines += [
            "Demo account (fake values, safe to copy):",
            f"  userId:                {DEMO.user_id}",
            f"  apiKey:                {DEMO.api_key}",
            f"  projectId:             {DEMO.project_id}  (region {DEMO.region})",
            f"  uploadId (ready):      {DEMO.upload_id}",
            f"  uploadId (processing): {DEMO.processing_upload_id}",
            "Try:",
            f"  STREAMPIXEL_API_KEY={DEMO.api_key} streampixel-distribute --api-url {url} "
            f"--user-id {DEMO.user_id} --project-id {DEMO.project_id} "
            f"--upload-id {DEMO.upload_id}",
        ]
    lines.append("Stop with Ctrl-C.")
    return "\n".join(lines)


def _write_ready_file(path: str, info: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, target)  # atomic: a poller never reads half a file


class _StartError(Exception):
    """A startup problem the user can fix; printed as one line, exit code 2."""


def _emulator_from_args(args: argparse.Namespace) -> Emulator:
    if args.interval < 0 or args.processing_seconds < 0:
        raise _StartError("--interval and --processing-seconds must be >= 0")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise _StartError("--tls-cert and --tls-key go together")
    seed: list[dict[str, Any]] = []
    include_demo = not args.no_demo
    if args.seed:
        try:
            seed, seed_demo = load_seed(args.seed)
        except SeedError as exc:
            raise _StartError(str(exc)) from None
        include_demo = include_demo and seed_demo
    config = Config(args.interval, args.processing_seconds, args.retry_after_header)
    log = None if args.quiet else sys.stderr
    return Emulator(config, seed, include_demo=include_demo, log=log)


def _server_from_args(args: argparse.Namespace, emulator: Emulator) -> tuple[EmulatorServer, str]:
    """Bind (and wrap in TLS if asked); returns the server and its root URL."""
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        server = EmulatorServer((args.host, args.port), emulator, quiet=args.quiet, family=family)
    except OSError as exc:
        raise _StartError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. "
            "Pick another --port (0 picks a free one)."
        ) from None
    scheme = "http"
    if args.tls_cert:
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            server.server_close()
            raise _StartError(f"cannot load the TLS certificate or key: {exc}") from None
        # The handshake happens in the handler thread, so a bad client cannot stall accept().
        server.socket = ctx.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        scheme = "https"
    host = args.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only to print a usable URL
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return server, f"{scheme}://{host}:{server.server_address[1]}"


def main(argv: list[str] | None = None) -> int:
    """`streampixel-distribute emulator [options]`: serve until SIGTERM/SIGINT; returns 0, or 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else 2
    try:
        emulator = _emulator_from_args(args)
        server, root = _server_from_args(args, emulator)
    except _StartError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    url = root + API_BASE
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (embedded use): the caller stops us
            break
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    try:
        if args.ready_file:
            info = {"url": url, "port": server.server_address[1], "pid": os.getpid()}
            _write_ready_file(args.ready_file, info)
        if not args.quiet:
            banner = _banner(url, root, emulator.config, emulator.include_demo)
            print(banner, file=sys.stderr, flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        emulator.reset()  # wakes and ends pending pipelines
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)
    if not args.quiet:
        print("emulator: stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
