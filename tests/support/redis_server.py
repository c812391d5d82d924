"""Real `redis-server` processes on loopback for the tests (pytest plugin).

Fixtures (session scope, one server each, data in a temp dir, nothing persisted):
  redis_server       no password
  redis_server_auth  `requirepass` set to `REDIS_PASSWORD`
  redis_down_url     a loopback URL where nothing listens (function scope)

Without the `redis-server` binary the Redis tests are skipped with a message saying how to install
it, except under CI (`CI` set, as every CI service does), where a missing server is a failure:
a CI run must not go green by silently testing less. Install: `apt-get install -y redis-server`.

Importing this module also registers the Redis backends with the ledger contract.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from support.ledger_contract import LedgerBackend, LedgerTarget, register

#: Distinctive, so a test can assert it never shows up in any text.
REDIS_PASSWORD = "rds-Pw-7c1f0e9a-SECRET"
_START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed (apt-get install -y {package})"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so this is a failure, not a skip", pytrace=False)
        pytest.skip(message)
    return path


@dataclass
class RedisServer:
    port: int
    password: str | None
    directory: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    def url(self, db: int = 0, *, password: str | None = None, scheme: str = "redis") -> str:
        password = self.password if password is None else password
        auth = f":{password}@" if password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=db, password=self.password,
                           socket_timeout=5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_redis(directory: Path, *, password: str | None = None,
                extra: tuple[str, ...] = ()) -> RedisServer:
    """Start redis-server on a free loopback port; retry if another process took the port."""
    binary = require_binary("redis-server", "redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    last_log = ""
    for _attempt in range(3):
        port = free_port()
        lines = [
            f"port {port}", "bind 127.0.0.1", f'dir "{directory}"', 'save ""',
            "appendonly no", "daemonize no", f'logfile "{directory / "redis.log"}"',
        ]
        if password:
            # In the config file, not on the command line, where `ps` would show it.
            lines.append(f"requirepass {password}")
        config = directory / "redis.conf"
        config.write_text("\n".join([*lines, *extra]) + "\n")
        process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, password, directory, process)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    reply = sock.recv(64)
                if reply.startswith((b"+PONG", b"-NOAUTH")):
                    return server
            except OSError:
                pass
            time.sleep(0.05)
        server.stop()
        log = directory / "redis.log"
        last_log = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"redis-server did not start; log tail:\n{last_log}")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-open"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-auth"), password=REDIS_PASSWORD)
    yield server
    server.stop()


@pytest.fixture
def redis_down_url() -> str:
    """A Redis URL on loopback where nothing listens: connection refused at once."""
    return f"redis://:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"


def _redis_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    server: RedisServer = request.getfixturevalue("redis_server")
    return LedgerTarget(spec=server.url())


def _redis_auth_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    server: RedisServer = request.getfixturevalue("redis_server_auth")
    return LedgerTarget(spec=server.url(), secrets=(REDIS_PASSWORD,))


# Slots come from the server's clock, converted at the midpoint of the round trip: allow for the
# round trip (milliseconds on loopback; a generous bound for a loaded 2-core CI machine).
register(LedgerBackend("redis", _redis_target, clock_tolerance=0.5))
register(LedgerBackend("redis-auth", _redis_auth_target, clock_tolerance=0.5))
