"""Settings from CLI flags, `INPUT_*`, `STREAMPIXEL_*`, the event payload and defaults (DESIGN §3).

`load_settings` resolves every input, checks each with specific semantic checks (placeholders,
pasted URLs, quotes, whitespace, ranges) and then with the JSON Schema in
`schema/inputs.schema.json` as a safety net, and raises one `InvalidInput` listing *every*
problem. Secret values (`api-key`, `github-token`) are never echoed; other values are echoed only
as short, scrubbed, escaped excerpts, because problem text reaches logs and job summaries.

The event payload (`GITHUB_EVENT_PATH`) is treated as hostile: only string ids are taken, they are
validated like any other input, and nothing else from it is trusted or printed unsanitised.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import types
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from . import redact
from .errors import InvalidInput, NotReady, Problem
from .ledger import check_spec

DEFAULT_API_URL = "https://api.streampixel.io/pixelStripeApi"
DOCUMENTED_INTERVAL = 120.0


@dataclass(frozen=True)
class InputSpec:
    """One action input. `default` is the value used when no source gives one ("" = none)."""

    name: str
    default: str
    description: str
    secret: bool = False
    required: bool = False

    @property
    def env_name(self) -> str:
        """The `STREAMPIXEL_*` variable outside GitHub."""
        return "STREAMPIXEL_" + self.name.upper().replace("-", "_")

    @property
    def input_names(self) -> tuple[str, str]:
        """`INPUT_*` as the runner passes it (hyphen kept), then the underscore form."""
        upper = self.name.upper()
        return f"INPUT_{upper}", "INPUT_" + upper.replace("-", "_")

    @property
    def flag(self) -> str:
        return f"--{self.name}"


INPUTS: tuple[InputSpec, ...] = (
    InputSpec("api-key", "", "Streampixel API key (a secret; masked at once, never printed).",
              secret=True, required=True),
    InputSpec("user-id", "", "Streampixel account id (24 hex characters in every known example).",
              required=True),
    InputSpec("project-id", "", "Project id (the dashboard URL `projectdetail/<id>`); may come "
              "from a repository_dispatch webhook payload.", required=True),
    InputSpec("upload-id", "", "The `uploadId` returned by the Upload File API; may come from a "
              "repository_dispatch webhook payload.", required=True),
    InputSpec("api-url", DEFAULT_API_URL,
              "Base URL of the Streampixel API; `https` required except for loopback hosts."),
    InputSpec("ledger", "auto", "Where parallel jobs coordinate the rate limit: auto, none, "
              "file:///…, redis://…, rediss://…, github, github://owner/repo, git+https://…."),
    InputSpec("github-token", "", "Token for the `github` ledger (the action passes "
              "`${{ github.token }}`).", secret=True),
    InputSpec("rate-limit-interval", "120", "Seconds between two write calls of one account."),
    InputSpec("max-wait", "900",
              "Seconds this job may spend waiting for rate-limit slots, in total."),
    InputSpec("timeout", "30", "Seconds per HTTP request."),
    InputSpec("retries", "3", "Extra attempts after transient failures (0 to 10)."),
    InputSpec("dry-run", "false", "Validate, show the slot it would get, call nothing."),
    InputSpec("strict-ids", "true",
              "Require 24-hex ids; `false` accepts any printable id without spaces."),
)
SPECS: Mapping[str, InputSpec] = types.MappingProxyType({s.name: s for s in INPUTS})
ID_INPUTS = ("user-id", "project-id", "upload-id")


@dataclass(frozen=True)
class Settings:
    # repr=False: a Settings printed in a log or a traceback must not carry the secrets.
    api_key: str = field(repr=False)
    user_id: str
    project_id: str
    upload_id: str
    api_url: str
    ledger: str
    github_token: str = field(repr=False)
    rate_limit_interval: float
    max_wait: float
    timeout: float
    retries: int
    dry_run: bool
    strict_ids: bool
    on_github: bool
    sources: Mapping[str, str]
    event_name: str
    #: Notes worth a log line (e.g. "upload-id taken from the build.approved payload").
    warnings: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Resolution: flag > INPUT_* (hyphen, underscore) > STREAMPIXEL_* > event payload > default
# --------------------------------------------------------------------------------------------

_EVENT_FILE_CAP = 16 * 1024 * 1024  # push events can be large; client_payload never is
_EVENT_ID_CAP = 256  # longer payload strings are rejected without further parsing
_OBJECTION_CAP = 300


def _given(value: str | None) -> str | None:
    if value is None:
        return None
    trimmed = value.strip()
    return trimmed or None


def _raw_sources(
    spec: InputSpec, flags: Mapping[str, str | None], environ: Mapping[str, str]
) -> list[tuple[str, str | None]]:
    """Every (source label, raw value) in precedence order, given or not."""
    out: list[tuple[str, str | None]] = [("flag", flags.get(spec.name))]
    out.extend((name, environ.get(name)) for name in dict.fromkeys(spec.input_names))
    out.append((spec.env_name, environ.get(spec.env_name)))
    return out


def secret_candidates(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> list[str]:
    """Every raw value of `api-key` and `github-token` from any source, also trimmed and split.

    Meant for masking *before* validation prints anything. Also includes passwords found in the
    userinfo of `ledger` and `api-url` URLs, which are credentials as well.
    """
    found: list[str] = []
    for name in ("api-key", "github-token"):
        for _, raw in _raw_sources(SPECS[name], flags, environ):
            if raw:
                found.append(raw)
                found.append(raw.strip())
                # A secret pasted with its quotes: the key itself is the part inside them.
                found.append(raw.strip().strip("\"'`").strip())
                # A value pasted with a line break may be printed one line at a time.
                found.extend(part for part in raw.split() if len(part) >= 8)
    for name in ("ledger", "api-url"):
        for _, raw in _raw_sources(SPECS[name], flags, environ):
            if raw:
                found.extend(_url_credentials(raw.strip()))
    return [v for v in dict.fromkeys(found) if v.strip()]


def _url_credentials(value: str) -> list[str]:
    try:
        parts = urllib.parse.urlsplit(value)
        password, username = parts.password, parts.username
    except ValueError:
        return []
    out: list[str] = []
    for cred in (password, username if password is None else None):
        if cred:
            out.extend((cred, urllib.parse.unquote(cred)))
    return out


# --------------------------------------------------------------------------------------------
# Echoing values safely
# --------------------------------------------------------------------------------------------

_EXCERPT_LEN = 48


class _Echo:
    """Turns a user value into a short excerpt that is safe to print."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted(
            {s for s in secrets if len(s) >= 4}, key=len, reverse=True
        )

    def clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, redact.MASK)
        return redact.scrub(text)

    def __call__(self, value: str, limit: int = _EXCERPT_LEN) -> str:
        """`'excerpt'`, repr-escaped, secrets masked, truncated."""
        text = self.clean(value)
        pieces: list[str] = []
        used = 0
        for char in text:
            piece = _escape_char(char)
            if used + len(piece) > limit:
                pieces.append("…")
                break
            pieces.append(piece)
            used += len(piece)
        return "'" + "".join(pieces) + "'"


