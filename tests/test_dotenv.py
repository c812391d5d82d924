"""The dotenv report against both of its readers, ported here line by line.

- GitLab (`Ci::ParseDotenvArtifactService`): the blob as UTF-8 without a BOM, split after each
  `\\n`; every line must match `/^(.*?)=(.*)$/` (else "Invalid Format": a blank line fails the
  whole report), and key and value are `strip!`ped; nothing else is interpreted. The value is
  stored with `raw: false`, so `$NAME` in it is expanded when a job uses it.
- gitlab-ci-local (npm `dotenv` 17's `parse`): its `LINE` regular expression scanned over the
  whole text, the value trimmed, one pair of surrounding quotes removed (and `\\n`, `\\r` expanded
  inside double quotes); gitlab-ci-local then expands `$NAME`, `${NAME}` and `$$`.

Hypothesis feeds arbitrary text through the writer; both parsers must return, for every
variable, exactly the value the writer meant to write.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streampixel_distribute.report import OUTPUT_NAMES
from streampixel_distribute.report.plain import (
    DOTENV_LOOKALIKES,
    DOTENV_MAX_BYTES,
    DOTENV_MAX_VALUE,
    dotenv,
    dotenv_name,
    dotenv_value,
)


class InvalidFormat(ValueError):
    """GitLab's ParserError('Invalid Format'): the whole report is rejected."""


# -- GitLab ----------------------------------------------------------------------------------

# Ruby's String#strip: leading and trailing NUL, \t, \n, \v, \f, \r and space.
RUBY_WHITESPACE = "\x00\t\n\v\f\r "
# Ruby's `.` matches anything but "\n"; `^`/`$` are always line anchors (before/after "\n").
GITLAB_LINE = re.compile(r"^(.*?)=(.*)$", re.MULTILINE)


def ruby_each_line(text: str) -> list[str]:
    """String#each_line with the default separator: split after every "\\n", keeping it."""
    return re.findall(r"[^\n]*\n|[^\n]+\Z", text)


def gitlab_parse(blob: bytes) -> dict[str, str]:
    text = blob.decode("utf-8", "replace").removeprefix("\ufeff")
    variables: dict[str, str] = {}
    for line in ruby_each_line(text):
        found = GITLAB_LINE.findall(line)  # line.scan(...).last
        if not found:
            raise InvalidFormat(repr(line))
        key, value = found[-1]
        variables[key.strip(RUBY_WHITESPACE)] = value.strip(RUBY_WHITESPACE)
    return variables


# -- npm dotenv 17 ---------------------------------------------------------------------------

# JavaScript's \s (WhiteSpace and LineTerminator), `.` without the s flag, and ^/$ with the m flag.
JS_SPACE = "\t\n\v\f\r \u00a0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + (
    "\u2028\u2029\u202f\u205f\u3000\ufeff")
S = f"[{JS_SPACE}]"
DOT = r"[^\n\r\u2028\u2029]"
BOL = r"(?:^|(?<=[\n\r\u2028\u2029]))"
EOL = r"(?=[\n\r\u2028\u2029]|\Z)"
# dotenv/lib/main.js:
#   LINE = /(?:^|^)\s*(?:export\s+)?([\w.-]+)(?:\s*=\s*?|:\s+?)
#           (\s*'(?:\\'|[^'])*'|\s*"(?:\\"|[^"])*"|\s*`(?:\\`|[^`])*`|[^#\r\n]+)?
#           \s*(?:#.*)?(?:$|$)/mg      (one line in the source)
DOTENV_LINE = re.compile(
    f"{BOL}{S}*(?:export{S}+)?([A-Za-z0-9_.-]+)(?:{S}*={S}*?|:{S}+?)"
    f"({S}*'(?:\\\\'|[^'])*'|{S}*\"(?:\\\\\"|[^\"])*\"|{S}*`(?:\\\\`|[^`])*`|[^#\r\n]+)?"
    f"{S}*(?:#{DOT}*)?{EOL}"
)
# value.replace(/^(['"`])([\s\S]*)\1$/mg, '$2')
DOTENV_QUOTES = re.compile(f"{BOL}(['\"`])([\\s\\S]*)\\1{EOL}")


