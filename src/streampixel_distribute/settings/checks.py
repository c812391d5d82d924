"""Checks of input values: each kind of mistake people make gets its own message and fix.

Every problem is collected (all are reported at once). Secret values are never echoed ("the
value"); other values only as short, escaped, scrubbed excerpts (`redact.one_line`), because
problem text reaches logs and job summaries.
"""

from __future__ import annotations

import re
import urllib.parse

from .. import redact, urls
from ..errors import Problem
from ..ledger.spec import check_spec
from .inputs import BY_NAME, DEFAULT_API_URL, Bounds
from .sources import fix_from, where

EXCERPT = 48
HEX24 = re.compile(r"[0-9a-fA-F]{24}")
_HEX24_IN_TEXT = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{24}(?![0-9a-fA-F])")
#: A non-strict id: printable, no spaces, at most this long.
LOOSE_ID_MAX = 128
ID_CAP = 256
_KEY_MIN, _KEY_MAX = 8, 1024
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "<": ">", "[": "]", "{": "}", "(": ")",
                "\u201c": "\u201d", "\u2018": "\u2019", "\u00ab": "\u00bb"}
_QUOTE_CHARS = set(_QUOTE_PAIRS) | set(_QUOTE_PAIRS.values()) | {"\u201e", "\u201a"}
_PLACEHOLDER_WORDS = {
    "changeme", "change-me", "change_me", "replaceme", "replace-me", "replace_me",
    "placeholder", "todo", "tbd", "fixme", "dummy", "example", "sample", "secret", "password",
    "apikey", "api-key", "api_key", "key", "token", "userid", "user-id", "user_id", "projectid",
    "project-id", "project_id", "uploadid", "upload-id", "upload_id", "id", "null", "none",
    "nil", "undefined", "redacted", "masked", "insert-key-here", "value",
}
# Unexpanded references: `$API_KEY`, `${API_KEY}`, `%API_KEY%` (cmd), `$env:API_KEY` (PowerShell).
_VARIABLE = re.compile(
    r"\$\{?[A-Z_][A-Z0-9_]*\}?|%[A-Za-z_][A-Za-z0-9_]*%|\$[Ee][Nn][Vv]:[A-Za-z_][A-Za-z0-9_]*"
)
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?|\.[0-9]+)([smhSMH]?)")
BOOLEANS = {"true": True, "True": True, "TRUE": True,
            "false": False, "False": False, "FALSE": False}
_PLACEHOLDER_FIX = {
    "expression": "The value is the literal text `${{ … }}`: GitHub did not evaluate it (it only "
    "expands expressions in workflow YAML, not in files, and not inside a secret's value). "
    "Pass it through `with:` or `env:` in the workflow.",
    "variable": "The value is an unexpanded variable reference: the shell or CI system did not "
    "substitute it. Use double quotes in the shell (`\"$VAR\"`) or set the value directly.",
}


def placeholder_kind(value: str) -> str | None:
    """Why `value` looks like a template left unfilled, or None."""
    if "${{" in value:
        return "expression"
    if _VARIABLE.fullmatch(value):
        return "variable"
    inner = value
    while len(inner) >= 2 and _QUOTE_PAIRS.get(inner[0]) == inner[-1]:
        inner = inner[1:-1].strip()
    lowered = inner.lower()
    if (
        lowered in _PLACEHOLDER_WORDS
        or re.fullmatch(r"x{3,}|\*{3,}|\.{3,}|…+|_+|-+|0+", lowered)
        or re.match(r"your[-_ ]?[a-z]", lowered)
        or "..." in inner
        or "…" in inner
        or re.fullmatch(r"<[^<>]*(your|key|id|token|here|secret)[^<>]*>", value.lower())
        or (value[0] in "[{<" and re.fullmatch(r"[A-Z]+(_[A-Z0-9]+)+", inner))
    ):
        return "word"
    if len(inner) >= 8 and len(set(inner.lower())) == 1 and inner.isprintable():
        return "word"
    return None


def _first_control(value: str) -> str | None:
    """The first invisible character other than ordinary whitespace (NUL, ESC, U+200B, NBSP…)."""
    return next((c for c in value if not c.isprintable() and c not in " \t\n\r"), None)


def _whitespace_kind(value: str) -> str | None:
    if "\n" in value or "\r" in value:
        return "a line break"
    if " " in value or "\t" in value:
        return "a space"
    return None


