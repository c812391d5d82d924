"""GitHub Actions' runner interface: workflow commands on stdout, and the file commands.

Written here rather than through a library (README, "Runner commands"): the two small libraries
we looked at write `::add-mask ::value` (a space before the second `::`), which GitHub's runner
accepts but runners built on nektos/act (Forgejo, Gitea) print as text, secret included.

Commands go out exactly as GitHub documents them and as `@actions/core` writes them:
`::name::data`, or `::name key=value,key=value::data`. Two parsers must read every line alike:
- GitHub's runner: the command info ends at the first `::` after the leading one; the name ends
  at the first space; data unescapes `%25`, `%0D`, `%0A`, properties also `%3A` and `%2C`.
- act: `^::([^ ]+)( (.+))?::([^\r\n]*)$`. Its greedy groups move the split to the *last* `::`,
  so data must not contain `::` (written `:` + U+200B + `:`, which looks the same), and a mask
  value that cannot be written that way is masked piecewise (`mask_commands`).
Both also treat `##[name]` as a command (GitHub anywhere in a line), so plain lines are
neutralised by `plain_line` before they are printed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

ZWSP = "\u200b"
#: A mask value shorter than this would hide ordinary words in the log (redact's minimum too).
MIN_MASK = 4


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    # act keeps a `key=value` pair only if it holds exactly one `=`, and no runner unescapes
    # one: a look-alike keeps the property on both.
    return escape_data(text).replace(":", "%3A").replace(",", "%2C").replace("=", "\uff1d")


def _unsplittable(text: str) -> str:
    """Data act would split elsewhere: `::` anywhere, or `:` right after the opening `::`."""
    text = re.sub(r":(?=:)", f":{ZWSP}", text)
    return ZWSP + text if text.startswith(":") else text


def command(name: str, data: str = "", **properties: str) -> str:
    """One workflow command line (without the newline); empty properties are left out."""
    # GitHub trims the property list (Unicode whitespace), act does not: trim it for both.
    props = ",".join(f"{key}={escape_property(value.strip())}"
                     for key, value in properties.items() if value.strip())
    head = f"::{name} {props}::" if props else f"::{name}::"
    return head + escape_data(_unsplittable(data))


_ACT_SPLIT = re.compile(r"[:%]")


def _act_safe(value: str) -> bool:
    # act unescapes data with a Go map, in random order: `%250A` may become `%0A` and then a
    # line break, so a literal `%0A`/`%0D` would register the wrong mask there.
    return not ("::" in value or value.startswith(":") or "%0A" in value or "%0D" in value)


def mask_commands(value: str) -> list[str]:
    """`::add-mask::` lines that hide `value` on every runner.

    A mask must carry the exact text, so it cannot be rewritten like other data. A line break
    ends a log line anyway, so each line is masked; a line act cannot parse as one command (it
    holds `::`, starts with `:`, or holds a literal `%0A`/`%0D`) is masked piece by piece between
    its `:` and `%` characters instead, which leaves only those visible.
    """
    out: list[str] = []
    for line in value.splitlines():
        pieces = [line] if _act_safe(line) else _ACT_SPLIT.split(line)
        out.extend(f"::add-mask::{escape_data(piece)}" for piece in pieces
                   if len(piece.strip()) >= MIN_MASK)
    return out


def plain_line(text: str) -> str:
    """A log line no runner can mistake for a command (a server message is not ours to run)."""
    text = text.replace("##[", f"##{ZWSP}[")
    stripped = text.lstrip()
    if stripped.startswith("::"):
        cut = len(text) - len(stripped)
        text = f"{text[:cut]}:{ZWSP}{stripped[1:]}"
    return text


def output_records(outputs: Mapping[str, str]) -> str:
    """`$GITHUB_OUTPUT` records in the multi-line form `@actions/core` uses for every value."""
    records = []
    for name, value in outputs.items():
        delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
        while delimiter in value:  # astronomically unlikely; never let a value end the record
            delimiter = f"ghadelimiter_{os.urandom(16).hex()}"
        records.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
    return "".join(records)


def append(path: str, text: str) -> None:
    """Append to a runner file (`$GITHUB_OUTPUT`, `$GITHUB_STEP_SUMMARY`) as UTF-8."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
