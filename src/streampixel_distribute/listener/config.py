"""The listener's configuration: flags > `STREAMPIXEL_*` variables > defaults.

Actions per project come from one JSON document (`--actions`, `STREAMPIXEL_WEBHOOK_ACTIONS`:
inline JSON or a file path):

    {"projects": {"<projectId>": {"on": ["build.approved"], "action": "distribute"}},
     "default": {"on": ["build.approved"], "action": "dispatch", "repository": "owner/repo",
                 "event_type": "streampixel-build"},
     "allow_projects": ["<projectId>", ...]}

Every problem is reported at once, as for the action's own inputs.
"""

from __future__ import annotations

import argparse
import json
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import InvalidInput, Problem
from ..urls import is_loopback_host

ACTIONS = ("distribute", "dispatch")
DEFAULT_EVENTS = ("build.approved",)
DEFAULT_EVENT_TYPE = "streampixel-build"
DEFAULT_RULES: Mapping[str, Any] = {"default": {"on": list(DEFAULT_EVENTS),
                                                "action": "distribute"}}
KNOWN_EVENTS = (
    "build.uploaded", "build.downloading", "build.extracting", "build.saving",
    "build.distributing", "build.approved", "build.rejected", "webhook.test",
)
TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{16,256}")
REPO_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
EVENT_RE = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
DEFAULT_BODY_LIMIT = 64 * 1024
DEFAULT_GITHUB_API = "https://api.github.com"
#: A delivery is a few hundred bytes: a request still arriving after this many seconds is dropped.
DEFAULT_REQUEST_TIMEOUT = 5
#: Pending items beyond which deliveries get 503: at one distribute per 120 s, 33 hours of work.
DEFAULT_MAX_PENDING = 1000
#: Done items are deleted after this many days (their uploadId is then forgotten for dedup).
DEFAULT_RETENTION_DAYS = 30
HEX24 = re.compile(r"[0-9a-fA-F]{24}")


class Number(NamedTuple):
    """A whole-number option of the listener: flag, variable, default, bounds and help."""

    name: str
    env: str
    default: int
    low: int
    high: int
    help: str

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_")


NUMBERS = (
    Number("port", "STREAMPIXEL_LISTEN_PORT", 8788, 0, 65535, "port; 0 picks a free one"),
    Number("max-body", "STREAMPIXEL_LISTEN_MAX_BODY", DEFAULT_BODY_LIMIT, 1024, 1024 * 1024,
           "largest accepted body in bytes"),
    Number("threads", "STREAMPIXEL_LISTEN_THREADS", 8, 1, 64, "HTTP worker threads"),
    Number("connection-limit", "STREAMPIXEL_LISTEN_CONNECTION_LIMIT", 1000, 10, 100_000,
           "open connections at once; beyond it the oldest one not being served is closed "
           "for the new one"),
    Number("request-timeout", "STREAMPIXEL_LISTEN_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT, 1,
           60, "seconds a request may take to arrive whole, headers and body; slower clients "
           "are dropped"),
    Number("max-attempts", "STREAMPIXEL_LISTEN_MAX_ATTEMPTS", 5, 1, 100,
           "attempts per delivery on transient failures"),
    Number("max-pending", "STREAMPIXEL_LISTEN_MAX_PENDING", DEFAULT_MAX_PENDING, 1, 1_000_000,
           "most deliveries waiting to be acted on; more get 503"),
    Number("retention-days", "STREAMPIXEL_LISTEN_RETENTION_DAYS", DEFAULT_RETENTION_DAYS, 1,
           3650, "days a done delivery is kept (and recognised as a duplicate) before it is "
           "deleted"),
)


def normalise_id(value: str) -> str:
    """24-hex ids (MongoDB ObjectIds) name the same object in either case: one spelling."""
    return value.lower() if HEX24.fullmatch(value) else value
