"""Real git servers for the git ledger tests: a bare repository over `file://`, and git's own
smart-HTTP backend (`git http-backend`) behind a small stdlib HTTP server with Basic auth.

The HTTP server runs in its own process (so the storm tests measure git, not this test process's
GIL) and is started from this same file: `python git_server.py --root DIR`. Its password comes in
through the environment, never argv. `--refuse-push` answers 403 to receive-pack, like GitHub for
a token without `contents: write`. `--log FILE` appends every request it receives (method, path,
headers, body) as a JSON line, so tests can see exactly what reached the server; `--tls-cert` /
`--tls-key` serve https; `--moved OLD=NEW` answers 301 for a renamed repository, as GitHub does.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import os
import secrets
import ssl
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

try:  # absent when this file runs as the server process (`python git_server.py`)
    from support.ledger_contract import LedgerBackend, LedgerTarget, register
except ImportError:  # pragma: no cover
    register = None  # type: ignore[assignment]

PASSWORD_ENV = "GIT_TEST_SERVER_PASSWORD"
REPO_NAME = "ledger.git"


def git_env() -> dict[str, str]:
    """An environment where no user or system git config can change what the servers do."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        LC_ALL="C",
        GIT_TERMINAL_PROMPT="0",
    )
    return env


def init_bare(path: Path, *, receive_pack: bool = True) -> Path:
    """A bare repository ready to be served (and pushed to over HTTP)."""
    subprocess.run(
        ["git", "init", "--quiet", "--bare", str(path)], check=True, env=git_env()
    )
    if receive_pack:
        subprocess.run(
            ["git", "-C", str(path), "config", "http.receivepack", "true"],
            check=True,
            env=git_env(),
        )
    return path


# ---------------------------------------------------------------------------------------------
# The server (runs in a child process).


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("Transfer-Encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()  # CRLF after each chunk
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""


def make_handler(
    root: Path, username: str, password: str, refuse_push: bool,
    log: Path | None = None, moved: dict[str, str] | None = None,
) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
    log_lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real git hosts do
        disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: 50-process storms would flood the test output

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _reply(self, status: int, text: str, extra: dict[str, str] | None = None) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _logged_or_moved(self, body: bytes, path: str) -> bool:
            """Log the request; answer it with a redirect (True) if its repository moved."""
            if log is not None:
                record = {"method": self.command, "path": self.path,
                          "headers": dict(self.headers.items()),
                          "body": base64.b64encode(body).decode()}
                with log_lock, log.open("a") as out:
                    out.write(json.dumps(record) + "\n")
            for old, new in (moved or {}).items():
                if path.startswith(f"/{old}/"):
                    self._reply(301, "Moved\n", {"Location": f"/{new}/{self.path[len(old) + 2:]}"})
                    return True
            return False

        def _serve(self) -> None:
            body = _read_body(self)
            parts = urllib.parse.urlsplit(self.path)
            if self._logged_or_moved(body, parts.path):
                return
            if username:
                given = self.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), expected.encode()):
                    self._reply(401, "Unauthorized\n", {"WWW-Authenticate": 'Basic realm="git"'})
                    return
            is_push = parts.path.endswith("/git-receive-pack") or (
                "service=git-receive-pack" in parts.query
            )
            if refuse_push and is_push:
                self._reply(403, "Write access to repository not granted.\n")
                return
            env = git_env()
            env.update(
                GIT_PROJECT_ROOT=str(root),
                GIT_HTTP_EXPORT_ALL="1",
                REQUEST_METHOD=self.command,
                PATH_INFO=urllib.parse.unquote(parts.path),
                QUERY_STRING=parts.query,
                CONTENT_TYPE=self.headers.get("Content-Type", ""),
                CONTENT_LENGTH=str(len(body)),
                REMOTE_USER=username or "anonymous",
                REMOTE_ADDR=self.client_address[0],
            )
            if self.headers.get("Content-Encoding"):
                env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
            if self.headers.get("Git-Protocol"):
                env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
            done = subprocess.run(
                ["git", "http-backend"],
                input=body,
                capture_output=True,
                env=env,
                timeout=120,
                check=False,
            )
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            if not _:
                head, _, payload = done.stdout.partition(b"\n\n")
            status, headers = 200, []
            for line in head.decode("latin-1").splitlines():
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            if done.returncode != 0 and not head:
                self._reply(500, "http-backend failed\n")
                return
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="git smart-HTTP test server (127.0.0.1 only)")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--username", default="")
    parser.add_argument("--refuse-push", action="store_true")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--moved", action="append", default=[], help="OLD=NEW repository path")
    args = parser.parse_args(argv)
    password = os.environ.get(PASSWORD_ENV, "")
    moved = dict(item.split("=", 1) for item in args.moved)
    handler = make_handler(args.root, args.username, password, args.refuse_push, args.log, moved)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.request_queue_size = 128  # storms open many connections at once
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


