"""The webhook listener as a real subprocess, and a local stand-in of GitHub's dispatch endpoint.

Fixtures:
- `listener_factory(actions=..., env=..., args=..., queue=...)`: start
  `streampixel-distribute listen --port 0` in a subprocess (stopped at teardown); returns a
  `ListenerProcess` with helpers to deliver webhooks, read /metrics, the JSON logs and the queue.
- `SlowClients`: a slowloris attack, bounded in connections and time (see the class).
- `private_mount(dir, options)`: a command prefix that runs a process in its own mount namespace
  with a tmpfs on `dir` (a tiny or read-only filesystem, for disk-full and read-only tests);
  `in_namespace(process, path)` is that path as the process sees it.
- `nginx_recipe(port, upstream)` / `start_nginx(...)`: the nginx block of docs/listener.md, as
  written there, served by a real nginx on loopback (plain HTTP: the TLS lines are left out).
- `github_standin`: an HTTP server in this process answering
  `POST /repos/{owner}/{repo}/dispatches` with 204 when the Bearer token matches `GITHUB_TOKEN`
  (401 otherwise), recording every request; `status` forces another answer.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from support import product
from support.httpserver import QuietHandler, serving
from support.processes import stop_process

START_TIMEOUT = 15.0

# Distinctive secrets: tests assert they appear in no log line.
WEBHOOK_TOKEN = "whk-LEAKCHECK-5d1e9b7c3a0f42e8"
GITHUB_TOKEN = "ghp_LEAKCHECKdispatch0123456789abcdef"
API_KEY = "sk-LISTENER-LEAKCHECK-7a3c9e1f"


def envelope(event: str, project_id: str, upload_id: str | None, **extra: Any) -> dict[str, Any]:
    statuses = {"build.approved": "Approved", "build.rejected": "Reject",
                "build.distributing": "Distribute", "webhook.test": "test"}
    body: dict[str, Any] = {
        "event": event, "projectId": project_id, "uploadId": upload_id,
        "fileUrl": "https://bucket.example/build.zip" if upload_id else None,
        "status": statuses.get(event, "pending"), "objection": None,
        "timestamp": "2026-04-21T11:30:00.000Z",
    }
    body.update(extra)
    return body


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class ListenerProcess:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path, queue: Path,
                 token: str) -> None:
        self.process = process
        self.port = port
        self.log_path = log
        self.queue = queue
        self.token = token
        self.root = f"http://127.0.0.1:{port}"
        self.webhook_url = f"{self.root}/webhook/{token}"

    # -- HTTP ----------------------------------------------------------------------------

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
            resp = conn.getresponse()
            return Reply(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def deliver(self, body: Any, *, token: str | None = None, raw: bytes | None = None) -> Reply:
        data = raw if raw is not None else json.dumps(body).encode()
        return self.request("POST", f"/webhook/{token or self.token}", data,
                            {"Content-Type": "application/json"})

    def healthy(self) -> bool:
        try:
            return self.request("GET", "/healthz").status == 200
        except OSError:
            return False

    def metrics(self) -> dict[str, float]:
        """Samples by `name{labels}` as printed."""
        text = self.request("GET", "/metrics").body.decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                samples[name] = float(value)
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """One sample, e.g. `metric("deliveries_total", event="build.approved", outcome="queued")`
        (labels in the order the listener prints them); 0 when absent."""
        label = ",".join(f'{k}="{v}"' for k, v in labels.items())
        key = f"streampixel_listener_{name}" + (f"{{{label}}}" if label else "")
        return self.metrics().get(key, 0.0)

    # -- what it wrote -------------------------------------------------------------------

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output().splitlines() if line.strip()]

    def wait_log(self, msg_part: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for record in self.logs():
                if msg_part in record.get("msg", "") and all(
                        record.get(k) == v for k, v in fields.items()):
                    return record
            return None
        found: dict[str, Any] = wait_until(find, timeout, f"log {msg_part!r} {fields}")
        return found

    def rows(self) -> list[dict[str, Any]]:
        """The queue table, read from the SQLite file like any other reader would."""
        if not self.queue.exists():
            return []
        db = sqlite3.connect(f"file:{self.queue}?mode=ro", uri=True, timeout=5)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM deliveries ORDER BY id")]
        finally:
            db.close()

    # -- process -------------------------------------------------------------------------

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        return stop_process(self.process, sig, timeout)

    def kill9(self) -> None:
        self.process.kill()  # SIGKILL: no handler runs, nothing is flushed or cleaned up
        self.process.wait()


def listener_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in product.env().items()
           if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))}
    env["NO_PROXY"] = "*"
    env["STREAMPIXEL_WEBHOOK_TOKEN"] = WEBHOOK_TOKEN
    env.update(base or {})
    return env


def start_listener(workdir: Path, *, env: Mapping[str, str] | None = None,
                   args: list[str] | None = None, actions: Any = None,
                   queue: Path | None = None, prefix: list[str] | None = None) -> ListenerProcess:
    """`streampixel-distribute listen --port 0` via the real CLI entry point (after `prefix`,
    e.g. `private_mount(...)`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / f"ready-{time.monotonic_ns()}.json"
    log = workdir / f"listener-{time.monotonic_ns()}.log"
    queue = queue or workdir / "queue.sqlite3"
    full_env = listener_env(env)
    if actions is not None:
        full_env["STREAMPIXEL_WEBHOOK_ACTIONS"] = json.dumps(actions)
    cmd = [*(prefix or []), *product.command("listen", "--port", "0", "--ready-file", str(ready),
                                             "--queue", str(queue), *(args or []))]
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                   cwd=workdir)
    deadline = time.monotonic() + START_TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise RuntimeError(f"listener did not start (exit {process.returncode}):\n"
                               f"{log.read_text(errors='replace')}")
        time.sleep(0.02)
    info = json.loads(ready.read_text())
    return ListenerProcess(process, int(info["port"]), log, queue,
                           full_env["STREAMPIXEL_WEBHOOK_TOKEN"])


