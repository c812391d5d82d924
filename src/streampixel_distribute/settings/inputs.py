"""The one table of inputs: each input's name, default, description, kind, and where it applies.

action.yml's `inputs:`, the CLI flags, the `STREAMPIXEL_*` names and the README's input table are
all made from this table (`python scripts/sync_inputs.py` rewrites action.yml and the README) and
tests/test_action_contract.py fails on any drift: name, default, required-ness, description.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

DEFAULT_API_URL = "https://api.streampixel.io/pixelStripeApi"
#: Streampixel's documented limit: one write call per 120 s per account.
DOCUMENTED_INTERVAL = 120.0


class Command(StrEnum):
    """What a run does with the account. Every write command goes through the same slots."""

    DISTRIBUTE = "distribute"
    UPLOAD = "upload"
    RESERVE = "reserve"
    TEST_WEBHOOK = "test-webhook"
    LISTEN = "listen"
    QUEUE = "queue"


#: The commands the action runs (its `command` input); the first is the default.
ACTION_COMMANDS = (Command.DISTRIBUTE, Command.UPLOAD, Command.RESERVE)


class Kind(StrEnum):
    """How an input's value is checked."""

    SECRET = "secret"  # noqa: S105 - the name of a kind of input, not a password
    ID = "id"
    API_URL = "api-url"
    LEDGER = "ledger"
    SECONDS = "seconds"
    COUNT = "count"
    FLAG = "flag"
    FILE_URL = "file-url"
    COMMAND = "command"


class Bounds(NamedTuple):
    low: float
    high: float
    low_inclusive: bool
    example: str


class Input(NamedTuple):
    name: str
    description: str
    kind: Kind
    default: str = ""  # "" = no default
    #: The commands that need a value; a command outside `used_by` ignores the input.
    required_for: frozenset[Command] = frozenset()
    used_by: frozenset[Command] = frozenset(Command)
    #: The field of a repository_dispatch webhook payload that may supply the value.
    payload_key: str = ""
    bounds: Bounds | None = None
    #: What action.yml passes when the workflow gives nothing (`${{ github.token }}`).
    action_default: str = ""

    @property
    def secret(self) -> bool:
        """Never printed, masked first. A file URL may be presigned: a credential too."""
        return self.kind in (Kind.SECRET, Kind.FILE_URL)

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

    @property
    def attribute(self) -> str:
        return self.name.replace("-", "_")

    @property
    def action_required(self) -> bool:
        """action.yml's `required`: needed by every command of the action, and not fillable
        from a webhook payload."""
        return set(ACTION_COMMANDS) <= self.required_for and not self.payload_key


_ALL = frozenset(Command)
_WRITES = frozenset({Command.DISTRIBUTE, Command.UPLOAD})
_CALLS = _WRITES | {Command.TEST_WEBHOOK, Command.LISTEN}  # commands that call the API
_SLOTS = _WRITES | {Command.RESERVE, Command.LISTEN}  # commands that take rate-limit slots
_LEDGER = _SLOTS | {Command.QUEUE}  # commands that read the ledger
_PROJECT = _WRITES | {Command.TEST_WEBHOOK}
_ONE = frozenset[Command]

INPUTS: tuple[Input, ...] = (
    Input("command", "What to do in the account's next slot: distribute (an uploaded build), "
          "upload (a build's .zip by URL) or reserve (wait for the slot, for another tool's "
          "write call).", Kind.COMMAND, default=Command.DISTRIBUTE.value,
          used_by=frozenset(ACTION_COMMANDS)),
    Input("api-key", "Streampixel API key (a secret; masked at once, never printed).",
          Kind.SECRET, required_for=_CALLS, used_by=_CALLS),
    Input("user-id", "Streampixel account id (24 hex characters in every known example).",
          Kind.ID, required_for=_ALL),
    Input("project-id", "Project id (the dashboard URL `projectdetail/<id>`); may come from a "
          "repository_dispatch webhook payload.", Kind.ID,
          required_for=_PROJECT, used_by=_PROJECT, payload_key="projectId"),
    Input("upload-id", "distribute: the `uploadId` returned by the Upload File API; may come "
          "from a repository_dispatch webhook payload.", Kind.ID,
          required_for=_ONE({Command.DISTRIBUTE}), used_by=_ONE({Command.DISTRIBUTE}),
          payload_key="uploadId"),
    Input("file-url", "upload: the https link to the build's .zip (a secret when presigned: "
          "masked, never printed).", Kind.FILE_URL,
          required_for=_ONE({Command.UPLOAD}), used_by=_ONE({Command.UPLOAD})),
    Input("auto-release", "upload: distribute the build as soon as Streampixel approves it; "
          "`false` holds it until a distribute call.", Kind.FLAG, default="true",
          used_by=_ONE({Command.UPLOAD})),
    Input("api-url", "Base URL of the Streampixel API; `https` required except for loopback "
          "hosts.", Kind.API_URL, default=DEFAULT_API_URL),
    Input("ledger", "Where parallel jobs coordinate the rate limit: auto, none, file:///…, "
          "redis://…, rediss://…, github, github://owner/repo, git+https://….", Kind.LEDGER,
          default="auto", used_by=_LEDGER),
    Input("github-token", "Token for the `github` ledger (needs contents write on the ledger "
          "repository).", Kind.SECRET, used_by=_LEDGER, action_default="${{ github.token }}"),
    Input("rate-limit-interval", "Seconds between two write calls of one account.",
          Kind.SECONDS, default="120", used_by=_LEDGER, bounds=Bounds(0, 3600, False, "120")),
    Input("max-wait", "Seconds this job may spend waiting for rate-limit slots, in total.",
          Kind.SECONDS, default="900", used_by=_SLOTS, bounds=Bounds(0, 6 * 3600, True, "900")),
    Input("timeout", "Seconds per HTTP request.", Kind.SECONDS, default="30",
          used_by=_CALLS, bounds=Bounds(0, 600, False, "30")),
    Input("retries", "Extra attempts after transient failures (0 to 10).", Kind.COUNT,
          default="3", used_by=_WRITES | {Command.LISTEN}),
    Input("dry-run", "Validate, show the slot it would get, call nothing.", Kind.FLAG,
          default="false", used_by=frozenset(ACTION_COMMANDS)),
    Input("strict-ids", "Require 24-hex ids; `false` accepts any printable id without spaces.",
          Kind.FLAG, default="true"),
)
BY_NAME: dict[str, Input] = {spec.name: spec for spec in INPUTS}


def inputs_of(command: Command) -> tuple[Input, ...]:
    return tuple(spec for spec in INPUTS if command in spec.used_by)