# ---------------------------------------------------------------------------------------------
# Fixtures (run in the pytest process).


@dataclass
class GitHTTPServer:
    """A running smart-HTTP server; `spec()` gives a ledger spec for one of its repositories."""

    root: Path
    port: int
    username: str
    password: str
    refuse_push: bool
    process: subprocess.Popen[str] = field(repr=False)
    log: Path | None = None
    tls: bool = False

    @property
    def base_url(self) -> str:
        # The test certificate names localhost (and 127.0.0.1); a name lets proxies be tested.
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, object]]:
        """Every request the server received (needs `log=True`), oldest first."""
        assert self.log is not None, "start the server with log=True"
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def repo_url(self, name: str = REPO_NAME) -> str:
        return f"{self.base_url}/{name}"

    def repo_path(self, name: str = REPO_NAME) -> Path:
        return self.root / name

    def spec(
        self,
        name: str = REPO_NAME,
        *,
        username: str | None = None,
        password: str | None = None,
        query: str = "",
    ) -> str:
        user = self.username if username is None else username
        secret = self.password if password is None else password
        userinfo = ""
        if user or secret:
            userinfo = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(secret, safe='')}@"
        suffix = f"?{query}" if query else ""
        scheme, _, host = self.base_url.partition("://")
        return f"git+{scheme}://{userinfo}{host}/{name}{suffix}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_git_http_server(
    root: Path,
    *,
    username: str = "ledger-user",
    password: str | None = None,
    refuse_push: bool = False,
    repos: tuple[str, ...] = (REPO_NAME,),
    log: bool = False,
    tls: tuple[Path, Path] | None = None,
    moved: dict[str, str] | None = None,
) -> GitHTTPServer:
    root.mkdir(parents=True, exist_ok=True)
    for name in repos:
        if not (root / name).exists():
            init_bare(root / name)
    # A distinctive value so tests can prove it never leaks into any text.
    password = password if password is not None else "pw-" + secrets.token_hex(12)
    argv = [sys.executable, __file__, "--root", str(root)]
    if username:
        argv += ["--username", username]
    if refuse_push:
        argv.append("--refuse-push")
    log_path = root / "requests.jsonl" if log else None
    if log_path is not None:
        argv += ["--log", str(log_path)]
    if tls is not None:
        argv += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    for old, new in (moved or {}).items():
        argv += ["--moved", f"{old}={new}"]
    env = dict(os.environ, **{PASSWORD_ENV: password})
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"git test server did not start: {line!r}")
    return GitHTTPServer(root, int(line.split()[1]), username, password, refuse_push, process,
                         log_path, tls is not None)


@pytest.fixture
def bare_git_repo(tmp_path: Path) -> Path:
    """An empty bare repository; use it as `git+file://<path>`."""
    return init_bare(tmp_path / REPO_NAME)


@pytest.fixture
def git_file_spec(bare_git_repo: Path) -> str:
    return f"git+file://{bare_git_repo}"


@pytest.fixture
def git_http_server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., GitHTTPServer]]:
    """Start servers with custom options (`refuse_push=True`, other credentials)."""
    started: list[GitHTTPServer] = []

    def start(**options: object) -> GitHTTPServer:
        server = start_git_http_server(tmp_path_factory.mktemp("git-http"), **options)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def git_http_server(git_http_server_factory: Callable[..., GitHTTPServer]) -> GitHTTPServer:
    """A smart-HTTP server with Basic auth that accepts pushes to `ledger.git`."""
    return git_http_server_factory()


@pytest.fixture
def git_http_server_readonly(
    git_http_server_factory: Callable[..., GitHTTPServer],
) -> GitHTTPServer:
    """Same, but every receive-pack request gets 403 (a token without write permission)."""
    return git_http_server_factory(refuse_push=True)


@pytest.fixture(scope="session")
def git_http_server_shared(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GitHTTPServer]:
    """One server for many tests (each test uses its own keys, so they stay independent)."""
    server = start_git_http_server(tmp_path_factory.mktemp("git-http-shared"))
    yield server
    server.stop()


# -- the ledger contract and race tests also run on the git backends ---------------------------


def _git_file_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    return LedgerTarget(spec=f"git+file://{init_bare(tmp_path / REPO_NAME)}")


def _git_http_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    server: GitHTTPServer = request.getfixturevalue("git_http_server_shared")
    return LedgerTarget(spec=server.spec(), secrets=(server.password,))


if register is not None and __name__ != "__main__":
    register(LedgerBackend("git-file", _git_file_target))
    register(LedgerBackend("git-http", _git_http_target))


if __name__ == "__main__":
    serve()