def _escape_char(char: str) -> str:
    if char in "'\\`":
        return "\\" + char
    if char.isprintable():
        return char
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char)
    if named:
        return named
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _shorten_id(value: str) -> str:
    """The user id is semi-secret: show enough to recognise it, not to reuse it."""
    return value if len(value) <= 8 else f"{value[:4]}…{value[-2:]}"


# --------------------------------------------------------------------------------------------
# Value checks
# --------------------------------------------------------------------------------------------

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")
_HEX24_IN_TEXT = re.compile(r"(?<![0-9a-fA-F])[0-9a-fA-F]{24}(?![0-9a-fA-F])")
_LOOSE_ID_MAX = 128
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
_BOOLEANS = {"true": True, "True": True, "TRUE": True,
             "false": False, "False": False, "FALSE": False}


def _placeholder_kind(value: str) -> str | None:
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


_PLAIN_SPACE = " \t\n\r"


def _first_control(value: str) -> str | None:
    """The first invisible character other than ordinary whitespace (NUL, ESC, U+200B, NBSP…)."""
    for char in value:
        if not char.isprintable() and char not in _PLAIN_SPACE:
            return char
    return None


def _whitespace_kind(value: str) -> str | None:
    if "\n" in value or "\r" in value:
        return "a line break"
    if " " in value or "\t" in value:
        return "a space"
    return None


