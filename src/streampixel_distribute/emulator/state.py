"""The emulator's state: accounts, projects, builds, rate-limit windows, logs, configuration.

All of it sits behind one lock. The HTTP handler only parses and writes bytes; `rules` holds what
each endpoint checks and changes.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final, TextIO

from .faults import Fault, Reply
from .messages import WRITE_ENDPOINTS, rate_limit_message
from .safety import Scrubber
from .seed import PUBLIC_KEYS, SeedError, as_obj, demo_seed, no_unknown, parse_accounts
from .webhooks import Step, Webhooks

DEFAULT_INTERVAL: Final = 120.0
DEFAULT_PROCESSING_SECONDS: Final = 5.0
DEFAULT_REGION: Final = "asia-pacific"  # Streampixel's documented default
UPLOAD_STATUSES: Final = (200, 201)

# An upload's state in /_emulator/state. distribute-file accepts AWAITING and READY builds.
PROCESSING: Final = "processing"
AWAITING: Final = "awaiting distribution"
READY: Final = "ready"
REJECTED: Final = "rejected"
DISTRIBUTABLE: Final = (AWAITING, READY)


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
            return PROCESSING
        if self.objection:
            return REJECTED
        if not self.auto_release and not self.distributions:
            return AWAITING  # held at approval: only distribute-file makes it live
        return READY


@dataclass
class Project:
    project_id: str
    user_id: str
    enabled: bool = True
    region: str = DEFAULT_REGION
    webhook_url: str | None = None
    reject_objection: str | None = None
    live_upload_id: str | None = None
    uploads: dict[str, Upload] = field(default_factory=dict)


@dataclass
class Config:
    """What `/_emulator/config` reads and changes at run time (a reset restores the start)."""

    interval: float = DEFAULT_INTERVAL
    processing_seconds: float = DEFAULT_PROCESSING_SECONDS
    retry_after_header: bool = False
    # Streampixel limits both write endpoints but does not say whether they share one window.
    separate_windows: bool = False
    # Streampixel documents both 200 and 201 as the answer to a new build.
    upload_status: int = 200
    # Streampixel documents both orders for a held build (autoRelease false): build.approved,
    # then distribute-file; or distribute-file, then build.approved ("live").
    approve_after_distribute: bool = False

    def apply(self, raw: Any) -> None:
        """Change the keys given; raises `SeedError` (nothing changed) on a bad value."""
        obj = as_obj(raw, "config")
        no_unknown(obj, set(self.as_dict()), "config")
        changes = {k: _config_value(k, v) for k, v in obj.items() if v is not None}
        for key, value in changes.items():
            setattr(self, key, value)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _config_value(key: str, value: Any) -> Any:
    if key in ("interval", "processing_seconds"):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not 0 <= value < math.inf:
            raise SeedError(f"config.{key} must be a number of seconds >= 0")
        return float(value)
    if key == "upload_status":
        if isinstance(value, bool) or not isinstance(value, int) or value not in UPLOAD_STATUSES:
            raise SeedError("config.upload_status must be 200 or 201")
        return value
    if not isinstance(value, bool):
        raise SeedError(f"config.{key} must be true or false")
    return value


def _upload_from(spec: dict[str, Any], project_id: str, now: float) -> Upload:
    ready_in = spec.get("readyIn")
    if ready_in is not None:
        done_at: float | None = now + float(ready_in)
    elif spec.get("ready", True) or spec.get("objection"):
        done_at = now
    else:
        done_at = None
    return Upload(
        upload_id=spec["uploadId"],
        project_id=project_id,
        file_url=spec.get("fileUrl"),
        done_at=done_at,
        objection=spec.get("objection"),
        auto_release=spec.get("autoRelease", True),
    )


class Emulator:
    """All state, behind one lock (`cond`, reentrant). Time is `now()`: the monotonic clock plus
    an offset that tests move forward to skip a rate-limit window without sleeping."""

    def __init__(
        self,
        config: Config,
        seed: list[dict[str, Any]] | None = None,
        *,
        include_demo: bool = True,
        log: TextIO | None = None,
    ) -> None:
        self._initial_config = copy.copy(config)
        self._seed = seed or []
        self.include_demo = include_demo
        self.cond = threading.Condition(threading.RLock())
        self._log = log
        self.scrubber = Scrubber()
        self.hooks = Webhooks(self)
        self._generation = 0
        self.reset()

    # - time
    def now(self) -> float:
        return time.monotonic() + self._offset

    def epoch(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        with self.cond:
            self._offset += seconds
            self.cond.notify_all()  # pending pipeline events may be due now
            return self._offset

    @property
    def generation(self) -> int:
        """Changes on every reset; a request that outlived a reset must not touch the new state."""
        with self.cond:
            return self._generation

    def reset(self) -> None:
        with self.cond:
            self._generation += 1
            self._offset = 0.0
            self.config = copy.copy(self._initial_config)
            self.accounts: dict[str, str] = {}  # userId -> apiKey
            self.projects: dict[str, Project] = {}
            # (userId, endpoint) -> when the window that call opened ends
            self.next_free: dict[tuple[str, str], float] = {}
            self.requests: list[dict[str, Any]] = []
            self.faults: list[Fault] = []
            self.hooks.reset_locked()
            self._add_accounts_locked((demo_seed() if self.include_demo else []) + self._seed)

    # - accounts, faults, config: the control endpoints' side
    def add_accounts(self, data: Any) -> int:
        accounts, _ = parse_accounts(data, where="accounts")
        with self.cond:
            self._add_accounts_locked(accounts)
        return len(accounts)

    def _add_accounts_locked(self, accounts: list[dict[str, Any]]) -> None:
        now = self.now()
        for account in accounts:
            user_id = account["userId"]
            self.accounts[user_id] = account["apiKey"]
            if account["apiKey"] not in PUBLIC_KEYS:
                self.scrubber.add(account["apiKey"])
            for spec in account.get("projects") or []:
                project = Project(
                    project_id=spec["projectId"],
                    user_id=user_id,
                    enabled=spec.get("enabled", True),
                    region=spec.get("region") or DEFAULT_REGION,
                    webhook_url=spec.get("webhookUrl"),
                    reject_objection=spec.get("rejectObjection"),
                )
                old = self.projects.get(project.project_id)
                if old is not None:
                    project.uploads = old.uploads
                self.projects[project.project_id] = project
                for up in spec.get("uploads") or []:
                    project.uploads[up["uploadId"]] = _upload_from(up, project.project_id, now)

    def set_webhook(self, project_id: str, url: str | None) -> bool:
        with self.cond:
            project = self.projects.get(project_id)
            if project is None:
                return False
            project.webhook_url = url or None
            return True

    def add_faults(self, raw: Any) -> int:
        faults = [Fault.parse(item) for item in (raw if isinstance(raw, list) else [raw])]
        with self.cond:
            self.faults.extend(faults)
        return len(faults)

    def pending_faults(self) -> list[dict[str, Any]]:
        with self.cond:
            return [f.describe() | {"times": f.times} for f in self.faults]

    def take_fault(self, endpoint: str | None, path: str, method: str) -> Fault | None:
        with self.cond:
            for fault in self.faults:
                if fault.matches(endpoint, path, method):
                    fault.times -= 1
                    if fault.times <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def configure(self, raw: Any) -> dict[str, Any]:
        with self.cond:
            trial = copy.copy(self.config)
            trial.apply(raw)
            self.config = trial
            return self.config.as_dict()

    # - recording: never the apiKey, only whether it matched
    def record(self, rec: dict[str, Any]) -> None:
        with self.cond:
            self.requests.append(rec)

    def update(self, rec: dict[str, Any], **fields: Any) -> None:
        with self.cond:
            rec.update(fields)

    def snapshot_requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [dict(r) for r in self.requests if endpoint in (None, r.get("endpoint"))]

    def snapshot_webhooks(self) -> list[dict[str, Any]]:
        with self.cond:
            return [dict(w) for w in self.hooks.deliveries]

    def state(self) -> dict[str, Any]:
        with self.cond:
            now = self.now()
            out = []
            for user_id in self.accounts:
                projects = [
                    self._project_state(p, now)
                    for p in self.projects.values()
                    if p.user_id == user_id
                ]
                waits = {e: self._wait_locked(user_id, e, now) for e in WRITE_ENDPOINTS}
                out.append({
                    "userId": user_id,
                    "rateLimitWait": max(waits.values()),
                    "rateLimitWaits": waits,
                    "projects": projects,
                })  # fmt: skip
            return {"time": self.epoch(), "config": self.config.as_dict(), "accounts": out}

    @staticmethod
    def _project_state(p: Project, now: float) -> dict[str, Any]:
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
        return {
            "projectId": p.project_id,
            "enabled": p.enabled,
            "region": p.region,
            "webhookUrl": p.webhook_url,
            "rejectObjection": p.reject_objection,
            "liveUploadId": p.live_upload_id,
            "uploads": uploads,
        }

    # - the rate limit
    def take_slot_locked(self, user_id: str, endpoint: str) -> None:
        """One write call per `interval` per user, in one window shared by upload-file and
        distribute-file, or one per endpoint (`separate_windows`). A call inside the window gets
        429, which does not move the window. Caller holds the lock."""
        now = self.now()
        remaining = self._wait_locked(user_id, endpoint, now)
        if remaining > 0:
            headers = {}
            if self.config.retry_after_header:
                headers["Retry-After"] = str(math.ceil(remaining))
            raise Reply(429, rate_limit_message(remaining), headers)
        if self.config.interval > 0:
            self.next_free[(user_id, endpoint)] = now + self.config.interval

    def _wait_locked(self, user_id: str, endpoint: str, now: float) -> float:
        """Seconds until `endpoint` may be called again by this user under the current mode."""
        windows = (endpoint,) if self.config.separate_windows else WRITE_ENDPOINTS
        return max(0.0, *(self.next_free.get((user_id, e), now) - now for e in windows))

    # - pipeline hooks (webhooks.Host)
    def fire_locked(self, upload: Upload, step: Step) -> str | None:
        project = self.projects.get(upload.project_id)
        if project is None:
            return None
        if step.go_live:
            project.live_upload_id = upload.upload_id
        return project.webhook_url

    def log(self, text: str) -> None:
        if self._log is not None:
            print(f"emulator: {self.scrubber.scrub(text)}", file=self._log, flush=True)