SETUP_HINT = (
    "Generate one with `python -c \"import secrets; print(secrets.token_urlsafe(32))\"`, set "
    "it as STREAMPIXEL_WEBHOOK_TOKEN, and paste https://<your-host>/webhook/<token> as the "
    "project's Webhook URL in the Streampixel dashboard."
)


@dataclass(frozen=True)
class Rule:
    """What to do for one project: on which events, which action, where to dispatch."""

    on: tuple[str, ...]
    action: str
    repository: str = ""
    event_type: str = DEFAULT_EVENT_TYPE

    def as_dict(self) -> dict[str, Any]:
        return {"on": list(self.on), "action": self.action, "repository": self.repository,
                "event_type": self.event_type}


@dataclass(frozen=True)
class Rules:
    projects: Mapping[str, Rule] = field(default_factory=dict)
    default: Rule | None = None
    allow_projects: frozenset[str] = frozenset()

    def allowed(self, project_id: str) -> bool:
        return not self.allow_projects or normalise_id(project_id) in self.allow_projects

    def rule_for(self, project_id: str) -> Rule | None:
        return self.projects.get(normalise_id(project_id), self.default)

    def uses(self, action: str) -> bool:
        rules = [*self.projects.values(), *([self.default] if self.default else [])]
        return any(r.action == action for r in rules)


@dataclass(frozen=True)
class ListenerConfig:
    host: str
    port: int
    token: str = field(repr=False)
    queue: Path
    rules: Rules
    body_limit: int
    threads: int
    connection_limit: int
    paused: bool
    ready_file: Path | None
    request_timeout: int
    max_pending: int
    retention_days: int
    github_token: str = field(repr=False)
    github_api_url: str
    max_attempts: int


# -- the action rules ------------------------------------------------------------------------


def _rule(raw: Any, where: str, problems: list[Problem]) -> Rule | None:
    if not isinstance(raw, dict):
        problems.append(Problem(where, "must be a JSON object.",
                                'Write e.g. {"on": ["build.approved"], "action": "distribute"}.'))
        return None
    unknown = sorted(set(raw) - {"on", "action", "repository", "event_type"})
    if unknown:
        problems.append(Problem(where, f"has unknown key(s) {', '.join(unknown)}.",
                                "Use only on, action, repository, event_type."))
    on = raw.get("on", list(DEFAULT_EVENTS))
    if isinstance(on, str):
        on = [on]
    if not isinstance(on, list) or not on or not all(
            isinstance(e, str) and EVENT_RE.fullmatch(e) for e in on):
        problems.append(Problem(f"{where}.on", "must be a non-empty list of event names.",
                                f"Use names such as {', '.join(KNOWN_EVENTS[4:7])}."))
        on = list(DEFAULT_EVENTS)
    action = raw.get("action")
    if action not in ACTIONS:
        problems.append(Problem(f"{where}.action", f"must be one of {', '.join(ACTIONS)}.",
                                "Set `action` to distribute (call distribute-file here) or "
                                "dispatch (start a GitHub workflow by repository_dispatch)."))
        return None
    repository = raw.get("repository", "")
    event_type = raw.get("event_type", DEFAULT_EVENT_TYPE)
    if action == "dispatch":
        if not isinstance(repository, str) or not REPO_RE.fullmatch(repository):
            problems.append(Problem(f"{where}.repository", "must be owner/repo for dispatch.",
                                    "Name the GitHub repository whose workflow reacts to "
                                    "repository_dispatch, e.g. \"acme/game\"."))
        if not isinstance(event_type, str) or not 1 <= len(event_type) <= 100 \
                or not event_type.isprintable():
            problems.append(Problem(f"{where}.event_type", "must be 1 to 100 printable "
                                    "characters.", f"Use e.g. \"{DEFAULT_EVENT_TYPE}\"."))
    return Rule(on=tuple(dict.fromkeys(str(e) for e in on)), action=str(action),
                repository=str(repository) if isinstance(repository, str) else "",
                event_type=str(event_type) if isinstance(event_type, str) else "")