def dotenv_parse(blob: bytes) -> dict[str, str]:
    lines = re.sub(r"\r\n?", "\n", blob.decode("utf-8", "replace"))
    parsed: dict[str, str] = {}
    for match in DOTENV_LINE.finditer(lines):
        value = (match.group(2) or "").strip(JS_SPACE)  # String.prototype.trim
        maybe_quote = value[:1]
        value = DOTENV_QUOTES.sub(r"\2", value)
        if maybe_quote == '"':
            value = value.replace("\\n", "\n").replace("\\r", "\r")
        parsed[match.group(1)] = value
    return parsed


# gitlab-ci-local's Utils.expandText (and unscape$$Variables):
#   /(\$\$)|\$\{([a-zA-Z_]\w*)}|\$([a-zA-Z_]\w*)/g
GCL_EXPAND = re.compile(r"(\$\$)|\$\{([a-zA-Z_]\w*)}|\$([a-zA-Z_]\w*)", re.ASCII)


def gitlab_ci_local_expand(value: str, variables: dict[str, str]) -> str:
    return GCL_EXPAND.sub(
        lambda m: "$" if m.group(1) else variables.get(m.group(2) or m.group(3), ""), value
    )


# -- the ports themselves, on the cases the brief names ----------------------------------------

def test_ports_reproduce_the_known_disagreements() -> None:
    """The ports must disagree exactly where the real parsers do, or they prove nothing."""
    text = (b"A=plain value\n"
            b"B=server says #1 is done\n"
            b"C=\"quoted\"\n"
            b"D='it'\n"
            b"E= spaced  \n"
            b"F=a=b\n")
    assert gitlab_parse(text) == {"A": "plain value", "B": "server says #1 is done",
                                  "C": '"quoted"', "D": "'it'", "E": "spaced", "F": "a=b"}
    assert dotenv_parse(text) == {"A": "plain value", "B": "server says", "C": "quoted",
                                  "D": "it", "E": "spaced", "F": "a=b"}
    # A value that only starts with a quote swallows the next line in dotenv.
    assert dotenv_parse(b"A='it\nB=x'\n") == {"A": "it\nB=x"}
    assert gitlab_parse(b"A='it\nB=x'\n") == {"A": "'it", "B": "x'"}
    with pytest.raises(InvalidFormat):
        gitlab_parse(b"A=1\n\nB=2\n")
    expanded = gitlab_ci_local_expand("cost $HOME ${X} $$", {"HOME": "/root", "X": "1"})
    assert expanded == "cost /root 1 $"


# -- the writer --------------------------------------------------------------------------------

def parse_both(text: str) -> tuple[dict[str, str], dict[str, str]]:
    blob = text.encode("utf-8")
    return gitlab_parse(blob), dotenv_parse(blob)


messages = st.text(alphabet=st.characters(codec="utf-8"), max_size=600) | st.text(
    alphabet="#$\"'` \t\r\n\\=abc\u2028\u00a0\ufeff", max_size=60
)


@settings(max_examples=400, deadline=None)
@given(message=messages)
@example(message="Distribution #1 'queued' for $HOME: \"ok\"")
@example(message="'quoted'")
@example(message='"double"')
@example(message="`tick`")
@example(message="  # only a comment")
@example(message="${CI_JOB_TOKEN} and $$")
@example(message="'unterminated")
@example(message="lone \ud800 surrogate from a JSON escape")
def test_both_parsers_read_the_message_the_writer_wrote(message: str) -> None:
    outputs = dict.fromkeys(OUTPUT_NAMES, "")
    outputs.update(status="triggered", message=message, **{"http-status": "200"})
    expected = {dotenv_name(name): dotenv_value(value) for name, value in outputs.items()}

    text = dotenv(outputs)
    gitlab, local = parse_both(text)

    assert gitlab == expected
    assert local == expected
    value = expected["STREAMPIXEL_MESSAGE"]
    assert gitlab_ci_local_expand(value, {"HOME": "/root"}) == value
    assert not set(value) & set(DOTENV_LOOKALIKES)
    assert "\n" not in value and value == value.strip()


