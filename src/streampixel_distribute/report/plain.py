"""Output formats for CI systems other than GitHub: dotenv (GitLab) and `name=value` files."""

from __future__ import annotations

import re
from collections.abc import Mapping

DOTENV_PREFIX = "STREAMPIXEL_"
# GitLab's artifacts:reports:dotenv: names of ASCII letters, digits and `_`, single-line unquoted
# values, fewer than 20 variables, under 5 KB in all.
DOTENV_MAX_BYTES = 5 * 1024 - 1
DOTENV_MAX_VALUE = 400


def flatten(value: str, limit: int) -> str:
    """One line, no quotes or control characters, at most `limit` characters."""
    value = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())
    value = value.replace('"', "'")
    return value if len(value) <= limit else value[: limit - 1] + "…"


def dotenv_name(output: str) -> str:
    return DOTENV_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", output).upper()


def dotenv(outputs: Mapping[str, str]) -> str:
    lines: list[str] = []
    size = 0
    for name, value in list(outputs.items())[:19]:
        line = f"{dotenv_name(name)}={flatten(value, DOTENV_MAX_VALUE)}"
        if size + len(line.encode()) + 1 > DOTENV_MAX_BYTES:
            break
        lines.append(line)
        size += len(line.encode()) + 1
    return "\n".join(lines) + "\n"


def name_value(outputs: Mapping[str, str]) -> str:
    """`name=value` lines (kebab names kept), for `--output-file`."""
    return "".join(f"{name}={flatten(value, 2000)}\n" for name, value in outputs.items())