def echo(value: str, limit: int = EXCERPT) -> str:
    """`'excerpt'` of a non-secret value: escaped, scrubbed, truncated."""
    return "'" + redact.one_line(value, limit, escape=True) + "'"


class Checker:
    """Collects problems about values; `sources` says where each value came from."""

    def __init__(self, sources: dict[str, str]) -> None:
        self.sources = sources
        self.problems: list[Problem] = []

    def add(self, name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(name, redact.scrub(message), redact.scrub(fix)))

    def has(self, name: str) -> bool:
        return any(p.input == name for p in self.problems)

    def tail(self, name: str) -> str:
        return fix_from(BY_NAME[name], self.sources.get(name, ""))

    def show(self, name: str, value: str) -> str:
        if BY_NAME[name].secret:
            return "the value"
        if name == "user-id":
            if "://" in value:  # keep a pasted URL recognisable, shorten the ids in it
                return echo(_HEX24_IN_TEXT.sub(lambda m: redact.shorten_id(m.group()), value))
            return echo(redact.shorten_id(value))
        return echo(value)

    def _shown(self, name: str, value: str) -> str:
        """`.` for a secret, `: 'excerpt'.` otherwise: the end of a message about a value."""
        return "." if BY_NAME[name].secret else f": {self.show(name, value)}."

    # -- checks shared by every text input ---------------------------------------------------

    def common(self, name: str, value: str, *, words: bool) -> bool:
        """Placeholders, control characters, inner whitespace. True when the value passed."""
        what = where(name)
        kind = placeholder_kind(value)
        if kind is not None and (words or kind != "word"):
            self.add(name, f"looks like a placeholder, not a real {what}"
                     + self._shown(name, value),
                     _PLACEHOLDER_FIX.get(kind, f"Put the real {what} there." + self.tail(name)))
            return False
        control = _first_control(value)
        if control is not None:
            self.add(name, f"contains an invisible or control character (U+{ord(control):04X})"
                     + self._shown(name, value),
                     "Copy the value again from its source, or type it; "
                     "remove the invisible character." + self.tail(name))
            return False
        space = _whitespace_kind(value)
        if space is not None:
            self.add(name, f"contains {space} inside the value{self._shown(name, value)}",
                     f"Give only the {what}, on one line without spaces; whitespace around "
                     "it is trimmed, whitespace inside is not." + self.tail(name))
            return False
        return True

    def quotes(self, name: str, value: str, *, inner_ok: bool) -> bool:
        if value[0] in _QUOTE_CHARS or value[-1] in _QUOTE_CHARS:
            inner = value.strip("".join(_QUOTE_CHARS)).strip()
            secret = BY_NAME[name].secret
            shown = "" if secret else f": {self.show(name, value)}"
            fix = "Remove the quotes or brackets around the value."
            if inner_ok and not secret and inner:
                fix += f" Use {self.show(name, inner)}."
            self.add(name, f"is wrapped in quotes or brackets{shown}.", fix + self.tail(name))
            return False
        return True

    # -- per kind ------------------------------------------------------------------------------

    def secret(self, name: str, value: str) -> None:
        if not self.common(name, value, words=name == "api-key"):
            return
        if not self.quotes(name, value, inner_ok=False):
            return
        if name == "api-key" and len(value) < _KEY_MIN:
            self.add(name, f"is only {len(value)} characters long; an API key is longer.",
                     "Copy the whole key." + self.tail(name))
        elif len(value) > _KEY_MAX:
            self.add(name, f"is {len(value)} characters long, more than any key.",
                     "Give only the key." + self.tail(name))

    def identifier(  # noqa: PLR0911 - one guard clause per kind of mistake reads best
        self, name: str, value: str, *, strict: bool
    ) -> str:
        """Check an id; return it normalised (strict hex ids are lower-cased)."""
        what = where(name)
        if len(value) > ID_CAP:
            self.add(name, f"is longer than {ID_CAP} characters: {self.show(name, value)}.",
                     f"Give only the {what}." + self.tail(name))
            return value
        if not self.common(name, value, words=True):
            return value
        if "://" in value or value.lower().startswith(("dashboard.", "www.", "api.")):
            self.add(name, f"is a URL, not an id: {self.show(name, value)}.",
                     _url_instead_of_id(name, value) + self.tail(name))
            return value
        if not self.quotes(name, value, inner_ok=True):
            return value
        if strict:
            if HEX24.fullmatch(value):
                return value.lower()
            hint = ""
            if re.fullmatch(r"[0-9a-fA-F]+", value):
                hint = f" (it has {len(value)} hex characters; a character was lost or added)"
            self.add(name, f"is not 24 hexadecimal characters{hint}: {self.show(name, value)}.",
                     f"Copy the {what} again; if your ids really have another format, "
                     "set `strict-ids: false`." + self.tail(name))
            return value
        if len(value) > LOOSE_ID_MAX:
            self.add(name, f"is {len(value)} characters long (at most {LOOSE_ID_MAX}).",
                     f"Give only the {what}." + self.tail(name))
        return value

    def api_url(self, value: str) -> str:  # noqa: PLR0911 - one guard clause per mistake
        name = "api-url"
        if not self.common(name, value, words=False) or not self.quotes(name, value,
                                                                        inner_ok=False):
            return value
        if urls.find_userinfo(value) is not None:
            # Never echo: the userinfo may hold a password (found before any parser splits it).
            self.add(name, "contains a user name or password (`…@host`); the API takes the key "
                           "in the request body, not in the URL.",
                     "Remove the `user:password@` part and pass the key as `api-key`. (An `@` "
                     "that belongs to the path is written `%40`.)")
            return value
        try:
            parts = urllib.parse.urlsplit(value)
            _ = parts.port  # raises for a non-numeric or out-of-range port
        except ValueError:
            self.add(name, f"is not a valid URL: {echo(value)}.",
                     f"Use the base URL, e.g. `{DEFAULT_API_URL}`.")
            return value
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            self.add(name, f"must be an http(s) URL with a host: {echo(value)}.",
                     f"Use the base URL, e.g. `{DEFAULT_API_URL}`.")
            return value
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            clean = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            self.add(name, f"has a query or fragment: {echo(value)}.",
                     f"Use the base URL only: {echo(clean.rstrip('/'))}.")
            return value
        if scheme == "http" and not urls.is_loopback_host(parts.hostname):
            self.add(name, f"uses plain http for a non-loopback host: {echo(value)}; the "
                           "key would travel unencrypted.",
                     "Use https:// (plain http is allowed only for localhost, 127.0.0.0/8 "
                     "and ::1).")
            return value
        base = value.rstrip("/")
        for suffix in ("/projects/distribute-file", "/projects/upload-file"):
            if base.lower().endswith(suffix):
                self.add(name, f"includes the endpoint path `{suffix}`: {echo(value)}.",
                         f"Give the base URL: {echo(base[: -len(suffix)])}.")
                return value
        return base

    def flag(self, name: str, value: str) -> bool:
        parsed = BOOLEANS.get(value)
        if parsed is None:
            self.add(name, f"must be true or false, got {self.show(name, value)}.",
                     "Use exactly `true` or `false` (also accepted: True, TRUE, False, FALSE; "
                     "yes/no/1/0 are not).")
            return False
        return parsed

    def seconds(self, name: str, value: str, bounds: Bounds) -> float:
        match = _DURATION.fullmatch(value) if len(value) <= 32 else None
        low, high = bounds.low, bounds.high
        rule = (f"{'at least' if bounds.low_inclusive else 'more than'} {low:g} and at most "
                f"{high:g} seconds")
        if match is None:
            self.add(name, f"is not a duration: {self.show(name, value)}.",
                     f"Use seconds (`{bounds.example}`) or a unit: `90s`, `15m`, `1h`; "
                     f"the value must be {rule}.")
            return 0.0
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[
            match.group(2).lower()]
        if seconds > high or seconds < low or (seconds == low and not bounds.low_inclusive):
            self.add(name, f"is {seconds:g} seconds; it must be {rule}.",
                     f"Use a value in range, e.g. `{bounds.example}`.")
        return seconds

    def count(self, name: str, value: str) -> int:
        if not re.fullmatch(r"[0-9]|10", value):
            self.add(name, f"must be a whole number from 0 to 10, got {self.show(name, value)}.",
                     "Use e.g. `3` (extra attempts after transient failures).")
            return 0
        return int(value)

    def file_url(self, name: str, value: str) -> list[str]:
        """Check a build's download link; warnings about it (the value is never shown)."""
        if not self.common(name, value, words=False) or not self.quotes(name, value,
                                                                        inner_ok=False):
            return []
        problem = _file_url_problem(value)
        if problem is not None:
            message, fix = problem
            self.add(name, message, fix + self.tail(name))
            return []
        if "?" in value:
            return ["file-url has a query string (a presigned link?). Streampixel's docs both "
                    "list presigned S3 links as supported and say a link must have no query "
                    "string; if the upload is refused with HTTP 400, use a link without one."]
        return []

    def command(self, value: str, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            self.add("command", f"must be one of {', '.join(allowed)}, got {echo(value)}.",
                     "Use `distribute` (the default), `upload` or `reserve`.")

    def ledger(self, value: str) -> None:
        if not self.common("ledger", value, words=False):
            return
        try:
            problem = check_spec(value)
        except ValueError:  # urlsplit rejects e.g. a malformed IPv6 host
            problem = Problem("ledger", f"is not a valid URL: {echo(urls.hide_userinfo(value))}.",
                              "Use one of the documented ledger forms (see the README).")
        if problem is not None:
            self.add("ledger", problem.message, problem.fix)

    def not_mixed_up(self, values: dict[str, str]) -> None:
        """A key given as another input too: two secrets were probably swapped."""
        key = values.get("api-key")
        if not key or self.has("api-key"):
            return
        for other in ("user-id", "project-id", "upload-id", "github-token"):
            if values.get(other, "").lower() == key.lower():
                self.add("api-key", f"has the same value as `{other}`; two secrets are probably "
                         "mixed up.",
                         f"Check that `api-key` gets the API key and `{other}` gets the "
                         f"{where(other)}." + self.tail("api-key"))
                return


_DIRECT_ZIP = ("Give a direct https link to the packaged build's .zip that downloads without a "
               "login page, redirect or download button: a (presigned) link to an object in S3, "
               "Google Cloud Storage, R2, DigitalOcean Spaces or your own web server.")
#: Hosts of pages that show a file rather than serve it, by what they are called.
_SHARING = (("drive.google.com", "Google Drive"), ("docs.google.com", "Google Docs"),
            ("dropbox.com", "Dropbox sharing"), ("onedrive.live.com", "OneDrive"),
            ("1drv.ms", "OneDrive"), ("sharepoint.com", "SharePoint"),
            ("wetransfer.com", "WeTransfer"), ("we.tl", "WeTransfer"), ("mega.nz", "MEGA"),
            ("box.com", "Box"), ("mediafire.com", "MediaFire"))


def _file_url_problem(value: str) -> tuple[str, str] | None:
    """(what is wrong, the fix) with a build's download link, or None. Never quotes the link:
    it may be presigned; the host alone is shown."""
    try:
        parts = urllib.parse.urlsplit(value)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "is not a valid URL.", _DIRECT_ZIP
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not host:
        return "is not an https:// link.", _DIRECT_ZIP
    if scheme == "http" and not urls.is_loopback_host(host):
        return (f"uses plain http ({host}); Streampixel downloads builds over https.",
                "Use the https:// form of the link.")
    share = _sharing_page(host, parts.path, parts.query)
    if share:
        return f"is a {share} page ({host}), not a direct download.", _DIRECT_ZIP
    if not parts.path.lower().endswith(".zip"):
        return (f"does not name a .zip file (the link's path must end in .zip; host {host}).",
                _DIRECT_ZIP)
    return None


def _sharing_page(host: str, path: str, query: str) -> str:
    """What kind of sharing page a link points at, or ""."""
    for domain, kind in _SHARING:
        if host == domain or host.endswith("." + domain):
            if domain == "dropbox.com" and "dl=0" in query:
                return "Dropbox sharing (`?dl=0`)"
            return kind
    if host in ("github.com", "gitlab.com") and "/blob/" in path:
        return f"{host} file view"
    return ""


def _url_instead_of_id(name: str, value: str) -> str:
    found = _HEX24_IN_TEXT.findall(value)
    what = where(name)
    if found and name != "project-id" and "projectdetail" in value.lower():
        return (f"That is a project's dashboard URL: its id `{found[-1].lower()}` belongs in "
                f"`project-id`; put the {what} here.")
    if found:
        suggestion = found[-1].lower()
        shown = redact.shorten_id(suggestion) if name == "user-id" else suggestion
        return f"Use the id from that URL: `{name}: {shown}`."
    return f"Give only the {what}, not a URL."
