"""The slot ledger: where parallel jobs of one account reserve their turns (GCRA, DESIGN.md §6).

`reserve(key, interval, not_before)` atomically computes
`slot = max(now, not_before, next_free)`, stores `next_free = slot + interval` and returns `slot`.
Nothing is ever released, so a crashed job wastes at most one slot and nothing can leak.

All times crossing this interface are epoch seconds on the *caller's* clock. A backend that keeps
its own clock (Redis `TIME`) converts on the way in and out, so runner clock skew cannot make two
jobs collide.

Backends are picked from the `ledger` input by `open_ledger` through one registry keyed by the URL
scheme; each backend module is imported only when chosen (the Redis client, for one, is optional).

Credentials in a URL are found by `find_userinfo` before any parser sees the value, the way the most
permissive parser would find them: everything between `scheme://` and the last `@`. A password with
an unencoded `/`, `?` or `#` fools a strict parser (`urllib`, redis-py, git) into reading part of it
as the host, port or path, and printing it; such a URL is refused with a fix instead of parsed.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from ..errors import LedgerError, Problem

Now = Callable[[], float]


class Ledger(ABC):
    """A store of `next_free` per account key."""

    #: What the user sees in logs, outputs and the summary: never credentials.
    description: str = ""
    #: A caveat worth a warning annotation (e.g. a file ledger on a GitHub-hosted runner).
    warning: str | None = None

    @abstractmethod
    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        """Reserve the next free slot at or after `not_before`; return it (caller's clock)."""

    @abstractmethod
    def peek(self, key: str, interval: float) -> float:
        """The slot `reserve` would return now, without reserving it."""

    def close(self) -> None:  # noqa: B027 - most backends hold nothing open
        """Release connections or temporary directories."""


@dataclass(frozen=True)
class LedgerContext:
    """What a backend may need besides its URL."""

    environ: Mapping[str, str] = field(default_factory=dict)
    github_token: str = ""
    now: Now = time.time


# scheme -> "module:Class", imported lazily.
_REGISTRY: dict[str, str] = {
    "none": ".none:NoLedger",
    "file": ".file:FileLedger",
    "redis": ".redis:RedisLedger",
    "rediss": ".redis:RedisLedger",
    "git+file": ".git:GitLedger",
    "git+http": ".git:GitLedger",
    "git+https": ".git:GitLedger",
    "github": ".git:GitLedger",
}

KNOWN_FORMS = "none, auto, file:///path/ledger.json, redis://…, rediss://…, github, " \
    "github://owner/repo, git+file:///path/repo.git, git+https://host/repo.git"


# -- credentials in URL-ish values ---------------------------------------------------------------

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(/*)")
#: Schemes whose `scheme:///path` form has no authority: an `@` there belongs to the path.
_PATH_SCHEMES = ("file", "git+file")
#: Characters that end or break the userinfo part of a URL unless percent-encoded (RFC 3986).
_DELIMITERS = {"/": "%2F", "?": "%3F", "#": "%23", "@": "%40", "[": "%5B", "]": "%5D",
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
                if c in _DELIMITERS or not c.isprintable() or c.isspace()]


def find_userinfo(value: str) -> Userinfo | None:
    """The credentials in a URL-ish value, found permissively, or None.

    Everything between `scheme:` plus its slashes (or the start, for a value without a scheme)
    and the *last* `@` counts: a strict parser stops at the first `/`, `?` or `#` and would leave
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


def printable(text: str, limit: int = 200) -> str:
    """`text` on one line: control characters and line breaks escaped, at most `limit` long."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


#: Schemes whose URL may carry a user name and password.
_CREDENTIAL_SCHEMES = ("redis", "rediss", "git+http", "git+https")


def _spec_problem(spec: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) for credentials or control characters in a ledger URL, or None.

    Never quotes the credentials: the fix shows the URL's structure with placeholders.
    """
    info = find_userinfo(spec)
    found = _SCHEME.match(spec)
    scheme = found.group(1).lower() if found else ""
    if info is not None:
        # Host, port and path, shown in the fix; not the query, which may hold options.
        after = printable(re.split(r"[?#]", spec[info.end + 1 :], maxsplit=1)[0], 80)
        if scheme not in _CREDENTIAL_SCHEMES:
            fix = "Remove the `…@` part (an `@` that belongs to the path is written `%40`)."
            if scheme == "github":
                fix += " The github ledger authenticates with `github-token`."
            return (f"a `{printable(scheme, 20)}` ledger URL takes no user name or password, "
                    "but this one has a `…@` part.", fix)
        bad = info.unencoded()
        if bad:
            password = info.password or ""
            in_user = [c for c in bad if c in info.username]
            where = ("user name and password" if in_user and any(c in password for c in bad)
                     else "user name" if in_user else "password")
            listed = ", ".join(_char_name(c) for c in bad)
            encoded = ", ".join(f"{_char_name(c)} as `{_percent(c)}`" for c in bad)
            placeholder = ("<user>" if info.username else "") + (
                ":<password>" if info.password is not None else "")
            return (
                f"the {where} in the ledger URL is not percent-encoded: it contains {listed}, "
                "which end the credentials part of a URL, so a URL parser would take the rest "
                "of them for the host, port or path (and print them).",
                f"Percent-encode the {where}: write {encoded}, as in "
                f"`{printable(scheme, 20)}://{placeholder}@{after}`."
                + (" If an `@` belongs to the path or query instead, write it there as `%40`."
                   if "@" in bad else ""),
            )
    decoded = urllib.parse.unquote(without_userinfo(spec), errors="replace")
    control = next((c for c in decoded if not c.isprintable()), None)
    if control is not None:
        return (f"the ledger URL contains an encoded control character or line break "
                f"(U+{ord(control):04X}) in its path or options.",
                "Remove it: no ledger path, host or option needs one.")
    return None


def _char_name(char: str) -> str:
    return f"`{char}`" if char.isprintable() and char != " " else f"U+{ord(char):04X}"


def _percent(char: str) -> str:
    return _DELIMITERS.get(char) or urllib.parse.quote(char, safe="")


def scheme_of(spec: str) -> str:
    if spec in ("none", "github", "auto"):
        return spec
    return urllib.parse.urlsplit(without_userinfo(spec)).scheme.lower()


def check_spec(spec: str) -> Problem | None:
    """A syntax check for settings validation (no connection is made)."""
    scheme = scheme_of(spec)
    if scheme != "auto" and scheme not in _REGISTRY:
        return Problem(
            "ledger",
            f"unknown ledger {printable(without_userinfo(spec).split('://', 1)[0], 40)!r}.",
            f"use one of: {KNOWN_FORMS}.",
        )
    problem = _spec_problem(spec)
    return None if problem is None else Problem("ledger", *problem)


def validate_spec(spec: str) -> None:
    """What `check_spec` refuses, as a LedgerError: every backend calls it before parsing."""
    problem = _spec_problem(spec)
    if problem is not None:
        message, fix = problem
        raise LedgerError(message, title="Invalid ledger", hint=fix)


def open_ledger(spec: str, context: LedgerContext | None = None) -> Ledger:
    """Build the backend named by `spec` (not `auto`: the coordinator resolves that first)."""
    context = context or LedgerContext()
    target = _REGISTRY.get(scheme_of(spec))
    if target is None:
        raise LedgerError(f"unknown ledger {printable(scheme_of(spec), 40)!r}",
                          hint=f"Use one of: {KNOWN_FORMS}.")
    validate_spec(spec)
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name, __name__)
    factory: Callable[[str, LedgerContext], Ledger] = getattr(module, class_name)
    return factory(spec, context)


def account_key(api_url: str, user_id: str) -> str:
    """The per-account key: a hash of the API host and user id (never the raw id or the key)."""
    host = (urllib.parse.urlsplit(api_url).hostname or "").lower()
    digest = hashlib.sha256(f"{host}\0{user_id}".encode()).hexdigest()
    return f"sp-{digest[:32]}"
