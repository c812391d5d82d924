"""`redis://` / `rediss://`: one key per account, reserved atomically by a Lua script.

The script (`reserve.lua`, shipped as package data) reads the Redis server's clock with `TIME`, so
every runner measures slots against the same clock however wrong its own is. The caller's clock
only enters as the conversion `slot_caller = caller_now + (slot_server - server_now)`, where
`caller_now` is the midpoint of the round trip: the conversion error is at most half of it.

Some managed Redis services refuse `TIME` inside scripts (very old servers replicate scripts
verbatim and reject a write after a non-deterministic command). Then the client asks the server
for `TIME` in a separate command right before the script and passes it in: still the server's
clock, at the cost of a few milliseconds between reading the time and reserving.

The client is our own (resp.py, standard library only): importing the `redis` package cost each
job 250-300 ms of start-up, paid by every parallel job at once, for the handful of commands the
ledger sends. The URL is parsed here: credentials are found and masked before anything parses it,
and only the options below are accepted, so a typo is refused instead of silently ignored.
"""

from __future__ import annotations

import json
import math
import os.path
import re
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import redact
from ..errors import LedgerError
from ..urls import find_userinfo, hide_userinfo, without_userinfo
from . import Ledger, LedgerContext, queue
from .queue import Holder, Slot
from .resp import (
    AuthError,
    CertificateError,
    Client,
    ConnectError,
    ConnectionLost,
    Endpoint,
    ProtocolError,
    RedisError,
    ReplyError,
    SelectError,
    Timeout,
)
from .spec import printable, validate_spec

if TYPE_CHECKING:
    import ssl

try:  # CPython's built-in SHA-1: hashlib may load OpenSSL for one hash
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # another implementation
    from hashlib import sha1 as _sha1  # type: ignore[assignment, unused-ignore]

NAMESPACE = "streampixel-distribute:slot:"
#: The account's queue sits next to its slot key, under the same ACL pattern.
QUEUE_SUFFIX = ":queue"
# reserve.lua's operations
_RESERVE, _PEEK, _GIVE_BACK, _ADVANCE, _READ, _STRETCH = "0", "1", "2", "3", "4", "5"
# Seconds; an unreachable Redis must fail fast, not hang the job. `?socket_timeout=` and
# `?socket_connect_timeout=` in the URL override them.
CONNECT_TIMEOUT = 5.0
SOCKET_TIMEOUT = 5.0
_US = 1_000_000

_SCRIPT_NAME = "reserve.lua"
_URL_FORM = ("Use redis://[:password@]host:port/db (percent-encode special characters in the "
             "password) or rediss://… for TLS.")
_CERT_REQS = ("none", "optional", "required")
_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
#: The `?options` the URL may carry: the timeouts, and for rediss:// the TLS settings.
OPTIONS = ("socket_timeout", "socket_connect_timeout", "ssl_ca_certs", "ssl_cert_reqs",
           "ssl_check_hostname", "ssl_certfile", "ssl_keyfile")


def load_script() -> str:
    path = os.path.join(os.path.dirname(__file__), _SCRIPT_NAME)
    with open(path, encoding="utf-8") as handle:
        return handle.read()


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


def parse_url(spec: str) -> Endpoint:
    """The connection settings of a redis:// or rediss:// URL whose credentials are checked.

    Raises LedgerError naming what is wrong and the fix; never quotes the credentials.
    """
    parts = urllib.parse.urlsplit(spec)
    # Without the query: an option this client refuses (`?password=`) may hold a secret.
    shown = printable(re.split(r"[?#]", hide_userinfo(spec), maxsplit=1)[0], 120)
    tls = parts.scheme.lower() == "rediss"
    try:
        port = parts.port or 6379
    except ValueError:
        raise LedgerError(f"invalid Redis ledger URL {shown}: the port is not a number from 1 to "
                          "65535.", hint=_URL_FORM) from None
    db_text = parts.path.strip("/") or "0"
    if not (db_text.isascii() and db_text.isdigit()):
        raise LedgerError(f"invalid Redis ledger URL {shown}: the path selects the database and "
                          "must be a number.", hint="Write the database as /0, /1, …: " + _URL_FORM)
    options: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        if name not in OPTIONS:
            raise LedgerError(
                f"unsupported option in the Redis ledger URL {shown}: `{printable(name, 40)}`.",
                hint=f"Remove it; the supported options are {', '.join(OPTIONS)}.")
        if name in options:
            raise LedgerError(f"the option `{name}` is given twice in the Redis ledger URL "
                              f"{shown}.", hint="Keep one of them.")
        if name.startswith("ssl_") and not tls:
            raise LedgerError(f"the option `{name}` in the Redis ledger URL {shown} is a TLS "
                              "setting, but the URL is redis:// (no TLS).",
                              hint="Use rediss:// for TLS, or remove the option.")
        options[name] = value
    return Endpoint(
        host=parts.hostname or "localhost", port=port, db=int(db_text),
        username=urllib.parse.unquote(parts.username) if parts.username else None,
        password=urllib.parse.unquote(parts.password) if parts.password else None,
        connect_timeout=_seconds(options, "socket_connect_timeout", CONNECT_TIMEOUT),
        socket_timeout=_seconds(options, "socket_timeout", SOCKET_TIMEOUT),
        tls=_tls_context(options) if tls else None,
    )


