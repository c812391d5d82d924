"""Output formats for CI systems other than GitHub: dotenv (GitLab) and `name=value` files.

The dotenv report has two kinds of readers that disagree on syntax. GitLab splits each line at
its first `=`, strips both sides and keeps everything else literally (quotes and `#` included),
refuses any line without `=`, and expands `$NAME` in the value later, in the jobs that receive it.
Local runners such as gitlab-ci-local use the `dotenv` npm parser instead: an unquoted value ends
at `#` (a comment), a value wrapped in matching quotes loses them (and a value that only starts
with a quote may swallow the following lines), and `$NAME` is expanded too. So every value is
written in the subset both read identically:

- one line: control characters, line breaks and runs of whitespace become one space, and there is
  no space at either end;
- the characters the parsers treat differently are replaced by look-alikes rather than deleted,
  so a server message stays readable: `#` -> U+FF03 FULLWIDTH NUMBER SIGN, `$` -> U+FF04
  FULLWIDTH DOLLAR SIGN, `"` -> U+201D RIGHT DOUBLE QUOTATION MARK, `'` -> U+2019 RIGHT SINGLE
  QUOTATION MARK, `` ` `` -> U+FF40 FULLWIDTH GRAVE ACCENT;
- at most `DOTENV_MAX_VALUE` characters, a longer value ends in `…`.

GitLab's limits hold for the whole file: names of ASCII letters, digits and `_` only
(`STREAMPIXEL_` + the output name), fewer than 20 variables, fewer than 5 KB counted in bytes
(values are shortened to fit rather than dropped), and no blank line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

DOTENV_PREFIX = "STREAMPIXEL_"
DOTENV_MAX_VARIABLES = 19
DOTENV_MAX_BYTES = 5 * 1024 - 1
DOTENV_MAX_VALUE = 400
ELLIPSIS = "…"

#: Characters one dotenv reader takes literally and another does not, and their look-alikes.
DOTENV_LOOKALIKES = {"#": "\uff03", "$": "\uff04", '"': "\u201d", "'": "\u2019", "`": "\uff40"}
_LOOKALIKE_TABLE = str.maketrans(DOTENV_LOOKALIKES)


def one_line(value: str) -> str:
    """Non-printable characters (controls, line and paragraph breaks, Unicode spaces, lone
    surrogates) become spaces, runs of whitespace one space, and the ends are trimmed."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())


def flatten(value: str, limit: int) -> str:
    """One line, no double quotes or control characters, at most `limit` characters."""
    value = one_line(value).replace('"', "'")
    return value if len(value) <= limit else value[: limit - 1] + ELLIPSIS


def dotenv_value(value: str, limit: int = DOTENV_MAX_VALUE) -> str:
    """`value` as GitLab and the `dotenv` parser both read it back unchanged (module docstring)."""
    value = one_line(value).translate(_LOOKALIKE_TABLE)
    return value if len(value) <= limit else value[: limit - 1] + ELLIPSIS


def _fit_bytes(value: str, room: int) -> str:
    """Shorten `value` to at most `room` UTF-8 bytes, on a character boundary, marked with `…`."""
    if len(value.encode()) <= room:
        return value
    keep = room - len(ELLIPSIS.encode())
    if keep < 0:
        return ""
    return value.encode()[:keep].decode("utf-8", "ignore") + ELLIPSIS


def dotenv_name(output: str) -> str:
    return DOTENV_PREFIX + re.sub(r"[^A-Za-z0-9_]", "_", output).upper()


def dotenv(outputs: Mapping[str, str]) -> str:
    """A GitLab `artifacts:reports:dotenv` file: `STREAMPIXEL_<NAME>=<value>` lines."""
    text = ""
    for name, value in list(outputs.items())[:DOTENV_MAX_VARIABLES]:
        key = dotenv_name(name) + "="
        room = DOTENV_MAX_BYTES - len(text.encode()) - len(key.encode()) - 1  # 1: the newline
        if room < 0:
            break
        text += key + _fit_bytes(dotenv_value(value), room) + "\n"
    return text


def name_value(outputs: Mapping[str, str]) -> str:
    """`name=value` lines (kebab names kept), for `--output-file`."""
    return "".join(f"{name}={flatten(value, 2000)}\n" for name, value in outputs.items())
