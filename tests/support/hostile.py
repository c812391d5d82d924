"""Loopback servers the emulator cannot play, and a way to run the product as a live process.

- `RecordingServer`: answers 200 to everything and records what reached it. It stands in for the
  host a hostile redirect points at: a test asserts it received *nothing*.
- `EndlessBodyServer`: answers with a body that never ends (chunked, as fast as the client reads),
  and counts the bytes the client took before hanging up. A client that does not cap its read
  would never finish: no read timeout fires while bytes keep flowing.
- `spawn_action` / `finish_action`: `support.runner.run_action` split in two, for tests that must
  signal the process while it runs, or run it under a prefix such as `unshare --net`.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

from support import product
from support.httpserver import QuietHandler
from support.runner import ActionRun, action_env, parse_output_file


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RecordingServer:
    host: str
    port: int = 0
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}/pixelStripeApi/projects/distribute-file"

    def snapshot(self) -> tuple[int, list[Received]]:
        with self._lock:
            return self.connections, list(self.received)


def _recording_handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        def setup(self) -> None:
            with server._lock:
                server.connections += 1
            super().setup()

        def _record(self) -> None:
            body = self.read_body()
            with server._lock:
                server.received.append(Received(self.command, self.path, dict(self.headers), body))
            self.reply(200, json.dumps({"message": "Distribution triggered"}).encode(),
                       "application/json")

        do_GET = do_POST = do_PUT = _record

    return Handler


@dataclass
class EndlessBodyServer:
    host: str = "127.0.0.1"
    port: int = 0
    status: int = 500
    sent: list[int] = field(default_factory=list)  # bytes written, per connection
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/pixelStripeApi"

    def total_sent(self) -> list[int]:
        with self._lock:
            return list(self.sent)


def _endless_handler(server: EndlessBodyServer) -> type[BaseHTTPRequestHandler]:
    chunk = (b"<p>" + b"overloaded " * 1000 + b"</p>")
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    ceiling = 64 * 1024 * 1024  # a safety stop so a broken client cannot keep the test alive

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(server.status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            written = 0
            try:
                while written < ceiling:
                    self.wfile.write(framed)
                    written += len(chunk)
            except OSError:
                pass
            finally:
                with server._lock:
                    server.sent.append(written)
            self.close_connection = True

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up mid-response is the point of these servers


def _serve(host: str, handler: type[BaseHTTPRequestHandler],
           tls: ssl.SSLContext | None = None) -> tuple[_Server, int]:
    httpd = _Server((host, 0), handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return httpd, int(httpd.server_address[1])


def recording_server(host: str = "127.0.0.1", *,
                     tls: ssl.SSLContext | None = None) -> Iterator[RecordingServer]:
    """Generator for a fixture: `yield from recording_server("127.0.0.2")`; over https with
    `tls` (a server context holding the certificate)."""
    server = RecordingServer(host)
    httpd, server.port = _serve(host, _recording_handler(server), tls)
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


def endless_body_server() -> Iterator[EndlessBodyServer]:
    server = EndlessBodyServer()
    httpd, server.port = _serve(server.host, _endless_handler(server))
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port() -> int:
    """A loopback port where nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the product as a live process ------------------------------------------------------------


@dataclass
class LiveAction:
    tmp: Path
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)  # the stream the logs go to, as it arrives
    other: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    readers: list[threading.Thread] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        """Block until a log line containing `text` arrives; return it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._pending()):
                    raise AssertionError(f"no log line with {text!r} within {timeout} s:\n"
                                         + "\n".join(self.lines + self.other))
                self._cond.wait(min(remaining, 0.1))

    def _pending(self) -> bool:
        return any(t.is_alive() for t in self.readers)


def _pump(stream: IO[str], sink: list[str], cond: threading.Condition) -> None:
    for line in stream:
        with cond:
            sink.append(line.rstrip("\n"))
            cond.notify_all()


def spawn_action(
    tmp: Path,
    inputs: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    args: Sequence[str] = (),
    github: bool = True,
    prefix: Sequence[str] = (),
) -> LiveAction:
    """Start the product like `run_action` does, without waiting for it."""
    full, _, _ = action_env(tmp, inputs, env=env, github=github)
    process = subprocess.Popen(
        [*prefix, *product.command(*args)], env=full, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    live = LiveAction(tmp, process)
    assert process.stdout is not None and process.stderr is not None
    logs, rest = (process.stdout, process.stderr) if github else (process.stderr, process.stdout)
    live.readers = [
        threading.Thread(target=_pump, args=(logs, live.lines, live._cond), daemon=True),
        threading.Thread(target=_pump, args=(rest, live.other, live._cond), daemon=True),
    ]
    for reader in live.readers:
        reader.start()
    return live


def finish_action(live: LiveAction, *, timeout: float, github: bool = True) -> ActionRun:
    """Wait for the process (killing it if it outlives `timeout`) and collect what it wrote."""
    try:
        live.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        live.process.kill()
        live.process.wait()
        raise AssertionError(f"the action did not end within {timeout} s:\n"
                             + "\n".join(live.lines + live.other)) from None
    for reader in live.readers:
        reader.join(timeout=5)
    out, err = "\n".join(live.lines), "\n".join(live.other)
    if not github:
        out, err = err, out
    tmp = live.tmp
    files = {p.name: p.read_text(errors="replace") for p in tmp.iterdir() if p.is_file()}
    return ActionRun(
        exit_code=live.process.returncode,
        stdout=out,
        stderr=err,
        outputs=parse_output_file((tmp / "github_output").read_text()),
        summary=(tmp / "step_summary").read_text(),
        files=files,
    )
