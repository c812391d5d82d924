"""`redis://` / `rediss://`: one key per account, reserved atomically by a Lua script.

The script (`reserve.lua`, shipped as package data) reads the Redis server's clock with `TIME`, so
every runner measures slots against the same clock however wrong its own is. The caller's clock
only enters as the conversion `slot_caller = caller_now + (slot_server - server_now)`, where
`caller_now` is the midpoint of the round trip: the conversion error is at most half of it.

Some managed Redis services refuse `TIME` inside scripts (very old servers replicate scripts
verbatim and reject a write after a non-deterministic command). Then the client asks the server
for `TIME` in a separate command right before the script and passes it in: still the server's
clock, at the cost of a few milliseconds between reading the time and reserving.

The `redis` client library is optional (`pip install 'streampixel-distribute[redis]'`) and is
imported only here, only when this backend is chosen.
"""

from __future__ import annotations

import importlib.resources
import urllib.parse
from typing import TYPE_CHECKING

from .. import redact
from ..errors import LedgerError
from ..urls import find_userinfo, without_userinfo
from . import Ledger, LedgerContext
from .spec import printable, validate_spec

if TYPE_CHECKING:
    from redis import Redis
    from redis.commands.core import Script

NAMESPACE = "streampixel-distribute:slot:"
# Seconds; an unreachable Redis must fail fast, not hang the job. `?socket_timeout=` and
# `?socket_connect_timeout=` in the URL override them (redis-py reads them from the query).
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
_US = 1_000_000

_SCRIPT_NAME = "reserve.lua"


def load_script() -> str:
    package = __name__.rpartition(".")[0]
    return importlib.resources.files(package).joinpath(_SCRIPT_NAME).read_text("utf-8")


def describe(spec: str) -> str:
    """`scheme://host:port/db`: the URL without user, password and query."""
    parts = urllib.parse.urlsplit(without_userinfo(spec))
    host = parts.hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    db = parts.path.strip("/") or "0"
    return printable(f"{parts.scheme.lower()}://{host}:{port}/{db}")


def _time_refused(message: str) -> bool:
    """Does a script error mean this server will not run TIME inside a script?"""
    text = message.lower()
    return "non deterministic" in text or "non-deterministic" in text or (
        "time" in text and ("not allowed" in text or "unknown command" in text)
    )


