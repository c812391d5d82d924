"""The GitHub event payload (`GITHUB_EVENT_PATH`), read as data: a repository_dispatch whose
`client_payload` is a Streampixel webhook body may supply `project-id` and `upload-id`.

The payload is treated as hostile: only string ids are taken (capped, and validated later like
any other input), the event name must look like one, and text that may be printed (`objection`)
goes through the one-line sanitiser. What a rejected build means for the run is decided by the
command (commands.py), not here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import NamedTuple

from .. import redact

EVENT_FILE_CAP = 16 * 1024 * 1024  # push events can be large; client_payload never is
ID_CAP = 256  # longer payload strings are rejected without further parsing
OBJECTION_CAP = 300
REJECTED = "build.rejected"
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


class Webhook(NamedTuple):
    """The parts of a Streampixel webhook body (in `client_payload`) this program uses."""

    event: str  # a short dotted name, or "unrecognised event"
    ids: Mapping[str, str]  # payload key (projectId, uploadId) -> raw string (only strings)
    unusable: Mapping[str, str]  # payload key -> why its value was not taken
    objection: str  # sanitised, may be ""


class EventInfo(NamedTuple):
    webhook: Webhook | None
    why_not: str  # why no webhook body was found (for "missing input" messages)
    fork_note: str  # "pull request from a fork" etc., or ""


def read_event(environ: Mapping[str, str], keys: tuple[str, ...]) -> EventInfo:
    """The webhook body in the event payload, if any; `keys` are the payload fields wanted."""
    path = environ.get("GITHUB_EVENT_PATH", "")
    try:
        with open(path, "rb") as handle:
            # Bounded read: the size on disk says nothing for a pipe or a device.
            content = handle.read(EVENT_FILE_CAP + 1)
        if len(content) > EVENT_FILE_CAP:
            return EventInfo(None, "the event payload file is too large to read", "")
        data: object = json.loads(content)
    except (OSError, ValueError, RecursionError):
        return EventInfo(None, "the event payload file (GITHUB_EVENT_PATH) could not be read "
                         "as JSON", "")
    if not isinstance(data, dict):
        return EventInfo(None, "the event payload is not a JSON object", "")
    fork_note = _fork_note(data)
    payload = data.get("client_payload")
    if not isinstance(payload, dict):
        return EventInfo(None, "the event has no repository_dispatch `client_payload`",
                         fork_note)
    event = payload.get("event")
    if not isinstance(event, str) or not ({"projectId", "uploadId"} & payload.keys()):
        return EventInfo(None, "the repository_dispatch `client_payload` is not a Streampixel "
                         "webhook body (`event`, `projectId`, `uploadId`)", fork_note)
    ids: dict[str, str] = {}
    unusable: dict[str, str] = {}
    for key in keys:
        raw = payload.get(key)
        if isinstance(raw, str) and raw.strip():
            # Trimmed whole (capping first could leave only blanks before the id), then capped;
            # an over-long id is rejected by the id check anyway.
            ids[key] = raw.strip()[: ID_CAP + 1]
        elif raw is None or (isinstance(raw, str) and not raw.strip()):
            unusable[key] = f"the payload's `{key}` is empty"
        else:
            unusable[key] = f"the payload's `{key}` is not a string"
    objection = payload.get("objection")
    return EventInfo(
        Webhook(
            event=event if _EVENT_NAME.fullmatch(event) else "unrecognised event",
            ids=ids,
            unusable=unusable,
            objection=redact.one_line(objection, OBJECTION_CAP)
            if isinstance(objection, str) else "",
        ),
        "",
        fork_note,
    )


def _fork_note(data: Mapping[str, object]) -> str:
    """Why secrets may be missing for this event (pull requests from forks get none)."""
    head, base = (_dig(data, "pull_request", side, "repo", "full_name")
                  for side in ("head", "base"))
    if isinstance(head, str) and isinstance(base, str) and head != base:
        return "This run is for a pull request from a fork, and GitHub gives such runs no secrets."
    return ""


def _dig(data: object, *keys: str) -> object:
    """`data[k1][k2]…`, or None where a level is missing or not an object."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data
