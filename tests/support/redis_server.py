"""Real `redis-server` processes on loopback for the tests (pytest plugin).

Fixtures (session scope, one server each, data in a temp dir, nothing persisted):
  redis_server       no password
  redis_server_auth  `requirepass` set to `REDIS_PASSWORD`
  redis_server_tls   TLS only (self-signed certificate made with `openssl`; `.ca_file`)
  redis_down_url     a loopback URL where nothing listens (function scope)

`start_redis` starts more (a replica, a TLS server that requires client certificates);
`ScriptedRedis` plays what a real redis-server will not do: oversized or malformed replies,
silence after a command, an old server's answers.

Without the `redis-server` binary the Redis tests are skipped with a message saying how to install
it, except under CI (`CI` set, as every CI service does), where a missing server is a failure:
a CI run must not go green by silently testing less. Install: `apt-get install -y redis-server`.

Importing this module also registers the Redis backends with the ledger contract.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

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


def _answers(port: int, tls: bool, client_cert: tuple[Path, Path] | None = None) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as raw:
            sock = raw
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
                if client_cert:
                    context.load_cert_chain(*client_cert)
                sock = context.wrap_socket(raw)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except OSError:
        return False


def start_redis(directory: Path, *, password: str | None = None, tls: bool = False,
                client_certs: bool = False, extra: Sequence[str] = ()) -> RedisServer:
    """Start redis-server on a free loopback port; retry if another process took the port.

    `client_certs`: a TLS server that requires a client certificate signed by its CA (its own
    self-signed certificate, `.ca_file`, with the key next to it as key.pem). `extra`: more
    redis.conf lines (`replicaof …`).
    """
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
                      f"tls-auth-clients {'yes' if client_certs else 'no'}"]
        else:
            lines.append(f"port {port}")
        if password:
            # In the config file, not on the command line, where `ps` would show it.
            lines.append(f"requirepass {password}")
        lines += extra
        config = directory / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        process = subprocess.Popen([binary, str(config)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        server = RedisServer(port, password, directory, process, ca_file=cert)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            if _answers(port, tls, (cert, key) if client_certs and cert and key else None):
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


@dataclass
class ScriptedRedis:
    """A loopback TCP server that answers each command with the next canned reply.

    `replies[i]` serves the i-th connection (later ones get nothing and are closed): `bytes` are
    sent as they are, `None` means stay silent until the client hangs up, and a reply ending in
    `CLOSE` closes the connection once the bytes before it are sent. `commands[i]` records what
    the i-th connection sent, decoded.
    """

    replies: list[list[bytes | None]]
    commands: list[list[list[str]]] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, options: str = "socket_timeout=2&socket_connect_timeout=2") -> str:
        return f"redis://127.0.0.1:{self.port}/0?{options}"

    @property
    def connections(self) -> int:
        return len(self.commands)

    def stop(self) -> None:
        self._stopped.set()
        # shutdown() wakes a thread blocked in accept() or recv(); close() alone does not.
        for sock in (self._listener, self._conn):
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(10)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._conn = conn
            received: list[list[str]] = []
            self.commands.append(received)
            script = self.replies[len(self.commands) - 1] if len(self.commands) <= len(
                self.replies) else [CLOSE]
            with conn, conn.makefile("rb") as stream:
                for reply in script:
                    command = _read_command(stream)
                    if command is None:
                        break
                    received.append(command)
                    if reply is None:  # silent: wait for the client to hang up
                        while _read_command(stream) is not None:
                            pass
                        break
                    try:
                        conn.sendall(reply.removesuffix(CLOSE))
                    except OSError:  # the client gave up reading: what some tests want
                        break
                    if reply.endswith(CLOSE):
                        break


#: The end of a `ScriptedRedis` reply after which it closes the connection (alone: no answer).
CLOSE = b"<close>"


def _read_command(stream: BinaryIO) -> list[str] | None:
    """One RESP array of bulk strings as a client sends it, or None at the end of the stream."""
    try:
        header = stream.readline()
        if not header.startswith(b"*"):
            return None
        args = []
        for _ in range(int(header[1:])):
            length = int(stream.readline()[1:])
            args.append(stream.read(length + 2)[:-2].decode(errors="replace"))
    except (OSError, ValueError):
        return None
    return args


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
