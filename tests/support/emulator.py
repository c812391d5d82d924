"""The Streampixel emulator as a real subprocess, plus a tiny webhook receiver.

Fixtures:
- `emulator`: one emulator process per session, `reset()` before each test (fast, isolated).
- `emulator_factory(interval=..., **options)`: a separate process with other command-line options
  (each keyword becomes `--kebab-case value`; `True` becomes a bare flag); stopped at teardown.
- `webhook_receiver`: an HTTP server in this process that records the JSON POSTs it receives.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from streampixel_distribute.emulator import DEMO, DemoAccount
from support import product
from support.httpserver import QuietHandler, serving
from support.processes import stop_process

START_TIMEOUT = 15.0


class EmulatorError(RuntimeError):
    pass


class Emulator:
    """A running emulator process and helpers for its `/_emulator/` control endpoints."""

    demo: DemoAccount = DEMO

    def __init__(self, process: subprocess.Popen[bytes], info: dict[str, Any], log: Path) -> None:
        self.process = process
        self.url: str = info["url"]  # the API base, `.../pixelStripeApi`
        self.port: int = info["port"]
        self.root = self.url.rsplit("/pixelStripeApi", 1)[0]
        self.log = log

    # - control helpers
    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.root}/_emulator/{path.lstrip('/')}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"{method} /_emulator/{path}: {exc.code} {exc.read()!r}") from None

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        return self.control("GET", f"requests?endpoint={endpoint}" if endpoint else "requests")  # type: ignore[no-any-return]

    def reset(self) -> None:
        self.control("POST", "reset")

    def fault(self, **fault: Any) -> None:
        """Queue one fault, e.g. `fault(path="distribute-file", status=503, times=2)`."""
        self.control("POST", "faults", fault)

    def add_account(
        self, user_id: str, api_key: str, projects: list[dict[str, Any]] | None = None
    ) -> None:
        account = {"userId": user_id, "apiKey": api_key, "projects": projects or []}
        self.control("POST", "accounts", {"accounts": [account]})

    def set_webhook(self, project_id: str, url: str | None) -> None:
        self.control("PUT", f"projects/{project_id}/webhook", {"url": url})

    def webhooks(self) -> list[dict[str, Any]]:
        return self.control("GET", "webhooks")  # type: ignore[no-any-return]

    def configure(self, **config: Any) -> dict[str, Any]:
        """interval, processing_seconds, retry_after_header, separate_windows, upload_status,
        approve_after_distribute; `reset()` restores the start values."""
        return self.control("POST", "config", config)  # type: ignore[no-any-return]

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward: rate-limit windows and processing end sooner."""
        self.control("POST", "clock", {"advance": seconds})

    def state(self) -> dict[str, Any]:
        return self.control("GET", "state")  # type: ignore[no-any-return]

    def wait_webhooks(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Poll until `count` deliveries were made (pipeline events are asynchronous)."""
        deadline = time.monotonic() + timeout
        while True:
            hooks = self.webhooks()
            if len(hooks) >= count or time.monotonic() > deadline:
                return hooks
            time.sleep(0.02)

    # - process
    def stop(self, sig: int = signal.SIGTERM) -> int:
        return stop_process(self.process, sig)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def option_args(options: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            args.append(flag)
        elif value is not None and value is not False:
            args += [flag, str(value)]
    return args


def start_emulator(workdir: Path, **options: Any) -> Emulator:
    """Start `python -m streampixel_distribute.emulator --port 0` and wait for its ready file."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready.json"
    log = workdir / "emulator.log"
    env = product.env()
    cmd = [sys.executable, "-m", "streampixel_distribute.emulator", "--port", "0"]
    cmd += ["--ready-file", str(ready), *option_args(options)]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            text = log.read_text(errors="replace")
            raise EmulatorError(f"emulator did not start (exit {process.returncode}):\n{text}")
        time.sleep(0.02)
    return Emulator(process, json.loads(ready.read_text()), log)


@pytest.fixture(scope="session")
def _emulator_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    emu = start_emulator(tmp_path_factory.mktemp("emulator"))
    yield emu
    emu.stop()


@pytest.fixture
def emulator(_emulator_session: Emulator) -> Emulator:
    """The shared emulator, reset: demo accounts only, interval 120 s, no faults, empty logs."""
    if _emulator_session.process.poll() is not None:
        raise EmulatorError(f"the session emulator died:\n{_emulator_session.output()}")
    _emulator_session.reset()
    return _emulator_session


@pytest.fixture
def emulator_factory(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def start(interval: float | None = None, **options: Any) -> Emulator:
        emu = start_emulator(tmp_path / f"emulator-{len(started)}", interval=interval, **options)
        started.append(emu)
        return emu

    yield start
    for emu in started:
        emu.stop()


# --- webhook receiver ------------------------------------------------------------------------


@dataclass
class WebhookReceiver:
    """Records every POST; answers `status` (settable) after `delay` seconds."""

    status: int = 200
    delay: float = 0.0
    received: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[str]:
        with self._lock:
            return [
                str(r["body"].get("event")) for r in self.received if isinstance(r["body"], dict)
            ]

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r["body"] for r in self.received]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.bodies()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.bodies()


def _receiver_handler(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.read_body()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            with receiver._lock:
                receiver.received.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
            if receiver.delay:
                time.sleep(receiver.delay)
            self.reply(receiver.status, b"ok")

    return Handler


@pytest.fixture
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    with serving(_receiver_handler(receiver)) as base:
        receiver.url = f"{base}/hooks/secret-token"
        yield receiver