def parse_rules(data: Any, extra_allow: Sequence[str] = ()) -> Rules:
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise InvalidInput([Problem("actions", "must be a JSON object.",
                                    'Start from {"default": {"action": "distribute"}}.')])
    unknown = sorted(set(data) - {"projects", "default", "allow_projects"})
    if unknown:
        problems.append(Problem("actions", f"has unknown key(s) {', '.join(unknown)}.",
                                "Use only projects, default, allow_projects."))
    projects: dict[str, Rule] = {}
    raw_projects = data.get("projects", {})
    if not isinstance(raw_projects, dict):
        problems.append(Problem("actions.projects", "must map project ids to rules.",
                                'Write {"<projectId>": {"action": "distribute"}}.'))
        raw_projects = {}
    for project_id, raw in raw_projects.items():
        rule = _rule(raw, f"actions.projects.{project_id}", problems)
        if rule is not None:
            projects[normalise_id(str(project_id))] = rule
    default = None
    if data.get("default") is not None:
        default = _rule(data["default"], "actions.default", problems)
    allow = data.get("allow_projects", [])
    if not isinstance(allow, list) or not all(isinstance(p, str) and p for p in allow):
        problems.append(Problem("actions.allow_projects", "must be a list of project ids.",
                                "Write [\"<projectId>\", ...], or leave it out to allow all."))
        allow = []
    if problems:
        raise InvalidInput(problems, title="Invalid listener actions")
    return Rules(projects=projects, default=default,
                 allow_projects=frozenset(normalise_id(p) for p in [*allow, *extra_allow]))


def load_rules(value: str | None, extra_allow: Sequence[str] = ()) -> Rules:
    """From inline JSON (starts with `{`), a file path, or the default (distribute on approval)."""
    if not value:
        return parse_rules(DEFAULT_RULES, extra_allow)
    text = value.strip()
    where = "inline JSON"
    if not text.startswith("{"):
        where = text
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput([Problem("actions", f"cannot read the file {where}: "
                                        f"{exc.strerror or exc}.",
                                        "Give a readable JSON file, or the JSON itself.")]) \
                from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidInput([Problem("actions", f"{where} is not valid JSON ({exc}).",
                                    "Fix the JSON syntax.")]) from None
    return parse_rules(data, extra_allow)


# -- everything ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The listener's own flags (the account's come from the table of inputs)."""
    parser.description = ("Receive Streampixel webhooks durably and act on them: distribute the "
                          "build, or start a GitHub workflow by repository_dispatch. See "
                          "docs/listener.md.")
    a = parser.add_argument
    a("--host", help="address to listen on (STREAMPIXEL_LISTEN_HOST; default 127.0.0.1, use "
      "0.0.0.0 in a container)")
    a("--token", help="the secret in the delivery path /webhook/<token> "
      "(STREAMPIXEL_WEBHOOK_TOKEN; prefer the variable)")
    a("--queue", help="SQLite queue file; keep it on a persistent volume (STREAMPIXEL_QUEUE; "
      "default ./streampixel-queue.sqlite3)")
    a("--actions", help="actions per project: JSON, or a path to a JSON file "
      "(STREAMPIXEL_WEBHOOK_ACTIONS; default: distribute on build.approved)")
    a("--allow-projects", help="comma-separated project ids; others get 403 "
      "(STREAMPIXEL_ALLOW_PROJECTS)")
    for number in NUMBERS:
        a(f"--{number.name}", dest=number.attribute,
          help=f"{number.help} ({number.env}; default {number.default})")
    a("--paused", action="store_true", help="queue deliveries but act on none, e.g. during "
      "maintenance; restart without it to work off the backlog (STREAMPIXEL_LISTEN_PAUSED)")
    a("--ready-file", help="write {\"port\", \"pid\"} here once listening "
      "(STREAMPIXEL_LISTEN_READY_FILE)")


