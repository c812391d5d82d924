"""A small RESP2 client on the standard library: just what the Redis ledger needs.

One connection, opened on the first command: TCP or TLS, then `AUTH` (password, or ACL user and
password) and `SELECT`, then commands one at a time. Importing it costs almost nothing (the
`redis` package cost 250-300 ms per process, paid by every job at once); `ssl` is imported only
for `rediss://`.

Replies are read with bounded sizes, so a hostile or broken server cannot make the client hold
more than `MAX_REPLY` bytes of one reply: a longer line, bulk string or array, deeper nesting or
a reply type outside RESP2 is a `ProtocolError`, raised before anything that large is read.

Errors are classes of this module, none carrying a credential (commands are never quoted):
`ConnectError` (could not connect; `CertificateError` for an untrusted certificate),
`ConnectionLost` (dropped during a command), `Timeout`, `ProtocolError`, `ReplyError` (an error
reply; `AuthError`, `SelectError` for the set-up commands).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

if TYPE_CHECKING:
    import ssl

#: Bytes of one status, error, integer or length line (CRLF included).
MAX_LINE = 16 * 1024
#: Bytes of one bulk string: the ledger reads integers and short strings.
MAX_BULK = 64 * 1024
#: Elements of one array, and how deeply arrays may nest.
MAX_ARRAY = 256
MAX_DEPTH = 4
#: Bytes of one whole reply, all its lines and strings.
MAX_REPLY = 256 * 1024
_RECV = 64 * 1024

Reply: TypeAlias = "bytes | int | list[Reply] | None"
Arg: TypeAlias = "str | bytes | int"


class RedisError(Exception):
    """Base of this module's errors. The text never contains a command or a credential."""


class ConnectError(RedisError):
    """The connection could not be made (refused, unresolvable host, TLS handshake)."""


class CertificateError(ConnectError):
    """The server's TLS certificate is not trusted, or names another host."""


class ConnectionLost(RedisError):
    """An open connection was closed or reset while a command was sent or answered."""


class Timeout(RedisError):
    def __init__(self, seconds: float, *, connecting: bool) -> None:
        self.seconds = seconds
        self.connecting = connecting
        what = "no connection" if connecting else "no answer"
        super().__init__(f"{what} within {seconds:g} s")


class ProtocolError(RedisError):
    """A reply that is not RESP2, or larger than this client reads."""


class ReplyError(RedisError):
    """An error reply: `code` is its first word (ERR, WRONGTYPE, NOPERM, NOSCRIPT, …)."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.code = message.split(" ", 1)[0]
        super().__init__(message)


class AuthError(ReplyError):
    """`AUTH` was refused (or a command answered NOAUTH / WRONGPASS)."""


class SelectError(ReplyError):
    """`SELECT db` was refused: no such database."""


class Endpoint(NamedTuple):
    """Where and how to connect: parsed from the ledger URL by the caller."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    connect_timeout: float = 5.0
    socket_timeout: float = 5.0
    tls: ssl.SSLContext | None = None


#: The answers of a Redis server without a password to `AUTH <password>` (6.0+, then older):
#: a leftover password in the URL is harmless, as it always was.
_NO_PASSWORD_SET = ("without any password configured", "no password is set")
_WRONG_ARITY = "wrong number of arguments for 'auth'"