_PLACEHOLDER_FIX = {
    "expression": "The value is the literal text `${{ … }}`: GitHub did not evaluate it (it only "
    "expands expressions in workflow YAML, not in files, and not inside a secret's value). "
    "Pass it through `with:` or `env:` in the workflow.",
    "variable": "The value is an unexpanded variable reference: the shell or CI system did not "
    "substitute it. Use double quotes in the shell (`\"$VAR\"`) or set the value directly.",
}


class _Checker:
    """Collects problems; `echo` makes excerpts of non-secret values safe to print."""

    # A plain class and NamedTuples below, not dataclasses: each dataclass costs milliseconds of
    # import time, and the CLI's startup matters.
    def __init__(self, echo: _Echo) -> None:
        self.echo = echo
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.sources: dict[str, str] = {}

    def add(self, name: str, message: str, fix: str) -> None:
        self.problems.append(Problem(name, self.echo.clean(message), self.echo.clean(fix)))

    def tail(self, name: str) -> str:
        """The end of a fix: where to correct the value, given where it came from."""
        return _id_fix(name, self.sources.get(name, ""))

    def has(self, name: str) -> bool:
        return any(p.input == name for p in self.problems)

    def show(self, name: str, value: str) -> str:
        if SPECS[name].secret:
            return "the value"
        if name == "user-id":
            if "://" in value:  # keep a pasted URL recognisable, shorten the ids in it
                return self.echo(_HEX24_IN_TEXT.sub(lambda m: _shorten_id(m.group()), value))
            return self.echo(_shorten_id(value))
        return self.echo(value)

    # -- checks shared by every text input ---------------------------------------------------

    def common(self, name: str, value: str, *, words: bool) -> bool:
        """Placeholders, control characters, inner whitespace. True when the value passed."""
        where = _where(name)
        kind = _placeholder_kind(value)
        if kind is not None and (words or kind != "word"):
            self.add(name, f"looks like a placeholder, not a real {where}"
                     + ("." if SPECS[name].secret else f": {self.show(name, value)}."),
                     _PLACEHOLDER_FIX.get(kind, f"Put the real {where} there."
                                          + self.tail(name)))
            return False
        control = _first_control(value)
        if control is not None:
            self.add(name, f"contains an invisible or control character (U+{ord(control):04X})"
                     + ("." if SPECS[name].secret else f": {self.show(name, value)}."),
                     "Copy the value again from its source, or type it; "
                     "remove the invisible character." + self.tail(name))
            return False
        space = _whitespace_kind(value)
        if space is not None:
            detail = "." if SPECS[name].secret else f": {self.show(name, value)}."
            self.add(name, f"contains {space} inside the value{detail}",
                     f"Give only the {where}, on one line without spaces; whitespace around "
                     "it is trimmed, whitespace inside is not." + self.tail(name))
            return False
        return True

    def quotes(self, name: str, value: str, inner_ok: bool) -> bool:
        if value[0] in _QUOTE_CHARS or value[-1] in _QUOTE_CHARS:
            inner = value.strip("".join(_QUOTE_CHARS)).strip()
            shown = "" if SPECS[name].secret else f": {self.show(name, value)}"
            fix = "Remove the quotes or brackets around the value."
            if inner_ok and not SPECS[name].secret and inner:
                fix += f" Use {self.show(name, inner)}."
            self.add(name, f"is wrapped in quotes or brackets{shown}.", fix + self.tail(name))
            return False
        return True

    # -- per-input checks --------------------------------------------------------------------

    def secret_value(self, name: str, value: str) -> None:
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
        if len(value) > _EVENT_ID_CAP:
            self.add(name, f"is longer than {_EVENT_ID_CAP} characters: {self.show(name, value)}.",
                     f"Give only the {_where(name)}." + self.tail(name))
            return value
        if not self.common(name, value, words=True):
            return value
        if "://" in value or value.lower().startswith(("dashboard.", "www.", "api.")):
            found = _HEX24_IN_TEXT.findall(value)
            if found and name != "project-id" and "projectdetail" in value.lower():
                fix = (f"That is a project's dashboard URL: its id `{found[-1].lower()}` "
                       f"belongs in `project-id`; put the {_where(name)} here.")
            elif found:
                suggestion = found[-1].lower()
                shown = _shorten_id(suggestion) if name == "user-id" else suggestion
                fix = f"Use the id from that URL: `{name}: {shown}`."
            else:
                fix = f"Give only the {_where(name)}, not a URL."
            self.add(name, f"is a URL, not an id: {self.show(name, value)}.",
                     fix + self.tail(name))
            return value
        if not self.quotes(name, value, inner_ok=True):
            return value
        if strict:
            if _HEX24.fullmatch(value):
                return value.lower()
            hint = ""
            if re.fullmatch(r"[0-9a-fA-F]+", value):
                hint = f" (it has {len(value)} hex characters; a character was lost or added)"
            self.add(name, f"is not 24 hexadecimal characters{hint}: {self.show(name, value)}.",
                     f"Copy the {_where(name)} again; if your ids really have another format, "
                     "set `strict-ids: false`." + self.tail(name))
            return value
        if len(value) > _LOOSE_ID_MAX:
            self.add(name, f"is {len(value)} characters long (at most {_LOOSE_ID_MAX}).",
                     f"Give only the {_where(name)}." + self.tail(name))
        return value

    def api_url(self, value: str) -> str:  # noqa: PLR0911 - one guard clause per mistake
        name = "api-url"
        if not self.common(name, value, words=False) or not self.quotes(name, value, False):
            return value
        try:
            parts: urllib.parse.SplitResult | None = urllib.parse.urlsplit(value)
            _ = parts.port if parts else None  # raises for a non-numeric or out-of-range port
        except ValueError:
            parts = None
        if parts is None:
            self.add(name, f"is not a valid URL: {self.echo(_hide_userinfo(value))}.",
                     f"Use the base URL, e.g. `{DEFAULT_API_URL}`.")
            return value
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            self.add(name, f"must be an http(s) URL with a host: "
                           f"{self.echo(_hide_userinfo(value))}.",
                     f"Use the base URL, e.g. `{DEFAULT_API_URL}`.")
            return value
        if "@" in parts.netloc:
            # Never echo: the userinfo may hold a password.
            self.add(name, "contains a user name or password (`…@host`); the API takes the key "
                           "in the request body, not in the URL.",
                     "Remove the `user:password@` part and pass the key as `api-key`.")
            return value
        if parts.query or parts.fragment or value.endswith(("?", "#")):
            clean = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
            self.add(name, f"has a query or fragment: {self.echo(value)}.",
                     f"Use the base URL only: {self.echo(clean.rstrip('/'))}.")
            return value
        if scheme == "http" and not is_loopback_host(parts.hostname):
            self.add(name, f"uses plain http for a non-loopback host: {self.echo(value)}; the "
                           "key would travel unencrypted.",
                     "Use https:// (plain http is allowed only for localhost, 127.0.0.0/8 "
                     "and ::1).")
            return value
        base = value.rstrip("/")
        for suffix in ("/projects/distribute-file", "/projects/upload-file"):
            if base.lower().endswith(suffix):
                self.add(name, f"includes the endpoint path `{suffix}`: {self.echo(value)}.",
                         f"Give the base URL: {self.echo(base[: -len(suffix)])}.")
                return value
        return base

    def boolean(self, name: str, value: str) -> bool:
        parsed = _BOOLEANS.get(value)
        if parsed is None:
            self.add(name, f"must be true or false, got {self.show(name, value)}.",
                     "Use exactly `true` or `false` (also accepted: True, TRUE, False, FALSE; "
                     "yes/no/1/0 are not).")
            return False
        return parsed

    def duration(self, name: str, value: str, low: float, high: float, *,
                 low_inclusive: bool, example: str) -> float:
        match = _DURATION.fullmatch(value) if len(value) <= 32 else None
        bound = f"{'at least' if low_inclusive else 'more than'} {low:g} and at most " \
                f"{high:g} seconds"
        if match is None:
            self.add(name, f"is not a duration: {self.show(name, value)}.",
                     f"Use seconds (`{example}`) or a unit: `90s`, `15m`, `1h`; "
                     f"the value must be {bound}.")
            return 0.0
        seconds = float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[
            match.group(2).lower()]
        if seconds > high or seconds < low or (seconds == low and not low_inclusive):
            self.add(name, f"is {seconds:g} seconds; it must be {bound}.",
                     f"Use a value in range, e.g. `{example}`.")
        return seconds

    def retries(self, value: str) -> int:
        if not re.fullmatch(r"[0-9]|10", value):
            self.add("retries", f"must be a whole number from 0 to 10, "
                                f"got {self.show('retries', value)}.",
                     "Use e.g. `3` (extra attempts after transient failures).")
            return 0
        return int(value)

    def ledger(self, value: str) -> None:
        if not self.common("ledger", value, words=False):
            return
        try:
            problem = check_spec(value)
        except ValueError:  # urlsplit rejects e.g. a malformed IPv6 host
            problem = Problem("ledger", f"is not a valid URL: {self.echo(_hide_userinfo(value))}.",
                              "Use one of the documented ledger forms (see the README).")
        if problem is not None:
            self.add("ledger", problem.message, problem.fix)


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1: the only hosts plain http (and the emulator) may reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hide_userinfo(value: str) -> str:
    return re.sub(r"(://)[^/?#]*@", r"\1…@", value)


