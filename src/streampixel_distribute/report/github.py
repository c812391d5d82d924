"""GitHub workflow commands and file commands, through `github-action-utils`.

The library does the escaping (`%0A` for newlines, `%3A`/`%2C` in properties), the UTF-8 handling
of stdout, and the `name<<delimiter` format of `$GITHUB_OUTPUT`. Callers pass scrubbed text only.
"""

from __future__ import annotations

from collections.abc import Mapping

import github_action_utils as gha


def add_mask(value: str) -> None:
    gha.add_mask(value)


def annotate(kind: str, message: str, title: str | None) -> None:
    {"error": gha.error, "warning": gha.warning, "notice": gha.notice}[kind](message, title=title)


def debug(message: str) -> None:
    gha.debug(message)


def start_group(title: str) -> None:
    gha.start_group(title)


def end_group() -> None:
    gha.end_group()


def write_outputs(outputs: Mapping[str, str]) -> None:
    """Append to `$GITHUB_OUTPUT` (the library picks a delimiter absent from the value)."""
    for name, value in outputs.items():
        gha.set_output(name, value)


def append_summary(markdown: str) -> None:
    gha.append_job_summary(markdown)
