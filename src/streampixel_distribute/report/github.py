"""GitHub workflow commands and file commands, through `github-action-utils`.

The library does the escaping (`%0A` for newlines, `%3A`/`%2C` in properties), the UTF-8 handling
of stdout, and the `name<<delimiter` format of `$GITHUB_OUTPUT`. Callers pass scrubbed text only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

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


@contextmanager
def _pointing(variable: str, path: str) -> Iterator[None]:
    """The library reads the file's path from os.environ; the caller may hold another mapping."""
    saved = os.environ.get(variable)
    os.environ[variable] = path
    try:
        yield
    finally:
        if saved is None:
            del os.environ[variable]
        else:
            os.environ[variable] = saved


def write_outputs(path: str, outputs: Mapping[str, str]) -> None:
    """Append to `$GITHUB_OUTPUT` (the library picks a delimiter absent from the value)."""
    with _pointing("GITHUB_OUTPUT", path):
        for name, value in outputs.items():
            gha.set_output(name, value)


def append_summary(path: str, markdown: str) -> None:
    with _pointing("GITHUB_STEP_SUMMARY", path):
        gha.append_job_summary(markdown)
