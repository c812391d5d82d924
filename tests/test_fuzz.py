"""Property tests (hypothesis) over hostile input: server responses, rate-limit hints, every input
of the CLI, and webhook payloads feeding the event path.

Properties:
- `interpret` maps any status/headers/body to a `Result` or a `DistributeError` subclass, never
  another exception, and no text it produces carries a registered secret (or its encodings).
- `parse_retry_after` returns None or a finite wait in [0, MAX_RETRY_AFTER].
- `cli.main` over arbitrary values of every input (dry run: nothing is sent) exits 0, or 2 naming
  the input, or 7 for a ledger that cannot be opened; never 1; never prints the key or the token.
- A repository_dispatch payload cannot inject workflow commands or crash the run.

Settings-level fuzzing (every rule of settings.py) lives in test_settings.py; this file drives the
CLI as a whole. Example counts are bounded so the file runs in well under a minute on 2 cores.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import re
import string
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampixel_distribute import cli, redact
from streampixel_distribute.answers import (
    MAX_RETRY_AFTER,
    Result,
    interpret,
    parse_retry_after,
)
from streampixel_distribute.errors import DistributeError
from streampixel_distribute.report import OUTPUT_NAMES
from streampixel_distribute.report.plain import dotenv_name
from streampixel_distribute.settings import Command
from streampixel_distribute.settings.inputs import INPUTS, inputs_of
from support.commands import assert_documented_commands
from support.hostile import closed_port
from support.runner import LEAK_KEY, LEAK_TOKEN, parse_output_file

SECRET = "sk-FUZZSECRET-4b1d9e7a2c"
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
CLI = settings(max_examples=120, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow])


def encoded_forms(secret: str) -> list[str]:
    return [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
            base64.b64encode(secret.encode()).decode()]


def assert_no_secret(text: str, secret: str = SECRET) -> None:
    for form in encoded_forms(secret):
        assert form not in text, f"{form!r} leaked in {text!r}"


@pytest.fixture(autouse=True)
def _registered(_fresh_redact_registry: None) -> None:
    redact.register(SECRET)


# --- interpret ---------------------------------------------------------------------------------

_text = st.text(max_size=300)
_secretish = st.sampled_from([*encoded_forms(SECRET), f"key={SECRET}", f"<b>{SECRET}</b>"])
_message = st.one_of(
    _text,
    st.builds(lambda a, s, b: a + s + b, _text, _secretish, _text),
    st.from_regex(r"(Rate limit exceeded\. )?Try again in [0-9]{1,8} ?(seconds?|minutes?|h)\.?",
                  fullmatch=True),
    st.sampled_from(["Unauthorized: Invalid API Key", "Invalid User", "Access denied",
                     "Project not found", "File not found in project",
                     "Missing required field: uploadId", "File has no URL yet"]),
)
_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def _bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["json-message", "json-any", "text", "html", "bytes"]))
    if kind == "json-message":
        body: dict[str, Any] = {"message": draw(st.one_of(_message, _json_value))}
        body.update(draw(st.dictionaries(_text, _json_value, max_size=3)))
        return json.dumps(body).encode()
    if kind == "json-any":
        return json.dumps(draw(_json_value)).encode()
    if kind == "text":
        return draw(_message).encode("utf-8", "surrogatepass")
    if kind == "html":
        inner = draw(_message)
        return f"<html><script>{draw(_text)}</script><p>{inner}</p></html>".encode(
            "utf-8", "surrogatepass")
    return draw(st.binary(max_size=2000))


_headers = st.dictionaries(
    st.sampled_from(["Retry-After", "retry-after", "Location", "location", "Content-Type",
                     "X-Anything"]),
    st.one_of(_text, st.from_regex(r"-?[0-9]{1,12}", fullmatch=True),
              st.just("Wed, 21 Oct 2015 07:28:00 GMT"), st.just("http://evil.example/x"),
              st.builds(lambda s: f"http://u:{s}@evil.example/", _secretish)),
    max_size=4,
)
_status = st.one_of(st.integers(min_value=100, max_value=599),
                    st.sampled_from([200, 301, 302, 307, 308, 400, 401, 403, 404, 408, 415, 429,
                                     500, 502, 503, 504]),
                    st.integers(min_value=-10, max_value=10_000))


def _texts_of(outcome: Result | DistributeError) -> list[str]:
    if isinstance(outcome, Result):
        return [outcome.message, *outcome.warnings]
    texts = [str(outcome), outcome.detail, outcome.title, outcome.hint,
             outcome.server_message or ""]
    problems = getattr(outcome, "problems", [])
    texts += [str(p) for p in problems]
    return texts


@FAST
@given(status=_status, headers=_headers, raw=_bodies(),
       now=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_interpret_never_raises_anything_else_and_never_echoes_a_secret(
    status: int, headers: dict[str, str], raw: bytes, now: float
) -> None:
    try:
        outcome: Result | DistributeError = interpret(status, headers, raw, now=now)
    except DistributeError as exc:
        outcome = exc
    if isinstance(outcome, Result):
        assert 200 <= status < 300
    else:
        assert not 200 <= status < 300
        # A 429 is never shown as such: the coordinator turns it into a wait, or into a
        # RateLimited with its own fix when no slot fits in max-wait.
        assert outcome.title and (outcome.hint or status == 429)
        if status == 429:
            wait = getattr(outcome, "retry_after", None)
            assert wait is None or 0 <= wait <= MAX_RETRY_AFTER
    for text in _texts_of(outcome):
        assert_no_secret(text)
        assert len(text) < 2000


# --- parse_retry_after ---------------------------------------------------------------------------

_header = st.one_of(
    st.none(), _text,
    st.from_regex(r"\s*[0-9]{1,15}\s*", fullmatch=True),
    st.from_regex(r"-[0-9]{1,5}", fullmatch=True),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT")),
    st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S")),  # no zone
    st.sampled_from(["1e9", "NaN", "inf", "0x10", "١٢٣", "120.5", "   ", "Thu, 01 Jan 1970"]),
)
_try_again = st.one_of(
    _text,
    st.from_regex(r"[Tt]ry again in (about )?[0-9]{1,9}(\.[0-9]{1,5})? ?"
                  r"(s|secs?|seconds?|m|mins?|minutes?|h|hours?|days?)\b.*", fullmatch=True),
    st.builds(lambda a, b: f"{a} Try again in {b} minutes", _text, _text),
)


@FAST
@given(header=_header, message=_try_again,
       now=st.floats(min_value=-1e12, max_value=1e12, allow_nan=False))
def test_parse_retry_after_is_none_or_a_bounded_wait(header: str | None, message: str,
                                                     now: float) -> None:
    seconds, source = parse_retry_after(header, message, now=now)
    assert source in ("Retry-After header", "server message", "none")
    if seconds is None:
        assert source == "none"
    else:
        assert math.isfinite(seconds)
        assert 0 <= seconds <= MAX_RETRY_AFTER


def test_parse_retry_after_examples() -> None:
    # Anchors for the property above: the documented and the common forms.
    assert parse_retry_after(None, "Rate limit exceeded. Try again in 2 minutes.", now=0)[0] == 120
    assert parse_retry_after("30", "", now=0) == (30.0, "Retry-After header")
    assert parse_retry_after("-5", "", now=0) == (None, "none")
    assert parse_retry_after("999999999", "", now=0)[0] == MAX_RETRY_AFTER


# --- the CLI over arbitrary input values ------------------------------------------------------

USER, PROJECT, UPLOAD = "65de0000000000000000a001", "65de0000000000000000b001", \
    "65de0000000000000000c001"

_nasty = st.text(
    alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]),
    max_size=80,
)
_long = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=200,
                max_size=3000)
_ids = st.one_of(
    st.from_regex(r"[0-9a-fA-F]{1,40}", fullmatch=True),
    st.from_regex(r"https://dashboard\.streampixel\.io/projectdetail/[0-9a-f]{24}", fullmatch=True),
    st.builds(lambda q, v: f"{q}{v}{q}", st.sampled_from(["'", '"', "`", " "]),
              st.from_regex(r"[0-9a-f]{24}", fullmatch=True)),
    st.sampled_from(["${{ secrets.ID }}", "$PROJECT_ID", "%ID%", "<id>", "xxxx", "null",
                     "65de0000000000000000b001\n65de0000000000000000b002"]),
)
_numbers = st.one_of(
    st.from_regex(r"-?[0-9]{0,8}(\.[0-9]{0,4})?[smhd]?", fullmatch=True),
    st.sampled_from(["0", "-1", "1e3", "NaN", "inf", "3601", "99999999", "1h", "15m", "0.0001",
                     "\uff12", "10", "11", " 5 "]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
_booleans = st.sampled_from(["true", "True", "TRUE", "false", "False", "FALSE", "yes", "no", "1",
                             "0", "on", "tRUE", "", " true ", "true\n"])
_urls = st.one_of(
    st.sampled_from(["http://127.0.0.1:9/pixelStripeApi", "https://api.streampixel.io/x",
                     "http://example.com/api", "ftp://127.0.0.1/", "https://u:p@h/",
                     "https://h/pixelStripeApi/projects/distribute-file", "https://[::1",
                     "https://h:99999/", "https://h/?q=1", "//h/x", "javascript:alert(1)"]),
    st.builds(lambda h, p: f"https://{h}/{p}", _nasty, _nasty),
)


def _value_strategy(  # noqa: PLR0911 - one strategy per kind of input
    name: str, ledger_dir: Path
) -> st.SearchStrategy[str]:
    common = st.one_of(_nasty, _long)
    if name in ("api-key", "github-token"):
        marker = "sk-FUZZKEY-" if name == "api-key" else "ghs_FUZZTOKEN"
        return st.one_of(st.builds(lambda s: marker + s, _nasty), common)
    if name in ("user-id", "project-id", "upload-id"):
        return st.one_of(_ids, common)
    if name == "api-url":
        return st.one_of(_urls, common)
    if name == "ledger":
        # Only backends that touch nothing outside the test: a file in our temp dir, a closed
        # loopback Redis port; everything else is text that must fail validation (no real host
        # may be resolved or contacted).
        return st.one_of(
            st.sampled_from(["none", "auto", "NONE", "file:ledger.json", "file://ledger.json",
                             "redis:", "mysql://x", "github"]),
            st.builds(lambda n: f"file://{ledger_dir}/{n}", st.from_regex(r"[a-z.]{1,12}",
                                                                         fullmatch=True)),
            st.just(f"redis://127.0.0.1:{closed_port()}/0"),
            _nasty.filter(lambda v: not re.match(
                r"\s*(file|redis|rediss|git\+\w+|github)\s*:", v, re.IGNORECASE)),
        )
    if name in ("rate-limit-interval", "max-wait", "timeout", "retries"):
        return st.one_of(_numbers, common)
    if name == "command":
        return st.one_of(st.sampled_from(["distribute", "reserve", "upload", "UPLOAD", "listen"]),
                         common)
    if name == "file-url":
        return st.one_of(_urls, st.just(FILE_URL), st.builds(
            lambda h, p: f"https://{h}/{p}.zip?sig={p}", _nasty, _nasty), common)
    return st.one_of(_booleans, common)  # dry-run, strict-ids, auto-release


FILE_URL = "https://builds.example.test/Game.zip?X-Amz-Signature=FUZZSIGNATURE0123456789"


def baseline(command: Command = Command.DISTRIBUTE) -> dict[str, str]:
    values = {"api-key": LEAK_KEY, "user-id": USER, "project-id": PROJECT,
              "api-url": "http://127.0.0.1:9/pixelStripeApi", "ledger": "none",
              "github-token": LEAK_TOKEN, "dry-run": "true", "retries": "0"}
    if command is Command.UPLOAD:
        return values | {"file-url": FILE_URL}
    return values | {"upload-id": UPLOAD}


def run_cli(values: Mapping[str, str], *, via_env: bool, tmp: Path,
            command: Command | None = None) -> tuple[int, str, str, str]:
    """Run `cli.main` in-process, outside GitHub; returns (code, stdout, stderr, outputs).
    The `command` input always travels as STREAMPIXEL_COMMAND (the CLI names a subcommand)."""
    output = tmp / "outputs.txt"
    output.unlink(missing_ok=True)
    argv = ([command.value] if command else []) + ["--output-file", str(output)]
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    for name, value in values.items():
        if via_env or name == "command":
            environ["STREAMPIXEL_" + name.upper().replace("-", "_")] = value
        else:
            argv.append(f"--{name}={value}")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv, environ)
    assert_documented_commands(out.getvalue(), err.getvalue())
    written = output.read_text() if output.exists() else ""
    return code, out.getvalue(), err.getvalue(), written


#: Names the program prints whatever the secrets are: a fuzzed "secret" that is a piece of one
#: (`waited-s`, drawn once) cannot be kept out of the output, and is not a credential anyway.
_VOCABULARY = " ".join([*OUTPUT_NAMES, *(dotenv_name(n) for n in OUTPUT_NAMES),
                        *(spec.name for spec in INPUTS), *(spec.env_name for spec in INPUTS)])


def _secret_parts(value: str) -> list[str]:
    """The forms of a fuzzed secret that must never be printed."""
    stripped = value.strip()
    parts = [stripped] if len(stripped) >= 8 else []
    parts += [p for p in value.split() if len(p) >= 8]
    return [part for part in parts if part not in _VOCABULARY]


@pytest.fixture(scope="module")
def cli_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-cli")


_CASES = [(Command.DISTRIBUTE, spec.name) for spec in inputs_of(Command.DISTRIBUTE)] + [
    (Command.UPLOAD, name) for name in ("file-url", "auto-release")]


@pytest.mark.parametrize(("command", "name"), _CASES, ids=[f"{c}:{n}" for c, n in _CASES])
@CLI
@given(data=st.data(), via_env=st.booleans())
def test_every_input_accepts_or_names_itself(command: Command, name: str, cli_tmp: Path,
                                             data: st.DataObject, via_env: bool) -> None:
    ledger_dir = cli_tmp / "ledgers"
    ledger_dir.mkdir(exist_ok=True)
    value = data.draw(_value_strategy(name, ledger_dir), label=name)
    values = baseline(command)
    values[name] = value
    if name == "command":
        # As the action passes it: every input in the environment, no subcommand; an upload
        # needs its file URL.
        values["file-url"] = FILE_URL
        via_env = True
    code, out, err, written = run_cli(values, via_env=via_env, tmp=cli_tmp,
                                      command=None if name == "command" else command)
    everything = out + err + written
    assert code != 1 and "Traceback" not in everything, everything
    outputs = dict(line.split("=", 1) for line in written.splitlines() if "=" in line)
    if code == 0:
        assert outputs["status"] == "dry-run"
    elif name == "dry-run" and code == 6:
        # Accepted as `false`: a real run against a closed loopback port, refused, not
        # retried (retries 0).
        assert outputs["error"] == "network-error" and "refused" in err, everything
    elif code == 2:
        assert outputs["error"] == "invalid-input", everything
        assert f"`{name}`" in err, err
    else:
        # A well-formed ledger URL that cannot be opened is a ledger error, not input.
        assert name == "ledger" and code == 7 and outputs["error"] == "ledger-error", \
            everything
    for secret in (LEAK_KEY, LEAK_TOKEN):
        for form in encoded_forms(secret):
            assert form not in everything
    if name in ("api-key", "github-token", "file-url"):
        for part in _secret_parts(value):
            assert part not in everything, (part, everything)



# --- webhook payloads on the event path ---------------------------------------------------------

_injection = st.sampled_from([
    "\n::set-output name=status::triggered", "\r\n::add-mask::x", "%0A::warning::pwn",
    "\n::stop-commands::tok", "\u2028::error::x", "\n::endgroup::", "\x1b[31m", "${{ github }}",
])
_payload_text = st.one_of(_nasty, st.builds(lambda a, b: a + b, _nasty, _injection))


@CLI
@given(event=st.one_of(st.sampled_from(["build.approved", "build.rejected", "webhook.test"]),
                       _payload_text),
       project=st.one_of(st.just(PROJECT), _payload_text, st.integers(), st.none()),
       upload=st.one_of(st.just(UPLOAD), _payload_text, st.lists(st.integers(), max_size=2)),
       objection=st.one_of(st.none(), _payload_text, _long))
def test_hostile_webhook_payload_cannot_inject_commands(
    cli_tmp: Path, event: str, project: object, upload: object, objection: object
) -> None:
    payload = {"event": event, "projectId": project, "uploadId": upload, "objection": objection,
               "status": "Reject"}
    event_path = cli_tmp / "event.json"
    event_path.write_text(json.dumps({"action": "streampixel", "client_payload": payload}))
    github_output, summary = cli_tmp / "gh_output", cli_tmp / "gh_summary"
    github_output.write_text("")
    summary.write_text("")
    environ = {
        "GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(github_output),
        "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_EVENT_NAME": "repository_dispatch", "INPUT_API-KEY": LEAK_KEY,
        "INPUT_USER-ID": USER, "INPUT_API-URL": "http://127.0.0.1:9/pixelStripeApi",
        "INPUT_LEDGER": "none", "INPUT_DRY-RUN": "true",
    }
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([], environ)
    assert code in (0, 2, 4), out.getvalue()
    assert_documented_commands(out.getvalue(), err.getvalue())
    outputs = parse_output_file(github_output.read_text())
    assert set(outputs) == set(OUTPUT_NAMES), outputs  # no output smuggled in
    assert outputs["status"] in ("dry-run", "failed")
    assert LEAK_KEY not in json.dumps(outputs) + summary.read_text()