def _seconds(options: dict[str, str], name: str, default: float) -> float:
    text = options.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (0 < value <= 3600):  # NaN fails too
        raise LedgerError(f"`?{name}={printable(text, 40)}` in the Redis ledger URL is not a "
                          "number of seconds from 0 to 3600.",
                          hint=f"Give seconds greater than 0, e.g. ?{name}=5 (or remove it: "
                          f"the default is {default:g} s).")
    return value


def _tls_context(options: dict[str, str]) -> ssl.SSLContext:
    """The SSLContext for rediss://: the system CAs (plus ?ssl_ca_certs=), hostname checked."""
    import ssl  # noqa: PLC0415 - only rediss:// pays for OpenSSL

    reqs = options.get("ssl_cert_reqs", "required").lower()
    if reqs not in _CERT_REQS:
        raise LedgerError(f"`?ssl_cert_reqs={printable(reqs, 40)}` in the Redis ledger URL is "
                          "not a verification mode.",
                          hint="Use ssl_cert_reqs=required (the default), optional or none.")
    check = options.get("ssl_check_hostname", "true").lower()
    if check not in _BOOLEANS:
        raise LedgerError(f"`?ssl_check_hostname={printable(check, 40)}` in the Redis ledger URL "
                          "is not true or false.", hint="Use ssl_check_hostname=false or true.")
    context = ssl.create_default_context()
    context.check_hostname = _BOOLEANS[check] and reqs != "none"
    context.verify_mode = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                           "required": ssl.CERT_REQUIRED}[reqs]
    name = path = ""
    try:
        if options.get("ssl_ca_certs"):
            name, path = "ssl_ca_certs", options["ssl_ca_certs"]
            context.load_verify_locations(cafile=path)
        if options.get("ssl_certfile"):
            name, path = "ssl_certfile", options["ssl_certfile"]
            context.load_cert_chain(path, options.get("ssl_keyfile") or None)
        elif options.get("ssl_keyfile"):
            raise LedgerError("`?ssl_keyfile=` in the Redis ledger URL needs `ssl_certfile`.",
                              hint="Add ?ssl_certfile=/path/client.pem (the client certificate) "
                              "or remove ssl_keyfile.")
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LedgerError(
            f"cannot use `?{name}={printable(path, 100)}` from the Redis ledger URL: "
            f"{redact.one_line(reason, 200)}",
            hint="Give the path of a readable PEM file on this runner (certificate files for "
            "ssl_ca_certs and ssl_certfile, the private key for ssl_keyfile).") from None
    return context