@settings(max_examples=200, deadline=None)
@given(message=st.text(alphabet=st.characters(codec="utf-8"), max_size=600))
def test_the_value_is_the_flattened_message(message: str) -> None:
    """Undoing the look-alikes gives the message with its whitespace collapsed, cut at the limit."""
    value = dotenv_value(message)
    undo = {v: k for k, v in DOTENV_LOOKALIKES.items()}
    plain = "".join(undo.get(ch, ch) for ch in value)
    collapsed = " ".join("".join(ch if ch.isprintable() else " " for ch in message).split())
    collapsed = "".join(undo.get(ch, ch) for ch in collapsed)  # look-alikes already in the text
    if len(collapsed) <= DOTENV_MAX_VALUE:
        assert plain == collapsed
    else:
        assert len(value) == DOTENV_MAX_VALUE and value.endswith("…")
        assert collapsed.startswith(plain[:-1])


def test_ordinary_messages_are_kept_verbatim() -> None:
    for message in ("Distribution triggered", "File not found in project",
                    "Rate limit exceeded. Try again in 2 minutes.", "a=b, c:d; 50% done \\o/"):
        assert dotenv_value(message) == message


def test_lookalikes_replace_rather_than_delete() -> None:
    assert dotenv_value("Build #7 \"ok\" for $USER's `main`") == (
        "Build \uff037 \u201dok\u201d for \uff04USER\u2019s \uff40main\uff40")


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.text(alphabet=st.characters(codec="utf-8"), min_size=300,
                               max_size=DOTENV_MAX_VALUE), min_size=1, max_size=40))
def test_limits_hold_in_bytes_and_every_written_line_parses(values: list[str]) -> None:
    outputs = {f"out-{i}": value for i, value in enumerate(values)}
    text = dotenv(outputs)
    assert len(text.encode("utf-8")) <= DOTENV_MAX_BYTES  # GitLab: file size < 5 KB
    lines = text.splitlines()
    assert len(lines) < 20
    assert all(re.fullmatch(r"STREAMPIXEL_[A-Z0-9_]+=.*", line) for line in lines)
    gitlab, local = parse_both(text)
    assert gitlab == local
    assert len(gitlab) == len(lines)


@pytest.mark.parametrize("spare", [0, 1, 2, 3])
def test_a_value_with_no_room_for_the_ellipsis_is_left_empty(spare: int) -> None:
    """The file is `spare` bytes short of the limit once the last variable's name is written: a
    cut value needs 3 bytes for `…`, so with less it is left empty, and the file stays within
    GitLab's limit."""
    outputs = {f"v{i}": "x" * DOTENV_MAX_VALUE for i in range(12)}
    used = len(dotenv(outputs).encode())
    fill = DOTENV_MAX_BYTES - used - len("STREAMPIXEL_FILL=\n") - len("STREAMPIXEL_LAST=\n") - spare
    assert 0 < fill < DOTENV_MAX_VALUE
    text = dotenv(outputs | {"fill": "y" * fill, "last": "the last value"})
    assert text.endswith("STREAMPIXEL_LAST=" + ("…" if spare == 3 else "") + "\n")
    assert len(text.encode()) == DOTENV_MAX_BYTES - (0 if spare == 3 else spare)


def test_no_outputs_is_an_empty_file_not_a_blank_line() -> None:
    assert dotenv({}) == ""
    assert gitlab_parse(b"") == {}
