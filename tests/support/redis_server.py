"""Real `redis-server` processes on loopback for the tests (pytest plugin).

Fixtures (session scope, one server each, data in a temp dir, nothing persisted):
  redis_server       no password
  redis_server_auth  `requirepass` set to `REDIS_PASSWORD`
  redis_server_tls   TLS only (self-signed certificate made with `openssl`; `.ca_file`)
  redis_down_url     a loopback URL where nothing listens (function scope)

Without the `redis-server` binary the Redis tests are skipped with a message saying how to install
it, except under CI (`CI` set, as every CI service does), where a missing server is a failure:
a CI run must not go green by silently testing less. Install: `apt-get install -y redis-server`.

Importing this module also registers the Redis backends with the ledger contract.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from support.ledger_contract import LedgerBackend, LedgerTarget, register
from support.processes import stop_process
from support.tools import require_binary

#: Distinctive, so a test can assert it never shows up in any text.
REDIS_PASSWORD = "rds-Pw-7c1f0e9a-SECRET"
_START_TIMEOUT = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    port: int
    password: str | None
    directory: Path
    process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"
    ca_file: Path | None = None  # set for a TLS server

    def url(self, db: int = 0, *, password: str | None = None) -> str:
        """A ledger URL; for a TLS server `rediss://` trusting the test CA."""
        password = self.password if password is None else password
        auth = f":{password}@" if password else ""
        if self.ca_file is None:
            return f"redis://{auth}{self.host}:{self.port}/{db}"
        return f"rediss://{auth}{self.host}:{self.port}/{db}?ssl_ca_certs={self.ca_file}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=db, password=self.password,
                           socket_timeout=5, ssl=self.ca_file is not None,
                           ssl_ca_certs=str(self.ca_file) if self.ca_file else None)

    def stop(self) -> None:
        stop_process(self.process)


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate = CA file, key)."""
    openssl = require_binary("openssl", "openssl")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def _answers(port: int, tls: bool) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            sock = raw
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                sock = context.wrap_socket(raw)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def start_redis(directory: Path, *, password: str | None = None,
                tls: bool = False) -> RedisServer:
    """Start redis-server on a free loopback port; retry if another process took the port."""
    binary = require_binary("redis-server", "redis-server")
    directory.mkdir(parents=True, exist_ok=True)
    cert = key = None
    if tls:
        cert, key = make_certificate(directory)
    last_log = ""
    for _attempt in range(3):
        port = free_port()
        lines = [
            "bind 127.0.0.1", f'dir "{directory}"', 'save ""',
            "appendonly no", "daemonize no", f'logfile "{directory / "redis.log"}"',
        ]
        if cert and key:
            lines += ["port 0", f"tls-port {port}", f'tls-cert-file "{cert}"',
                      f'tls-key-file "{key}"', f'tls-ca-cert-file "{cert}"',
                      "tls-auth-clients no"]
        else:
            lines.append(f"port {port}")
        if password:
            # In the config file, not on the command line, where `ps` would show it.
            lines.append(f"requirepass {password}")
        config = directory / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, password, directory, process, ca_file=cert)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port, tls):
                return server
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


@pytest.fixture(scope="session")
def redis_server_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis-tls"), tls=True)
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


def _redis_tls_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    server: RedisServer = request.getfixturevalue("redis_server_tls")
    return LedgerTarget(spec=server.url())


# Slots come from the server's clock, converted at the midpoint of the round trip: allow for the
# round trip (milliseconds on loopback; a generous bound for a loaded 2-core CI machine).
register(LedgerBackend("redis", _redis_target, clock_tolerance=0.5))
register(LedgerBackend("redis-auth", _redis_auth_target, clock_tolerance=0.5, race=False))
register(LedgerBackend("redis-tls", _redis_tls_target, clock_tolerance=0.5, race=False))