@pytest.fixture
def listener_factory(tmp_path: Path) -> Iterator[Callable[..., ListenerProcess]]:
    started: list[ListenerProcess] = []

    def start(**kwargs: Any) -> ListenerProcess:
        proc = start_listener(tmp_path / "listener", **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- hostile clients and filesystems -------------------------------------------------------------


DOCS = Path(__file__).resolve().parents[2] / "docs" / "listener.md"


def nginx_recipe(port: int, upstream: int) -> str:
    """The documented nginx block, for loopback: listen on `port`, no TLS, upstream `upstream`."""
    text = DOCS.read_text(encoding="utf-8")
    block = text.split("```nginx\n", 1)[1].split("```", 1)[0]
    assert "listen 443 ssl;" in block and "127.0.0.1:8788" in block, "the recipe changed shape"
    lines = [line for line in block.splitlines() if "ssl_certificate" not in line]
    return "\n".join(lines).replace("listen 443 ssl;", f"listen 127.0.0.1:{port};").replace(
        "127.0.0.1:8788", f"127.0.0.1:{upstream}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(workdir: Path, server_config: str, *, worker_connections: int = 4096,
                nginx: str = "nginx") -> subprocess.Popen[bytes]:
    """A real nginx (master and one worker) with `server_config` in its http block; every file
    it writes stays in `workdir`. Returns once it answers on the port named in the config."""
    workdir.mkdir(parents=True, exist_ok=True)
    temp = {name: workdir / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
user root;
worker_processes 1;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
{server_config}
}}
""", encoding="utf-8")
    port = int(server_config.split("listen 127.0.0.1:", 1)[1].split(";", 1)[0])
    process = subprocess.Popen([nginx, "-p", str(workdir), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, err = process.communicate()
                raise RuntimeError(f"nginx did not start: {err.decode(errors='replace')}") \
                    from None
            time.sleep(0.05)
        else:
            return process


class SlowClients:
    """`count` connections that each send the start of a request, then one more header byte a
    second, and never finish it (slowloris). A connection the server closes is opened again, so
    the attack keeps `count` open as a real attacker would. The feeding thread stops by itself
    after `limit` seconds; `close()` ends it earlier."""

    def __init__(self, port: int, count: int, *, path: str = "/webhook/x",
                 limit: float = 120.0, source: str | None = None) -> None:
        self.port = port
        self.source = (source, 0) if source else None
        self.count = count
        self.head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: application/json\r\nX-Slow: ").encode()
        self.limit = limit
        self.reopened = 0
        self.sockets: list[socket.socket | None] = [None] * count
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, name="slow-clients", daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5,
                                            source_address=self.source)
            sock.sendall(self.head)
        except OSError:
            return None
        return sock

    def start(self) -> SlowClients:
        for i in range(self.count):
            self.sockets[i] = self._open()
        self._thread.start()
        return self

    def open_count(self) -> int:
        return sum(s is not None for s in self.sockets)

    def _feed(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self._stop.wait(1.0) and time.monotonic() < deadline:
            for i, sock in enumerate(self.sockets):
                if self._stop.is_set():
                    return
                if sock is None:
                    self.sockets[i] = self._open()
                    continue
                try:
                    sock.send(b"a")
                except OSError:  # the server closed it: open another
                    sock.close()
                    self.reopened += 1
                    self.sockets[i] = self._open()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            if sock is not None:
                sock.close()

    def __enter__(self) -> SlowClients:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def can_mount() -> bool:
    """Root with `unshare`: a private mount namespace (and tmpfs) for one process."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("unshare") is not None