def _where(name: str) -> str:
    return {"api-key": "API key", "user-id": "user id", "project-id": "project id",
            "upload-id": "upload id", "github-token": "token"}.get(name, name)


def _secret_fix(name: str, source: str = "") -> str:
    """Where to correct a value, named after the source it actually came from."""
    spec = SPECS[name]
    if source == "flag":
        return f" Correct the `{spec.flag}` argument."
    if source.startswith("INPUT_"):
        return (f" Correct the `{name}` input in the workflow (or the secret it reads, usually "
                f"`{spec.env_name}`).")
    if source == spec.env_name:
        return f" Correct the `{spec.env_name}` variable or secret."
    if spec.required or spec.secret:
        return (f" Update where it comes from (the `{spec.env_name}` secret or the "
                f"`{name}` input).")
    return ""


def _id_fix(name: str, source: str) -> str:
    if source == "event":
        return " (This value came from the repository_dispatch payload's " \
               f"`{_PAYLOAD_KEYS.get(name, name)}`; fix the sender or give `{name}` explicitly.)"
    return _secret_fix(name, source)


# --------------------------------------------------------------------------------------------
# The event payload
# --------------------------------------------------------------------------------------------

_PAYLOAD_KEYS = {"project-id": "projectId", "upload-id": "uploadId"}