def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Client:
    """One connection to one Redis server; `call` sends a command and returns its reply."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._budget = 0
        self._answered = 0  # commands answered on the open connection

    def call(self, *args: Arg) -> Reply:
        """Send one command, return its reply; an error reply raises `ReplyError`.

        A connection that was open before this call and turns out dropped (an idle connection
        closed by the server or a middlebox, a failover) is reopened once at once. A timeout is
        never retried: the command may have run, and a silent server must fail fast.
        """
        reused = self._sock is not None and self._answered > 0
        try:
            return self._call(args)
        except ConnectionLost:
            self.close()
            if not reused:
                raise
        return self._call(args)

    def connect(self) -> None:
        """Open the connection now if it is not open (`call` would open it anyway)."""
        if self._sock is None:
            self._connect()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None:
            sock.close()

    # -- one command --------------------------------------------------------------------------

    def _call(self, args: tuple[Arg, ...]) -> Reply:
        try:
            sock = self._sock or self._connect()
            self._send(sock, encode(args))
            reply = self._read(sock)
        except ReplyError:
            raise  # the connection is in step: keep it
        except BaseException:
            self.close()  # the stream's state is unknown: never reuse it
            raise
        self._answered += 1
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def _send(self, sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except TimeoutError:
            raise Timeout(self.endpoint.socket_timeout, connecting=False) from None
        except OSError as exc:
            raise ConnectionLost(_os_text(exc, "sending")) from None

    # -- connecting ---------------------------------------------------------------------------

    def _connect(self) -> socket.socket:
        ep = self.endpoint
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=ep.connect_timeout)
        except TimeoutError:
            raise Timeout(ep.connect_timeout, connecting=True) from None
        except socket.gaierror as exc:
            raise ConnectError(f"cannot resolve the host name: {exc.strerror or exc}") from None
        except OSError as exc:
            raise ConnectError(_os_text(exc, "connecting")) from None
        try:
            if ep.tls is not None:
                sock = self._handshake_tls(sock, ep.tls)
            sock.settimeout(ep.socket_timeout)
            self._sock, self._answered = sock, 0
            self._set_up(sock)
        except BaseException:
            self.close()
            sock.close()
            raise
        return sock

    def _handshake_tls(self, raw: socket.socket, context: ssl.SSLContext) -> socket.socket:
        import ssl  # noqa: PLC0415 - only rediss:// pays for OpenSSL

        try:
            return context.wrap_socket(raw, server_hostname=self.endpoint.host)
        except TimeoutError:
            raise Timeout(self.endpoint.connect_timeout, connecting=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise CertificateError("TLS handshake: certificate verify failed: "
                                   f"{exc.verify_message or exc.reason}") from None
        except OSError as exc:  # ssl.SSLError is one
            raise ConnectError(f"TLS handshake failed: {exc}") from None

    def _set_up(self, sock: socket.socket) -> None:
        """AUTH and SELECT, sent together: a refused AUTH makes SELECT fail harmlessly."""
        ep = self.endpoint
        auth: tuple[Arg, ...] = ()
        if ep.username:
            auth = ("AUTH", ep.username, ep.password or "")
        elif ep.password:
            auth = ("AUTH", ep.password)
        select: tuple[Arg, ...] = ("SELECT", ep.db) if ep.db else ()
        while auth or select:
            self._send(sock, b"".join(encode(c) for c in (auth, select) if c))
            auth_reply = self._read(sock) if auth else None
            select_reply = self._read(sock) if select else None
            if isinstance(auth_reply, ReplyError):
                text = auth_reply.message
                if len(auth) == 3 and _WRONG_ARITY in text.lower():
                    auth = ("AUTH", ep.password or "")  # Redis before 6: no users, password only
                    continue
                if not (len(auth) == 2 and any(t in text for t in _NO_PASSWORD_SET)):
                    raise AuthError(text)
            if isinstance(select_reply, ReplyError):
                error_type = AuthError if select_reply.code == "NOAUTH" else SelectError
                raise error_type(select_reply.message)
            return

    # -- reading, bounded ---------------------------------------------------------------------

    def _read(self, sock: socket.socket) -> Reply | ReplyError:
        """One whole reply. An error reply nested in an array is returned after the array is
        read, so the stream stays in step."""
        self._budget = MAX_REPLY
        errors: list[ReplyError] = []
        reply = self._value(sock, 0, errors)
        if errors and not isinstance(reply, ReplyError):
            return errors[0]
        return reply

    def _value(self, sock: socket.socket, depth: int,
               errors: list[ReplyError]) -> Reply | ReplyError:
        line = self._line(sock)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return bytes(rest)
        if kind == b"-":
            error = rest.decode("utf-8", "replace")
            cls = AuthError if error.startswith(("NOAUTH", "WRONGPASS")) else ReplyError
            return cls(error)
        if kind == b":":
            return _integer(rest)
        if kind == b"$":
            return self._bulk(sock, _integer(rest))
        if kind == b"*":
            return self._array(sock, _integer(rest), depth, errors)
        shown = repr(bytes(kind))
        raise ProtocolError(f"the server sent a reply of type {shown}, not RESP2 (is this port "
                            "a Redis server?)")

    def _bulk(self, sock: socket.socket, length: int) -> bytes | None:
        if length < 0:
            return None
        limit = min(MAX_BULK, self._budget)
        if length > limit:
            raise ProtocolError(f"the server sent a {length}-byte string; this client reads at "
                                f"most {limit} bytes here")
        data = self._exact(sock, length + 2)
        if data[-2:] != b"\r\n":
            raise ProtocolError("the server sent a string without its line end")
        return bytes(data[:-2])

    def _array(self, sock: socket.socket, count: int, depth: int,
               errors: list[ReplyError]) -> list[Reply] | None:
        if count < 0:
            return None
        if count > MAX_ARRAY or depth >= MAX_DEPTH:
            raise ProtocolError(f"the server sent an array of {count} elements at depth "
                                f"{depth + 1}; this client reads at most {MAX_ARRAY} elements, "
                                f"{MAX_DEPTH} deep")
        items: list[Reply] = []
        for _ in range(count):
            item = self._value(sock, depth + 1, errors)
            if isinstance(item, ReplyError):
                errors.append(item)
                item = None
            items.append(item)
        return items

    def _line(self, sock: socket.socket) -> bytearray:
        limit = min(MAX_LINE, self._budget)
        start = 0
        while True:
            end = self._buffer.find(b"\r\n", start)
            if end >= 0:
                if end + 2 > limit:
                    break
                return self._take(end + 2)[:-2]
            if len(self._buffer) >= limit:
                break
            start = max(0, len(self._buffer) - 1)
            self._fill(sock)
        raise ProtocolError(f"the server sent a line longer than {limit} bytes")

    def _exact(self, sock: socket.socket, count: int) -> bytearray:
        while len(self._buffer) < count:
            self._fill(sock)
        return self._take(count)

    def _take(self, count: int) -> bytearray:
        data = self._buffer[:count]
        del self._buffer[:count]
        self._budget -= count
        return data

    def _fill(self, sock: socket.socket) -> None:
        try:
            chunk = sock.recv(_RECV)
        except TimeoutError:
            raise Timeout(self.endpoint.socket_timeout, connecting=False) from None
        except OSError as exc:
            raise ConnectionLost(_os_text(exc, "reading")) from None
        if not chunk:
            raise ConnectionLost("the server closed the connection")
        self._buffer += chunk


def _integer(text: bytearray) -> int:
    if not (text.isdigit() or (text[:1] == b"-" and text[1:].isdigit())) or len(text) > 20:
        raise ProtocolError("the server sent a malformed number")
    return int(text)


def _os_text(exc: OSError, doing: str) -> str:
    """`Connection refused`, not `[Errno 111] Connection refused`; the doing for context."""
    return f"{exc.strerror or type(exc).__name__} ({doing})"
