"""How the two runner implementations read workflow commands, for checking everything we print.

`github_parse` is a port of actions/runner's `ActionCommand.TryParseV2` (a line is a command if,
after trimming leading whitespace, it starts with `::`; the command info ends at the next `::`;
the name ends at the first space) plus its legacy `TryParse` (`##[name props]data` anywhere in
a line), which the runner tries when V2 fails. `act_parse` is nektos/act's `commandPatternGA`
and `commandPatternADO` (pkg/runner/command.go), which Forgejo's and Gitea's runners share;
Python's `re` and Go's RE2 agree on these patterns' leftmost-first greedy matches.

`command_problems(text)` lists every line that is not read the same way by both, that act would
print verbatim although GitHub executes it, or that either treats as a command we never write.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

# The runner's registered commands (ActionCommandManager plus stop-commands).
GITHUB_COMMANDS = frozenset({
    "set-env", "set-output", "save-state", "add-mask", "add-path", "add-matcher",
    "remove-matcher", "debug", "warning", "error", "notice", "group", "endgroup", "echo",
    "stop-commands",
})
#: What our program may write.
OURS = frozenset({"add-mask", "error", "warning", "notice", "group", "endgroup"})

_ACT_GA = re.compile(r"^::([^ ]+)( (.+))?::([^\r\n]*)[\r\n]+$")
_ACT_ADO = re.compile(r"^##\[([^ ]+)( (.+))?]([^\r\n]*)[\r\n]+$")


@dataclass(frozen=True)
class Command:
    name: str
    properties: tuple[tuple[str, str], ...]
    data: str


def _is_cs_whitespace(char: str) -> bool:
    """.NET's Char.IsWhiteSpace, which String.Trim uses (Python's isspace differs)."""
    return char in "\t\n\v\f\r \x85\xa0" or unicodedata.category(char) in ("Zs", "Zl", "Zp")


def _trim_start(text: str) -> str:
    index = 0
    while index < len(text) and _is_cs_whitespace(text[index]):
        index += 1
    return text[index:]


def _trim(text: str) -> str:
    return _trim_start(_trim_start(text)[::-1])[::-1]


def _unescape(text: str, mapping: tuple[tuple[str, str], ...]) -> str:
    for escaped, plain in mapping:
        text = text.replace(escaped, plain)
    return text


_DATA = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_LEGACY = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))


def github_parse(line: str) -> Command | None:
    """actions/runner: TryParseV2, then the legacy TryParse, as ActionCommandManager does."""
    message = _trim_start(line)
    if message.startswith("::"):
        end = message.find("::", 2)
        if end >= 0:
            info = message[2:end]
            space = info.find(" ")
            name = info if space < 0 else info[:space]
            if name in GITHUB_COMMANDS:
                props: dict[str, str] = {}
                if space > 0:
                    for pair in filter(None, _trim(info[space + 1:]).split(",")):
                        parts = [p for p in pair.split("=", 1) if p]
                        if len(parts) == 2:
                            props[parts[0]] = _unescape(parts[1], _PROPERTY)
                return Command(name, tuple(sorted(props.items())),
                               _unescape(message[end + 2:], _DATA))
    start = line.find("##[")
    if start >= 0:
        close = line.find("]", start)
        if close >= 0:
            info = line[start + 3:close]
            name = info.split(" ", 1)[0]
            if name in GITHUB_COMMANDS:
                return Command(name, (), _unescape(line[close + 1:], _LEGACY))
    return None


def act_parse(line: str) -> Command | None:
    """nektos/act: the GitHub pattern, then the Azure DevOps one, on the raw line."""
    for pattern, separator in ((_ACT_GA, ","), (_ACT_ADO, ";")):
        match = pattern.match(line + "\n")
        if match:
            props = {}
            for pair in (match.group(3) or "").split(separator):
                kv = pair.split("=")
                if len(kv) == 2:
                    props[kv[0]] = _unescape(kv[1], _PROPERTY)
            return Command(match.group(1), tuple(sorted(props.items())),
                           _unescape(match.group(4), _DATA))
    return None


def act_order_matters(data: str) -> bool:
    """act unescapes data through a Go map, in random order: do two orders disagree here?"""
    return _unescape(data, _DATA) != _unescape(data, tuple(reversed(_DATA)))


def command_problems(text: str) -> list[str]:
    problems = []
    for line in text.splitlines():
        ours, act = github_parse(line), act_parse(line)
        if ours is None and act is None:
            continue
        if ours != act:
            problems.append(f"runners disagree (GitHub {ours}, act {act}): {line!r}")
        elif ours is not None and ours.name not in OURS:
            problems.append(f"a command we never write: {line!r}")
        elif ours is not None and ours.name == "add-mask" and act_order_matters(
                line.split("::", 2)[2]):
            problems.append(f"act may register another value than GitHub: {line!r}")
    return problems


def assert_documented_commands(*texts: str) -> None:
    problems = [p for text in texts for p in command_problems(text)]
    assert not problems, "workflow commands not in the documented form:\n" + "\n".join(problems)