class _Webhook(NamedTuple):
    """The parts of a Streampixel webhook body (in `client_payload`) this action uses."""

    event: str  # sanitised: a short dotted name or "an unrecognised event"
    ids: Mapping[str, str]  # input name -> raw string from the payload (only strings)
    unusable: Mapping[str, str]  # input name -> why the payload value was not taken
    objection: str  # sanitised, may be ""


class _EventInfo(NamedTuple):
    webhook: _Webhook | None
    why_not: str  # why no webhook body was found (for "missing" messages)
    fork_note: str  # "pull request from a fork" etc., or ""


def _read_event(  # noqa: PLR0911 - each way a payload can be unusable has its own reason
    environ: Mapping[str, str], echo: _Echo
) -> _EventInfo:
    path = environ.get("GITHUB_EVENT_PATH", "")
    if not path:
        return _EventInfo(None, "no event payload (GITHUB_EVENT_PATH is not set)", "")
    try:
        with open(path, "rb") as handle:
            # Bounded read: the size on disk says nothing for a pipe or a device.
            content = handle.read(_EVENT_FILE_CAP + 1)
        if len(content) > _EVENT_FILE_CAP:
            return _EventInfo(None, "the event payload file is too large to read", "")
        data: Any = json.loads(content)
    except (OSError, ValueError, RecursionError):
        return _EventInfo(None, "the event payload file (GITHUB_EVENT_PATH) could not be read "
                          "as JSON", "")
    if not isinstance(data, dict):
        return _EventInfo(None, "the event payload is not a JSON object", "")
    fork_note = _fork_note(data)
    payload = data.get("client_payload")
    if not isinstance(payload, dict):
        return _EventInfo(None, "the event has no repository_dispatch `client_payload`",
                          fork_note)
    event = payload.get("event")
    if not isinstance(event, str) or not ({"projectId", "uploadId"} & payload.keys()):
        return _EventInfo(None, "the repository_dispatch `client_payload` is not a Streampixel "
                          "webhook body (`event`, `projectId`, `uploadId`)", fork_note)
    ids: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for name, key in _PAYLOAD_KEYS.items():
        raw = payload.get(key)
        if isinstance(raw, str) and raw.strip():
            # Cap before any further work; an over-long id is rejected by the id check anyway.
            ids[name] = raw[: _EVENT_ID_CAP * 4].strip()[: _EVENT_ID_CAP + 1]
        elif raw is None or (isinstance(raw, str) and not raw.strip()):
            unusable[name] = f"the payload's `{key}` is empty"
        else:
            unusable[name] = f"the payload's `{key}` is not a string"
    objection = payload.get("objection")
    return _EventInfo(
        _Webhook(
            event=event if re.fullmatch(r"[a-z][a-z0-9_.-]{0,63}", event)
            else "an unrecognised event",
            ids=ids,
            unusable=unusable,
            objection=_sanitise_text(objection, echo) if isinstance(objection, str) else "",
        ),
        "",
        fork_note,
    )


