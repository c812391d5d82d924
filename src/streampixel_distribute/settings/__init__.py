"""What a run was asked to do: an account, a target, and the command, from every source at once.

`load(command, flags, environ)` resolves each input the command takes (sources.py), fills
`project-id`/`upload-id` from a repository_dispatch webhook payload when the workflow gave none
(event.py), checks every value (checks.py), and raises one `InvalidInput` listing *every*
problem. The table of inputs is inputs.py.

An `Account` is what every command of one Streampixel account shares (key, user, API, ledger,
timing); a `Target` is what one write call is about (a project and an upload). The listener
builds targets from webhook deliveries with `target_for`, through the same checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from .. import redact, urls
from ..errors import InvalidInput
from .checks import Checker
from .inputs import (
    BY_NAME,
    DEFAULT_API_URL,
    DOCUMENTED_INTERVAL,
    INPUTS,
    Command,
    Input,
    Kind,
    inputs_of,
)
from .sources import (
    DEFAULT,
    EVENT,
    Flags,
    first_given,
    missing_problem,
    secret_candidates,
)

if TYPE_CHECKING:
    from .event import Webhook

__all__ = [
    "BY_NAME", "DEFAULT_API_URL", "INPUTS", "Account", "Command", "Input", "Job", "Target",
    "Webhook", "load", "secret_candidates", "target_for",
]


class Account(NamedTuple):
    api_key: str
    user_id: str
    api_url: str
    ledger: str
    github_token: str
    rate_limit_interval: float
    max_wait: float
    timeout: float
    retries: int
    strict_ids: bool

    def __repr__(self) -> str:
        # A record printed in a log or a traceback must not carry the secrets.
        return f"Account(user_id={redact.shorten_id(self.user_id)!r}, api_url={self.api_url!r})"


class Target(NamedTuple):
    project_id: str = ""
    upload_id: str = ""


class Job(NamedTuple):
    command: Command
    account: Account
    target: Target
    dry_run: bool
    #: Input name -> where its value came from (flag, INPUT_*, STREAMPIXEL_*, event, default).
    sources: Mapping[str, str]
    #: Notes worth a log line (e.g. "upload-id taken from the build.approved payload").
    warnings: tuple[str, ...]
    #: The triggering webhook body, if any, and whether it supplied one of the target's ids.
    webhook: Webhook | None
    webhook_supplied: bool


def load(command: Command, flags: Flags, environ: Mapping[str, str]) -> Job:
    """Resolve and check every input `command` takes; raise `InvalidInput` with all problems."""
    for secret in secret_candidates(flags, environ):
        redact.register(secret)  # before any value can reach a message
    specs = inputs_of(command)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for spec in specs:
        found = first_given(spec, flags, environ)
        if found is not None:
            values[spec.name], sources[spec.name] = found
    warnings: list[str] = []
    hook, why_not, fork_note = _fill_from_payload(command, specs, values, sources, environ,
                                                  warnings)
    checker = Checker(sources)
    for spec in specs:
        if spec.name in values:
            continue
        if command in spec.required_for:
            note = (f"the event payload ({why_not})" if hook is None else
                    f"the {hook.event} payload "
                    f"({hook.unusable.get(spec.payload_key, 'no value')})")
            checker.add(spec.name, *missing_problem(spec, flags, environ, note, fork_note))
        else:
            values[spec.name], sources[spec.name] = spec.default, DEFAULT
    parsed = _check(checker, specs, values)
    if checker.problems:
        order = {spec.name: i for i, spec in enumerate(INPUTS)}
        raise InvalidInput(sorted(checker.problems, key=lambda p: order.get(p.input, 99)))
    account = Account(
        api_key=values.get("api-key", ""), user_id=values["user-id"],
        api_url=str(parsed.get("api-url", DEFAULT_API_URL)),
        ledger=values.get("ledger", "none"), github_token=values.get("github-token", ""),
        rate_limit_interval=float(parsed.get("rate-limit-interval", DOCUMENTED_INTERVAL)),
        max_wait=float(parsed.get("max-wait", 0.0)), timeout=float(parsed.get("timeout", 30.0)),
        retries=int(parsed.get("retries", 0)), strict_ids=bool(parsed["strict-ids"]))
    if (account.rate_limit_interval < DOCUMENTED_INTERVAL
            and urls.host(account.api_url) == "api.streampixel.io"):
        warnings.append(
            f"rate-limit-interval {account.rate_limit_interval:g}s is shorter than "
            f"Streampixel's documented {DOCUMENTED_INTERVAL:g}s; expect 429 responses")
    target = Target(project_id=values.get("project-id", ""), upload_id=values.get("upload-id", ""))
    supplied = EVENT in sources.values()
    return Job(command, account, target, bool(parsed.get("dry-run", False)),
               MappingProxyType(sources), tuple(warnings), hook, supplied)


def target_for(account: Account, *, project_id: str, upload_id: str) -> Target:
    """A target from ids that arrived some other way (a webhook delivery), checked alike."""
    checker = Checker({"project-id": EVENT, "upload-id": EVENT})
    target = Target(
        project_id=checker.identifier("project-id", project_id.strip(),
                                      strict=account.strict_ids),
        upload_id=checker.identifier("upload-id", upload_id.strip(), strict=account.strict_ids))
    if checker.problems:
        raise InvalidInput(checker.problems, title="Unusable ids in the webhook")
    return target


def _fill_from_payload(command: Command, specs: tuple[Input, ...], values: dict[str, str],
                       sources: dict[str, str], environ: Mapping[str, str],
                       warnings: list[str]) -> tuple[Webhook | None, str, str]:
    """Take the ids a distribute run was not given from a repository_dispatch webhook body.

    Returns the webhook (or None), why there is none, and a note on forks (or "")."""
    wanted = [s for s in specs if s.payload_key] if command is Command.DISTRIBUTE else []
    if not wanted:
        return None, "not used by this command", ""
    if not environ.get("GITHUB_EVENT_PATH"):
        return None, "no event payload (GITHUB_EVENT_PATH is not set)", ""
    from .event import read_event  # noqa: PLC0415 - only runs with an event payload

    event = read_event(environ, tuple(s.payload_key for s in wanted))
    hook = event.webhook
    if hook is not None:
        for spec in wanted:
            if spec.name not in values and spec.payload_key in hook.ids:
                values[spec.name], sources[spec.name] = hook.ids[spec.payload_key], EVENT
                warnings.append(f"{spec.name} taken from the {hook.event} webhook payload")
    return hook, event.why_not, event.fork_note


def _check(checker: Checker, specs: tuple[Input, ...], values: dict[str, str]
           ) -> dict[str, str | float | int | bool]:
    """Check every value; the parsed ones by name (ids are normalised in `values`)."""
    strict_value = values.get("strict-ids", "true")
    # Until strict-ids itself is fixed, judge the ids by the stricter rule.
    parsed: dict[str, str | float | int | bool] = {
        "strict-ids": checker.flag("strict-ids", strict_value) or strict_value not in (
            "false", "False", "FALSE")}
    for spec in specs:
        value = values.get(spec.name)
        if value is None or spec.name == "strict-ids":
            continue
        if spec.kind is Kind.SECRET:
            if value:
                checker.secret(spec.name, value)
        elif spec.kind is Kind.ID:
            values[spec.name] = checker.identifier(spec.name, value,
                                                   strict=bool(parsed["strict-ids"]))
        elif spec.kind is Kind.API_URL:
            parsed[spec.name] = checker.api_url(value)
        elif spec.kind is Kind.LEDGER:
            checker.ledger(value)
        elif spec.kind is Kind.SECONDS and spec.bounds is not None:
            parsed[spec.name] = checker.seconds(spec.name, value, spec.bounds)
        elif spec.kind is Kind.COUNT:
            parsed[spec.name] = checker.count(spec.name, value)
        elif spec.kind is Kind.FLAG:
            parsed[spec.name] = checker.flag(spec.name, value)
    checker.not_mixed_up(values)
    return parsed
