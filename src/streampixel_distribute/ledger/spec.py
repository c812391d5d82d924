"""The `ledger` value: which backend it names, and whether it can be used as written.

Credentials are found permissively (`urls.find_userinfo`) before any parser sees the value. A
URL whose credentials are not percent-encoded, that carries credentials a backend never takes,
or that hides an encoded control character in its path is refused with a fix that shows the
URL's structure with placeholders, never the secret: at validation (exit 2, `check_spec`) and
again by every backend before it parses (exit 7, `validate_spec`).
"""

from __future__ import annotations

import re
import urllib.parse

from .. import redact
from ..errors import LedgerError, Problem
from ..urls import find_userinfo, percent, scheme, without_userinfo
from . import REGISTRY

KNOWN_FORMS = "none, auto, file:///path/ledger.json, redis://…, rediss://…, github, " \
    "github://owner/repo, git+file:///path/repo.git, git+https://host/repo.git"


def printable(text: str, limit: int = 200) -> str:
    """A value shown in a ledger message: one line, invisible characters escaped."""
    return redact.one_line(text, limit, escape=True)


#: Schemes whose URL may carry a user name and password.
_CREDENTIAL_SCHEMES = ("redis", "rediss", "git+http", "git+https")


def _spec_problem(spec: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) for credentials or control characters in a ledger URL, or None.

    Never quotes the credentials: the fix shows the URL's structure with placeholders.
    """
    info = find_userinfo(spec)
    kind = scheme(spec)
    if info is not None:
        # Host, port and path, shown in the fix; not the query, which may hold options.
        after = printable(re.split(r"[?#]", spec[info.end + 1 :], maxsplit=1)[0], 80)
        if kind not in _CREDENTIAL_SCHEMES:
            fix = "Remove the `…@` part (an `@` that belongs to the path is written `%40`)."
            if kind == "github":
                fix += " The github ledger authenticates with `github-token`."
            return (f"a `{printable(kind, 20)}` ledger URL takes no user name or password, "
                    "but this one has a `…@` part.", fix)
        bad = info.unencoded()
        if bad:
            password = info.password or ""
            in_user = [c for c in bad if c in info.username]
            where = ("user name and password" if in_user and any(c in password for c in bad)
                     else "user name" if in_user else "password")
            listed = ", ".join(_char_name(c) for c in bad)
            encoded = ", ".join(f"{_char_name(c)} as `{percent(c)}`" for c in bad)
            placeholder = ("<user>" if info.username else "") + (
                ":<password>" if info.password is not None else "")
            return (
                f"the {where} in the ledger URL is not percent-encoded: it contains {listed}, "
                "which end the credentials part of a URL, so a URL parser would take the rest "
                "of them for the host, port or path (and print them).",
                f"Percent-encode the {where}: write {encoded}, as in "
                f"`{printable(kind, 20)}://{placeholder}@{after}`."
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


def scheme_of(spec: str) -> str:
    if spec in ("none", "github", "auto"):
        return spec
    return urllib.parse.urlsplit(without_userinfo(spec)).scheme.lower()


def check_spec(spec: str) -> Problem | None:
    """A syntax check for settings validation (no connection is made)."""
    kind = scheme_of(spec)
    if kind != "auto" and kind not in REGISTRY:
        return Problem(
            "ledger",
            f"unknown ledger `{printable(without_userinfo(spec).split('://', 1)[0], 40)}`.",
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