def _sanitise_text(text: str, echo: _Echo) -> str:
    """One line, printable, scrubbed, truncated: safe for logs (no workflow-command injection)."""
    flat = "".join(c if c.isprintable() else " " for c in text[: _OBJECTION_CAP * 4])
    flat = echo.clean(" ".join(flat.split()))
    return flat if len(flat) <= _OBJECTION_CAP else flat[: _OBJECTION_CAP - 1] + "…"


def _fork_note(data: Mapping[str, Any]) -> str:
    """Why secrets may be missing for this event (pull requests from forks get none)."""
    pull = data.get("pull_request")
    if not isinstance(pull, dict):
        return ""
    try:
        head = pull["head"]["repo"]["full_name"]
        base = pull["base"]["repo"]["full_name"]
    except (KeyError, TypeError):
        return ""
    if isinstance(head, str) and isinstance(base, str) and head != base:
        return "This run is for a pull request from a fork, and GitHub gives such runs no secrets."
    return ""


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Settings:
    """Resolve, validate and return the settings, or raise with every problem at once.

    Raises `InvalidInput` (all problems) or `NotReady` (the triggering webhook says the build was
    rejected, so there is nothing to distribute).
    """
    echo = _Echo(secret_candidates(flags, environ))
    checker = _Checker(echo)
    values, sources = _resolve(checker, flags, environ)
    checker.sources.update(sources)
    out = _validate(checker, values)
    if checker.problems:
        order = {spec.name: i for i, spec in enumerate(INPUTS)}
        raise InvalidInput(sorted(checker.problems, key=lambda p: order.get(p.input, 99)))

    if (out["rate_limit_interval"] < DOCUMENTED_INTERVAL
            and urllib.parse.urlsplit(out["api_url"]).hostname == "api.streampixel.io"):
        checker.warnings.append(
            f"rate-limit-interval {out['rate_limit_interval']:g}s is shorter than Streampixel's "
            f"documented {DOCUMENTED_INTERVAL:g}s; expect 429 responses")
    return Settings(
        api_key=values["api-key"],
        user_id=values["user-id"],
        project_id=values["project-id"],
        upload_id=values["upload-id"],
        ledger=values["ledger"],
        github_token=values["github-token"],
        on_github=environ.get("GITHUB_ACTIONS") == "true",
        sources=types.MappingProxyType(sources),
        event_name=_sanitise_text(environ.get("GITHUB_EVENT_NAME", ""), echo)[:64],
        warnings=tuple(checker.warnings),
        **out,
    )


