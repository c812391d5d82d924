"""Facts about URLs that more than one part of the program needs: credentials and loopback.

Credentials are found by `find_userinfo` before any parser sees a value, the way the most
permissive parser would find them: everything between `scheme://` and the *last* `@`. A
password with an unencoded `/`, `?` or `#` fools a strict parser (`urllib`, redis-py, git) into
reading part of it as the host, port or path, and printing it; such a URL is refused with a fix
instead of parsed (ledger/spec.py, settings/checks.py).
"""

from __future__ import annotations

import re
import urllib.parse
from typing import NamedTuple

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(/*)")
#: Schemes whose `scheme:///path` form has no authority: an `@` there belongs to the path.
_PATH_SCHEMES = ("file", "git+file")
#: Characters that end or break the userinfo part of a URL unless percent-encoded (RFC 3986).
DELIMITERS = {"/": "%2F", "?": "%3F", "#": "%23", "@": "%40", "[": "%5B", "]": "%5D",
              "\\": "%5C", " ": "%20"}
#: Pieces of a credential this long are masked on their own too (a parser may print one piece).
_PIECE_MIN = 8


class Userinfo(NamedTuple):
    """The `user:password` part of a URL-ish value, as written (still percent-encoded)."""

    text: str
    start: int  # where it starts in the value
    end: int  # where its closing `@` is

    @property
    def username(self) -> str:
        return self.text.partition(":")[0]

    @property
    def password(self) -> str | None:
        _user, colon, password = self.text.partition(":")
        return password if colon else None

    def secrets(self) -> list[str]:
        """Every form in which this credential could be printed: raw, decoded, and in pieces."""
        secret = self.password if self.password is not None else self.username
        found = [self.text, urllib.parse.unquote(self.text)]
        for form in (secret, urllib.parse.unquote(secret)):
            found.append(form)
            found.extend(piece for piece in re.split(r"[/?#@\[\]\\\s]+", form)
                         if len(piece) >= _PIECE_MIN)
        return [s for s in dict.fromkeys(found) if s.strip()]

    def unencoded(self) -> list[str]:
        """The characters that should have been percent-encoded, in order of appearance."""
        return [c for c in dict.fromkeys(self.text)
                if c in DELIMITERS or not c.isprintable() or c.isspace()]


def scheme(value: str) -> str:
    """The lower-cased scheme of a URL-ish value, or ""."""
    found = _SCHEME.match(value)
    return found.group(1).lower() if found else ""


def find_userinfo(value: str) -> Userinfo | None:
    """The credentials in a URL-ish value, found permissively, or None.

    Everything between `scheme:` plus its slashes (or the start, for a value without a scheme)
    and the last `@` counts: a strict parser stops at the first `/`, `?` or `#` and would leave
    the rest of a password in the host or path. An `@` in a path or query is therefore read as
    the end of credentials too, and such a URL is refused unless it is written as `%40`: an
    ambiguous URL must not be guessed at when a wrong guess prints a password.
    """
    start = 0
    found = _SCHEME.match(value)
    if found is not None:
        if found.group(1).lower() in _PATH_SCHEMES and len(found.group(2)) != 2:
            return None  # `file:/x`, `file:///x`: no authority at all
        start = found.end()
    end = value.rfind("@", start)
    if end < 0:
        return None
    return Userinfo(value[start:end], start, end)


def without_userinfo(value: str) -> str:
    """The value with any credentials (as `find_userinfo` sees them) cut out."""
    info = find_userinfo(value)
    return value if info is None else value[: info.start] + value[info.end + 1 :]


def hide_userinfo(value: str) -> str:
    """The value with any credentials replaced by `…`, to show where they were."""
    info = find_userinfo(value)
    return value if info is None else value[: info.start] + "…" + value[info.end :]


def percent(char: str) -> str:
    """How `char` is written inside the credentials of a URL."""
    return DELIMITERS.get(char) or urllib.parse.quote(char, safe="")


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1, exactly: the only hosts plain http may reach.

    Compared as a whole name or address: `localhost.example.test` is an ordinary host.
    """
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    if ":" in host:
        import ipaddress  # noqa: PLC0415 - IPv6 hosts are rare; keep start-up light

        try:
            return ipaddress.IPv6Address(host).is_loopback
        except ValueError:
            return False
    parts = host.split(".")
    return len(parts) == 4 and parts[0] == "127" and all(
        p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def host(url: str) -> str:
    """The lower-cased host name of a URL, or "" (also for one that does not parse)."""
    try:
        return (urllib.parse.urlsplit(url).hostname or "").lower()
    except ValueError:
        return ""