class RedisLedger(Ledger):
    warning: str | None = None

    def __init__(self, spec: str, context: LedgerContext) -> None:
        self._context = context
        # Mask the credentials everywhere (they may reach text only through redis-py), then
        # refuse a URL redis-py would misread: its errors quote the pieces it took for a port.
        info = find_userinfo(spec)
        for secret in info.secrets() if info is not None else ():
            redact.register(secret)
        validate_spec(spec)
        parts = urllib.parse.urlsplit(spec)
        if parts.scheme.lower() not in ("redis", "rediss"):
            raise LedgerError(f"not a Redis URL: {describe(spec)}",
                              hint="Use redis://[:password@]host:port/db or rediss://… for TLS.")
        self.description = describe(spec)
        self._where = self.description.split("://", 1)[1].rsplit("/", 1)[0]  # host:port
        try:
            # Lazy: the client is an optional dependency, needed only when this backend is used.
            import redis  # noqa: PLC0415
            from redis.backoff import ConstantBackoff  # noqa: PLC0415
            from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415
            from redis.retry import Retry  # noqa: PLC0415
        except ImportError as exc:
            raise LedgerError(
                "the Redis ledger needs the `redis` Python package, which is not installed",
                hint="pip install 'streampixel-distribute[redis]' (the container image has it).",
            ) from exc
        try:
            self._client: Redis = redis.Redis.from_url(
                spec,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                # One quick retry for a dropped connection. None after a timeout: the script may
                # have run (a retry would waste a slot) and a silent server must fail fast.
                retry=Retry(ConstantBackoff(0.2), 1, supported_errors=(RedisConnectionError,)),
            )
        except ValueError as exc:  # bad port, unknown query option, unsupported scheme
            raise LedgerError(
                f"invalid Redis ledger URL {self.description}: {redact.scrub(str(exc))}",
                hint="Use redis://[:password@]host:port/db (percent-encode special characters "
                "in the password) or rediss://… for TLS.",
            ) from exc
        pool = self._client.connection_pool
        try:  # builds a connection object without connecting: rejects unknown ?options now
            pool.connection_class(**pool.connection_kwargs).disconnect()
        except TypeError as exc:
            raise LedgerError(
                f"unsupported option in the Redis ledger URL {self.description}: "
                f"{redact.scrub(str(exc))}",
                hint="Remove it; supported query options include ssl_cert_reqs, ssl_ca_certs, "
                "socket_timeout and socket_connect_timeout.",
            ) from exc
        self._script: Script = self._client.register_script(load_script())
        self._time_in_script = True

    @staticmethod
    def key_of(key: str) -> str:
        return NAMESPACE + key

    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        return self._run(key, interval, not_before, peek=False)

    def peek(self, key: str, interval: float) -> float:
        return self._run(key, interval, 0.0, peek=True)

    def close(self) -> None:
        self._client.close()

    def _run(self, key: str, interval: float, not_before: float, *, peek: bool) -> float:
        from redis.exceptions import RedisError, ResponseError  # noqa: PLC0415 - loaded by now

        before = self._context.now()
        min_delay_us = max(0, round((not_before - before) * _US))
        args = [max(0, round(interval * _US)), min_delay_us, 1 if peek else 0]
        try:
            if self._time_in_script:
                try:
                    reply = self._script(keys=[self.key_of(key)], args=[*args, ""])
                    # The server read its clock somewhere in this round trip: take the middle.
                    caller_now = (before + self._context.now()) / 2
                except ResponseError as exc:
                    if not _time_refused(str(exc)):
                        raise
                    self._time_in_script = False
            if not self._time_in_script:
                before = self._context.now()
                seconds, micros = self._client.time()
                caller_now = (before + self._context.now()) / 2  # around the TIME call
                args[1] = max(0, round((not_before - before) * _US))
                reply = self._script(keys=[self.key_of(key)],
                                     args=[*args, seconds * _US + micros])
        except RedisError as exc:
            raise self._translate(exc) from None
        server_now, slot = (int(v) for v in reply)
        # caller_now >= `before`, from which min_delay was computed, so not_before still holds;
        # max() only absorbs microsecond rounding.
        return max(caller_now + (slot - server_now) / _US, not_before)

    def _translate(self, exc: Exception) -> LedgerError:
        from redis import exceptions as e  # noqa: PLC0415 - loaded by now

        text = redact.scrub(str(exc)) or type(exc).__name__
        where = f"Redis at {self._where}"
        # URL options (?socket_timeout=) override our default.
        timeout = self._client.connection_pool.connection_kwargs.get("socket_timeout")
        unreachable = (
            "Check that the host and port in the ledger URL are right and that Redis accepts "
            "connections from this runner (firewall, bind address; TLS needs rediss://)."
        )
        refused = "Rate-limit ledger refused"
        # First match wins: AuthenticationError is a ConnectionError, so it comes first.
        table: list[tuple[tuple[type[Exception] | str, ...], str | None, str, str]] = [
            ((e.AuthenticationError,), refused, f"{where} refused the credentials: {text}",
             "Check the password in the ledger URL secret (redis://:PASSWORD@host:port/0; "
             "percent-encode special characters)."),
            # Inside a script, Redis 7.0 reports an ACL denial as a plain ERR with this text.
            ((e.NoPermissionError, "can't run this command"), refused,
             f"{where} denied a command: {text}",
             "Grant the ledger's Redis user +evalsha +eval +get +set +time on keys "
             f"'{NAMESPACE}*'."),
            ((e.ReadOnlyError,), None, f"{where} is a read-only replica: {text}",
             "Point the ledger URL at the primary (writable) Redis endpoint."),
            (("CERTIFICATE_VERIFY_FAILED", "certificate verify failed"), refused,
             f"{where} presented a TLS certificate this runner does not trust: {text}",
             "Add ?ssl_ca_certs=/path/to/ca.pem to the ledger URL for a private CA (or, only if "
             "you accept the risk, ?ssl_cert_reqs=none)."),
            ((e.TimeoutError,), None,
             f"{where} unreachable: no answer within {timeout} s", unreachable),
            ((e.ConnectionError,), None, f"{where} unreachable: {text}", unreachable),
            (("CORRUPT", "WRONGTYPE"), "Rate-limit ledger corrupt",
             f"{where} holds something else under this ledger's key: {text}",
             f"Delete the keys '{NAMESPACE}*' (they hold only slot reservations) or give the "
             "ledger its own Redis database (/1, /2, …)."),
        ]
        for match, title, detail, hint in table:
            if any(m in text if isinstance(m, str) else isinstance(exc, m) for m in match):
                return LedgerError(detail, title=title, hint=hint)
        return LedgerError(
            f"{where} failed: {text}",
            hint="Check the Redis server's log; the ledger needs EVALSHA, GET, SET and TIME.",
        )