def _resolve(checker: _Checker, flags: Mapping[str, str | None],
             environ: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The first given value of each input, and where it came from; reports missing ones."""
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for spec in INPUTS:
        for label, raw in _raw_sources(spec, flags, environ):
            value = _given(raw)
            if value is not None:
                values[spec.name], sources[spec.name] = value, label
                break

    event = _read_event(environ, checker.echo)
    hook = event.webhook
    if hook is not None:
        for name in _PAYLOAD_KEYS:
            if name not in values and name in hook.ids:
                values[name], sources[name] = hook.ids[name], "event"
                checker.warnings.append(f"{name} taken from the {hook.event} webhook payload")
        if hook.event == "build.rejected" and _payload_concerns_us(hook, sources, values):
            raise _rejected(hook)

    for spec in INPUTS:
        if spec.name in values:
            continue
        if spec.required:
            _missing(checker, spec, flags, environ, event)
        else:
            values[spec.name], sources[spec.name] = spec.default, "default"
    return values, sources


def _validate(checker: _Checker, values: dict[str, str]) -> dict[str, Any]:
    """Check every value; return the parsed fields of `Settings` (ids normalised in `values`)."""
    strict_value = values.get("strict-ids", "true")
    # Until strict-ids itself is fixed, judge the ids by the stricter rule.
    strict = checker.boolean("strict-ids", strict_value) or strict_value not in _BOOLEANS
    out: dict[str, Any] = {"strict_ids": strict}
    for name in ("api-key", "github-token"):
        if values.get(name):
            checker.secret_value(name, values[name])
    for name in ID_INPUTS:
        if name in values:
            values[name] = checker.identifier(name, values[name], strict=strict)
    out["api_url"] = checker.api_url(values["api-url"])
    checker.ledger(values["ledger"])
    out["rate_limit_interval"] = checker.duration(
        "rate-limit-interval", values["rate-limit-interval"], 0, 3600, low_inclusive=False,
        example="120")
    out["max_wait"] = checker.duration("max-wait", values["max-wait"], 0, 6 * 3600,
                                       low_inclusive=True, example="900")
    out["timeout"] = checker.duration("timeout", values["timeout"], 0, 600,
                                      low_inclusive=False, example="30")
    out["retries"] = checker.retries(values["retries"])
    out["dry_run"] = checker.boolean("dry-run", values["dry-run"])
    _cross_checks(checker, values)
    _schema_problems(checker, values, strict_value)
    return out


def _payload_concerns_us(hook: _Webhook, sources: Mapping[str, str],
                         values: Mapping[str, str]) -> bool:
    """A rejected-build payload matters if it supplied an id or names the upload we were given.

    Given another upload-id explicitly (say, a rollback to an older build), the payload is about a
    different build and must not stop this run.
    """
    if "event" in sources.values():
        return True
    payload_upload = hook.ids.get("upload-id")
    given = values.get("upload-id")
    return payload_upload is not None and given is not None \
        and payload_upload.lower() == given.lower()


def _rejected(hook: _Webhook) -> NotReady:
    upload = hook.ids.get("upload-id", "")
    project = hook.ids.get("project-id", "")
    which = f"build {upload.lower()}" if _HEX24.fullmatch(upload) else "the build"
    if _HEX24.fullmatch(project):
        which += f" of project {project.lower()}"
    objection = hook.objection or "no reason given"
    return NotReady(
        f"Streampixel rejected {which} (webhook build.rejected): {objection}",
        title="Build rejected by Streampixel",
        hint="Nothing was distributed. Fix what the objection names, upload a new build, and "
        "distribute it once its `build.approved` webhook arrives.",
        server_message=objection,
    )


def _missing(checker: _Checker, spec: InputSpec, flags: Mapping[str, str | None],
             environ: Mapping[str, str], event: _EventInfo) -> None:
    looked: list[str] = []
    for label, raw in _raw_sources(spec, flags, environ):
        shown = f"`{spec.flag}`" if label == "flag" else f"`{label}`"
        absent = "not given" if label == "flag" else "not set"
        looked.append(f"{shown} ({'empty' if raw is not None else absent})")
    if spec.name in _PAYLOAD_KEYS:
        hook = event.webhook
        if hook is None:
            looked.append(f"the event payload ({event.why_not})")
        else:
            looked.append(f"the {hook.event} payload "
                          f"({hook.unusable.get(spec.name, 'no value')})")
    near = _near_misses(spec, environ)
    message = (f"is empty or missing. Looked at: {', '.join(looked)}. "
               f"The secret is empty or not available to this workflow (pull requests from "
               f"forks and Dependabot get no secrets).")
    if near:
        message += f" Found similar names: {', '.join(near)}."
    fix = (f"Create the `{spec.env_name}` secret (Settings → Secrets and variables → Actions) "
           f"and pass it: `{spec.name}: ${{{{ secrets.{spec.env_name} }}}}`; outside GitHub "
           f"set `{spec.env_name}` or pass `{spec.flag}`.")
    if spec.name in _PAYLOAD_KEYS:
        fix += (" Or trigger the workflow by repository_dispatch with the Streampixel webhook "
                f"body as `client_payload` (it carries `{_PAYLOAD_KEYS[spec.name]}`).")
    if event.fork_note:
        fix += " " + event.fork_note + " Run it on push or workflow_dispatch instead."
    if environ.get("GITHUB_ACTOR", "").startswith("dependabot"):
        fix += " Runs started by Dependabot see only Dependabot secrets: add it there too."
    if near:
        fix += f" Rename to exactly `{spec.env_name}`."
    checker.add(spec.name, message, fix)


def _near_misses(spec: InputSpec, environ: Mapping[str, str]) -> list[str]:
    """Variable names that look like a typo of this input's names (names only, never values)."""
    exact = {spec.env_name, *spec.input_names}
    squashed = spec.name.replace("-", "").upper()
    wanted = {"STREAMPIXEL" + squashed, "INPUT" + squashed, "SP" + squashed}
    found = [
        name for name in environ
        if name not in exact and re.sub(r"[-_]", "", name.upper()) in wanted
    ]
    return [f"`{name}`" for name in sorted(found)[:5] if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name)]