class RedisLedger(Ledger):
    warning: str | None = None

    def __init__(self, spec: str, context: LedgerContext) -> None:
        self._context = context
        # Mask the credentials everywhere, then refuse a URL a parser would misread (a strict
        # one takes pieces of an unencoded password for the port or the path).
        info = find_userinfo(spec)
        for secret in info.secrets() if info is not None else ():
            redact.register(secret)
        validate_spec(spec)
        if urllib.parse.urlsplit(spec).scheme.lower() not in ("redis", "rediss"):
            raise LedgerError(f"not a Redis URL: {describe(spec)}", hint=_URL_FORM)
        self.description = describe(spec)
        self._where = self.description.split("://", 1)[1].rsplit("/", 1)[0]  # host:port
        self.endpoint = parse_url(spec)
        self._client = Client(self.endpoint)
        self._script = load_script()
        # Redis names cached scripts by their SHA-1: an identifier, not a security use.
        self._sha = _sha1(self._script.encode()).hexdigest()  # noqa: S324
        self._time_in_script = True

    @staticmethod
    def key_of(key: str) -> str:
        return NAMESPACE + key

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        by = json.dumps(holder.as_json()) if holder is not None else ""
        slot, caller_now, server_now, _ = self._run(key, _RESERVE, interval, not_before, by)
        # caller_now >= the time min_delay was computed from, so not_before still holds; max()
        # only absorbs microsecond rounding.
        return max(_caller(slot, caller_now, server_now), not_before)

    def peek(self, key: str, interval: float) -> float:
        slot, caller_now, server_now, _ = self._run(key, _PEEK, interval, 0.0, "")
        return _caller(slot, caller_now, server_now)

    def queue(self, key: str, interval: float) -> list[Slot]:
        next_free, caller_now, server_now, raw = self._run(key, _READ, interval, 0.0, "")
        try:
            stored = json.loads(raw) if raw else None
        except ValueError:
            stored = None
        slots = []
        for slot in queue.decode(_seconds_from_us(stored)):
            slots.append(slot._replace(at=_caller(slot.at * _US, caller_now, server_now),
                                       until=_caller(slot.until * _US, caller_now, server_now)))
        return queue.shown(slots, _caller(next_free, caller_now, server_now)
                           if next_free else -math.inf, interval, now=self._context.now())

    def give_back(self, key: str, holder_id: str) -> str:
        outcome, _, _, _ = self._run(key, _GIVE_BACK, 0.0, 0.0, holder_id)
        return {1: "released", 2: "marked"}.get(outcome, "absent")

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        moved, caller_now, server_now, _ = self._run(key, _ADVANCE, 0.0, earliest, holder_id)
        return None if moved < 0 else _caller(moved, caller_now, server_now)

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        changed, _, _, _ = self._run(key, _STRETCH, 0.0, until, holder_id)
        return changed == 1

    def close(self) -> None:
        self._client.close()

    def _eval(self, key: str, args: list[int | str]) -> tuple[int, int, str]:
        """Run reserve.lua: by its SHA-1, or with its text once the server has forgotten it."""
        keys = (self.key_of(key), self.key_of(key) + QUEUE_SUFFIX)
        try:
            reply = self._client.call("EVALSHA", self._sha, 2, *keys, *args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
            reply = self._client.call("EVAL", self._script, 2, *keys, *args)
        if isinstance(reply, list) and len(reply) == 3 and isinstance(reply[2], bytes):
            server_now, result = _two_integers(reply[:2], "the reservation script")
            return server_now, result, reply[2].decode("utf-8", "replace")
        raise ProtocolError("unexpected answer to the reservation script: "
                            f"{printable(repr(reply), 80)}")

    def _run(self, key: str, op: str, interval: float, not_before: float,
             arg: str) -> tuple[int, float, int, str]:
        """One operation of the script: (its result, the caller's clock and the server's clock
        at the moment it ran, the queue it returned)."""
        try:
            # Connected first: the round trip whose middle is taken below is then the script's
            # alone, not also the TCP, TLS and AUTH set-up before it.
            self._client.connect()
            before = self._context.now()
            min_delay_us = max(0, round((not_before - before) * _US))
            args: list[int | str] = [max(0, round(interval * _US)), min_delay_us, op, "", arg]
            if self._time_in_script:
                try:
                    server_now, result, raw = self._eval(key, args)
                    # The server read its clock somewhere in this round trip: take the middle.
                    caller_now = (before + self._context.now()) / 2
                except ReplyError as exc:
                    if not _time_refused(exc.message):
                        raise
                    self._time_in_script = False
            if not self._time_in_script:
                before = self._context.now()
                seconds, micros = _two_integers(self._client.call("TIME"), "TIME")
                caller_now = (before + self._context.now()) / 2  # around the TIME call
                args[1] = max(0, round((not_before - before) * _US))
                args[3] = seconds * _US + micros
                server_now, result, raw = self._eval(key, args)
        except RedisError as exc:
            raise self._translate(exc) from None
        return result, caller_now, server_now, raw

    def _translate(self, exc: RedisError) -> LedgerError:
        text = redact.one_line(str(exc), 300) or type(exc).__name__
        where = f"Redis at {self._where}"
        unreachable = (
            "Check that the host and port in the ledger URL are right and that Redis accepts "
            "connections from this runner (firewall, bind address; TLS needs rediss://)."
        )
        if self.endpoint.tls is not None:
            # The server's refusal of a missing client certificate may arrive as a bare EOF.
            # A plain Redis waits for the rest of what it takes for a command: a silent handshake.
            unreachable += (" A server without TLS never answers the handshake: use redis:// for "
                            "it. If the server requires client certificates (tls-auth-clients), "
                            "add ?ssl_certfile=/path/client.pem to the ledger URL.")
        refused = "Rate-limit ledger refused"

        def code(*codes: str) -> Callable[[RedisError], bool]:
            return lambda e: isinstance(e, ReplyError) and e.code in codes

        # First match wins.
        table: list[tuple[Callable[[RedisError], bool], str | None, str, str]] = [
            (lambda e: isinstance(e, AuthError) or "invalid password" in str(e), refused,
             f"{where} refused the credentials: {text}",
             "Check the password in the ledger URL secret (redis://:PASSWORD@host:port/0; "
             "percent-encode special characters)."),
            # Inside a script, Redis 7.0 reports an ACL denial as a plain ERR with this text.
            (lambda e: code("NOPERM")(e) or "can't run this command" in str(e), refused,
             f"{where} denied a command: {text}",
             "Grant the ledger's Redis user +evalsha +eval +get +set +time on keys "
             f"'{NAMESPACE}*'."),
            (code("READONLY"), None, f"{where} is a read-only replica: {text}",
             "Point the ledger URL at the primary (writable) Redis endpoint."),
            (lambda e: isinstance(e, SelectError), refused,
             f"{where} has no database {self.endpoint.db}: {text}",
             "Use a database number the server has in the ledger URL's path (/0 to /15 unless "
             "redis.conf sets `databases`)."),
            (lambda e: isinstance(e, CertificateError), refused,
             f"{where} presented a TLS certificate this runner does not trust: {text}",
             ("Use the host name the certificate names in the ledger URL (or, only if you "
              "accept the risk, add ?ssl_check_hostname=false)." if "mismatch" in text else
              "Add ?ssl_ca_certs=/path/to/ca.pem to the ledger URL for a private CA (or, only "
              "if you accept the risk, ?ssl_cert_reqs=none).")),
            # TLS 1.3 servers refuse a missing client certificate after the handshake: the
            # alert names it when it is read before the connection is gone.
            (lambda e: "CERTIFICATE_REQUIRED" in str(e), refused,
             f"{where} wants a TLS client certificate: {text}",
             "Add ?ssl_certfile=/path/client.pem (and &ssl_keyfile=/path/client.key if the key "
             "is a separate file) to the ledger URL."),
            (lambda e: isinstance(e, Timeout), None, f"{where} unreachable: {text}",
             unreachable),
            (lambda e: isinstance(e, ConnectError | ConnectionLost), None,
             f"{where} unreachable: {text}", unreachable),
            (lambda e: "CORRUPT" in str(e) or "WRONGTYPE" in str(e),
             "Rate-limit ledger corrupt",
             f"{where} holds something else under this ledger's key: {text}",
             f"Delete the keys '{NAMESPACE}*' (they hold only slot reservations) or give the "
             "ledger its own Redis database (/1, /2, …)."),
            (lambda e: isinstance(e, ProtocolError), None,
             f"{where} sent a reply this client does not accept: {text}",
             "Check that the host and port in the ledger URL are a Redis server's, not another "
             "service's."),
        ]
        for match, title, detail, hint in table:
            if match(exc):
                return LedgerError(detail, title=title, hint=hint)
        return LedgerError(
            f"{where} failed: {text}",
            hint="Check the Redis server's log; the ledger needs EVALSHA, EVAL, GET, SET and "
            "TIME.",
        )


def _caller(server_us: float, caller_now: float, server_now: int) -> float:
    """A time on the server's clock (microseconds) on the caller's (seconds)."""
    return caller_now + (server_us - server_now) / _US


def _seconds_from_us(stored: object) -> object:
    """The stored queue with its microsecond strings as seconds, as queue.decode reads it."""
    if not isinstance(stored, dict) or not isinstance(stored.get("slots"), list | dict):
        return stored
    slots = []
    for item in stored["slots"] if isinstance(stored["slots"], list) else []:
        if isinstance(item, dict):
            try:
                times = {"at": int(item["at"]) / _US, "until": int(item["until"]) / _US}
            except (KeyError, TypeError, ValueError):
                continue
            slots.append(item | times)
    return stored | {"slots": slots}


def _two_integers(reply: object, what: str) -> tuple[int, int]:
    """`[a, b]` as integers (the script answers integers, TIME answers digit strings)."""
    if isinstance(reply, list) and len(reply) == 2:
        values: list[int] = []
        for item in reply:
            if isinstance(item, int) or (isinstance(item, bytes) and item.isdigit()
                                         and len(item) <= 20):
                values.append(int(item))
        if len(values) == 2:
            return values[0], values[1]
    raise ProtocolError(f"unexpected answer to {what}: {printable(repr(reply), 80)}")