def private_mount(directory: Path, options: str, *, setup: str = "") -> list[str]:
    """Prefix: mount a tmpfs with `options` on `directory` for the command alone, after running
    `setup` (shell, with `$0` = the directory) in that namespace."""
    script = f'mount -t tmpfs -o {options} tmpfs "$0" && {setup or ":"} && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script,
            str(directory)]


def fill_filesystem(filler: Path) -> int:
    """Write `filler` until its filesystem has no free block left; the bytes written."""
    written = 0
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            written += os.write(fd, b"\0" * 4096)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return written


def in_namespace(process: subprocess.Popen[bytes], path: Path) -> Path:
    """`path` as seen by `process` (inside its own mount namespace)."""
    return Path(f"/proc/{process.pid}/root") / path.relative_to(path.anchor)


# --- GitHub's repository_dispatch endpoint ---------------------------------------------------


@dataclass
class GitHubStandIn:
    token: str = GITHUB_TOKEN
    status: int | None = None  # force this answer instead of 204
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.requests)


def _github_handler(standin: GitHubStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def do_POST(self) -> None:
            raw = self.read_body()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = None
            auth_ok = self.headers.get("Authorization") == f"Bearer {standin.token}"
            with standin._lock:
                standin.requests.append({"path": self.path, "headers": dict(self.headers),
                                         "body": body, "auth_ok": auth_ok})
            parts = self.path.strip("/").split("/")
            if not auth_ok:
                self._answer(401, {"message": "Bad credentials"})
            elif standin.status is not None:
                self._answer(standin.status, {"message": f"forced {standin.status}"})
            elif len(parts) != 4 or parts[0] != "repos" or parts[3] != "dispatches":
                self._answer(404, {"message": "Not Found"})
            elif not isinstance(body, dict) or not body.get("event_type"):
                self._answer(422, {"message": "Invalid request"})
            else:
                self._answer(204, None)

        def _answer(self, status: int, payload: Any) -> None:
            self.reply(status, b"" if payload is None else json.dumps(payload).encode())

    return Handler


@pytest.fixture
def github_standin() -> Iterator[GitHubStandIn]:
    standin = GitHubStandIn()
    with serving(_github_handler(standin)) as base:
        standin.url = base
        yield standin