def _cross_checks(checker: _Checker, values: Mapping[str, str]) -> None:
    key = values.get("api-key")
    if not key or checker.has("api-key"):
        return
    for other in ("user-id", "project-id", "upload-id", "github-token"):
        if values.get(other, "").lower() == key.lower():
            checker.add("api-key", f"has the same value as `{other}`; two secrets are probably "
                        "mixed up.",
                        f"Check that `api-key` gets the API key and `{other}` gets the "
                        f"{_where(other)}." + checker.tail("api-key"))
            return


# --------------------------------------------------------------------------------------------
# The JSON Schema (the declarative contract; a safety net behind the checks above)
# --------------------------------------------------------------------------------------------


@functools.cache
def _schema() -> dict[str, Any]:
    from importlib import resources  # noqa: PLC0415 - only needed when validating

    package = resources.files("streampixel_distribute")
    text = package.joinpath("schema/inputs.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator() -> Any:
    # Imported here: jsonschema costs tens of milliseconds at startup and --help needs none of it.
    import jsonschema  # noqa: PLC0415

    return jsonschema.Draft202012Validator(_schema())


def schema_errors(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """(input, expected) for each value the schema rejects; messages never include values."""
    out: list[tuple[str, str]] = []
    for error in _validator().iter_errors(dict(values)):
        if error.validator == "required":
            # validator_value lists all required names; which ones are absent:
            out.extend((n, "a value") for n in error.validator_value if n not in values)
            continue
        path = [p for p in error.absolute_path if isinstance(p, str)]
        name = path[0] if path else "inputs"
        expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
        if expected is None:
            expected = _expected_from_ref(name)
        out.append((name, str(expected or "a valid value")))
    return out


def _expected_from_ref(name: str) -> str | None:
    prop = _schema()["properties"].get(name, {})
    ref = prop.get("$ref", "")
    target = _schema()["$defs"].get(ref.rsplit("/", 1)[-1], {}) if ref else prop
    value = target.get("x-expected")
    return value if isinstance(value, str) else None


def _schema_problems(checker: _Checker, values: Mapping[str, str], strict_value: str) -> None:
    present = {k: v for k, v in values.items() if k in SPECS and v != ""}
    if strict_value not in _BOOLEANS:
        present.pop("strict-ids", None)  # reported already; judge ids by the strict rule
    for name, expected in schema_errors(present):
        if name in SPECS and checker.has(name):
            continue  # the specific check already said it better
        if name in SPECS and SPECS[name].required and name not in present:
            continue  # reported by _missing
        shown = "the value" if name not in SPECS else checker.show(name, present.get(name, ""))
        checker.add(name, f"does not have the expected form (expected {expected}): {shown}.",
                    f"Give {expected}.")