def _pick(flag: object, environ: Mapping[str, str], *names: str) -> str | None:
    if flag is not None and str(flag).strip():
        return str(flag).strip()
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return None


def load_config(args: Any, environ: Mapping[str, str]) -> ListenerConfig:
    """Build the config from parsed flags (argparse namespace) and the environment."""
    problems: list[Problem] = []
    token = _pick(args.token, environ, "STREAMPIXEL_WEBHOOK_TOKEN") or ""
    if not token:
        problems.append(Problem("webhook-token", "is not set.", SETUP_HINT))
    elif not TOKEN_RE.fullmatch(token):
        problems.append(Problem("webhook-token", "must be 16 to 256 characters of A-Z, a-z, "
                                "0-9, `-` and `_` (it is part of a URL path).", SETUP_HINT))

    numbers = {number.attribute: _number(number, getattr(args, number.attribute), environ,
                                         problems) for number in NUMBERS}
    paused_raw = _pick("true" if args.paused else None, environ, "STREAMPIXEL_LISTEN_PAUSED")
    paused = (paused_raw or "false").lower() in ("1", "true", "yes")
    host = _pick(args.host, environ, "STREAMPIXEL_LISTEN_HOST") or "127.0.0.1"
    queue = Path(_pick(args.queue, environ, "STREAMPIXEL_QUEUE") or "streampixel-queue.sqlite3")
    allow_raw = _pick(args.allow_projects, environ, "STREAMPIXEL_ALLOW_PROJECTS") or ""
    allow = [p for p in re.split(r"[\s,]+", allow_raw) if p]
    rules = Rules()
    try:
        rules = load_rules(_pick(args.actions, environ, "STREAMPIXEL_WEBHOOK_ACTIONS"), allow)
    except InvalidInput as exc:
        problems.extend(exc.problems)
    github_token = _pick(None, environ, "STREAMPIXEL_GITHUB_TOKEN", "GITHUB_TOKEN") or ""
    github_api = (_pick(None, environ, "GITHUB_API_URL") or DEFAULT_GITHUB_API).rstrip("/")
    if rules.uses("dispatch"):
        if not github_token:
            problems.append(Problem("github-token", "is not set, but an action dispatches to "
                                    "GitHub.", "Set STREAMPIXEL_GITHUB_TOKEN (or GITHUB_TOKEN) "
                                    "to a token that may write the target repository's "
                                    "contents (fine-grained: Contents read and write)."))
        parts = urllib.parse.urlsplit(github_api)
        if parts.scheme != "https" and not is_loopback_host(parts.hostname or ""):
            problems.append(Problem("GITHUB_API_URL", "must be an https URL (http is accepted "
                                    "for loopback only).", "Leave it unset for github.com."))
    if problems:
        raise InvalidInput(problems, title="Invalid listener configuration")
    ready = _pick(args.ready_file, environ, "STREAMPIXEL_LISTEN_READY_FILE")
    return ListenerConfig(
        host=host, port=numbers["port"], token=token, queue=queue, rules=rules,
        body_limit=numbers["max_body"], threads=numbers["threads"],
        connection_limit=numbers["connection_limit"], paused=paused,
        ready_file=Path(ready) if ready else None, request_timeout=numbers["request_timeout"],
        max_pending=numbers["max_pending"], retention_days=numbers["retention_days"],
        github_token=github_token, github_api_url=github_api,
        max_attempts=numbers["max_attempts"],
    )


def _number(number: Number, flag: object, environ: Mapping[str, str],
            problems: list[Problem]) -> int:
    raw = _pick(flag, environ, number.env)
    if raw is None:
        return number.default
    try:
        value = int(raw)
    except ValueError:
        value = number.low - 1
    if not number.low <= value <= number.high:
        problems.append(Problem(number.name, f"must be a whole number from {number.low} to "
                                f"{number.high}.", f"Set `--{number.name}` or {number.env} "
                                "accordingly."))
        return number.default
    return value
