"""Workflow commands in the documented form, read alike by GitHub's runner and by nektos/act.

act-based runners (Forgejo, Gitea, nektos/act) print any line they do not parse as a command as
plain text; for `::add-mask::` that is the secret itself. These tests check the writer against
both parsers (tests/support/commands.py), property by property and on every kind of line the
program prints: masks, annotations for every error kind, warnings, groups and the heartbeat.
Every subprocess run of the action (support.runner) is checked the same way.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from streampixel_distribute import redact
from streampixel_distribute.answers import TooManyRequests
from streampixel_distribute.coordinator import HEARTBEAT_SECONDS, Coordinator, Progress
from streampixel_distribute.errors import (
    Cancelled,
    DistributeError,
    Forbidden,
    InvalidInput,
    LedgerError,
    NetworkError,
    NotFound,
    NotReady,
    Problem,
    RateLimited,
    ServerError,
    Unauthorized,
)
from streampixel_distribute.ledger import LedgerContext, account_key, open_ledger
from streampixel_distribute.report import Reporter, build_report
from streampixel_distribute.report import github as gh
from streampixel_distribute.settings import Command as Subcommand
from support.clock import FakeClock
from support.commands import (
    Command,
    act_order_matters,
    act_parse,
    assert_documented_commands,
    github_parse,
)
from support.runner import parse_output_file
from test_coordinator import OK, ScriptedClient, make_settings

# Text that stresses both parsers: the command and escape syntax itself, spaces and line breaks.
_tricky = st.lists(st.sampled_from([*":%,= \r\n#[]A0aD", "%0A", "%0D", "%25", "##[", "\u200b"]),
                  max_size=30).map("".join)
_any_text = st.one_of(_tricky, st.text(max_size=60))


def parsed(line: str) -> Command:
    ours, act = github_parse(line), act_parse(line)
    assert ours is not None, f"GitHub does not read {line!r} as a command"
    assert ours == act, f"GitHub reads {ours}, act reads {act}: {line!r}"
    return ours


def test_documented_examples() -> None:
    assert gh.command("add-mask", "s3cr3t-value") == "::add-mask::s3cr3t-value"
    assert gh.mask_commands("s3cr3t-value") == ["::add-mask::s3cr3t-value"]
    assert gh.command("group", "Waiting 2 min") == "::group::Waiting 2 min"
    assert gh.command("endgroup") == "::endgroup::"
    assert gh.command("error", "line 1\nline 2 100%", title="Bad: a, b") == \
        "::error title=Bad%3A a%2C b::line 1%0Aline 2 100%25"
    assert gh.command("warning", "no title", title="") == "::warning::no title"


@given(data=_any_text, title=_any_text)
def test_annotations_read_alike(data: str, title: str) -> None:
    command = parsed(gh.command("error", data, title=title))
    assert command.name == "error"
    assert command.data.replace(gh.ZWSP, "") == data.replace(gh.ZWSP, "")
    if title.strip():
        assert dict(command.properties) == {"title": title.strip().replace("=", "\uff1d")}
    else:
        assert command.properties == ()


@given(value=_any_text)
def test_masks_hide_every_piece_on_both_runners(value: str) -> None:
    lines = gh.mask_commands(value)
    masked = [parsed(line) for line in lines]
    assert all(m.name == "add-mask" for m in masked)
    assert not any(act_order_matters(line.split("::", 2)[2]) for line in lines)
    for command in masked:
        assert command.data in value
    # Every stretch of the value between line breaks, `:` and `%` that is long enough to mask
    # is inside a masked text.
    for line in value.splitlines():
        for piece in (line, *line.replace("%", ":").split(":")):
            if len(piece.strip()) >= gh.MIN_MASK and piece.strip() and ":" not in piece \
                    and "%" not in piece:
                assert any(piece in m.data for m in masked), (piece, lines)


@given(text=_any_text)
@example(text="::error title=Forged::from the server")  # always tried, whatever is drawn
@example(text="  ::add-mask::x")
@example(text="##[error]forged")
def test_plain_lines_are_never_commands(text: str) -> None:
    for line in text.splitlines() or [""]:
        safe = gh.plain_line(line)
        assert github_parse(safe) is None and act_parse(safe) is None, safe
        assert safe.replace(gh.ZWSP, "") == line.replace(gh.ZWSP, "")


@given(outputs=st.dictionaries(st.sampled_from(["status", "message", "ledger"]),
                               st.one_of(_any_text, st.just("ghadelimiter_x"))))
def test_output_records_round_trip(outputs: dict[str, str]) -> None:
    clean = {name: value.replace("\r", "") for name, value in outputs.items()}
    assert parse_output_file(gh.output_records(clean)) == clean


def test_a_value_that_holds_the_delimiter_gets_another_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    drawn = iter([b"\0" * 16, b"\1" * 16])
    monkeypatch.setattr(os, "urandom", lambda _size: next(drawn))
    value = "first\nghadelimiter_" + "00" * 16 + "\nlast"
    records = gh.output_records({"message": value})
    assert records.startswith("message<<ghadelimiter_" + "01" * 16 + "\n")
    assert parse_output_file(records) == {"message": value}


def test_an_error_without_a_fix_is_one_annotation_without_a_fix_line() -> None:
    out = io.StringIO()
    Reporter(on_github=True, environ={}, stdout=out).error(ServerError("HTTP 502", hint=""))
    assert out.getvalue() == "::error title=Streampixel server error::HTTP 502.\n"


ERRORS: list[DistributeError] = [
    InvalidInput([Problem("user-id", "is not 24 hex: '::add-mask::x'.", "Copy it again.")]),
    Unauthorized("HTTP 401: Invalid User", title="Unauthorized: invalid user", hint="Fix it."),
    Forbidden("HTTP 403: Access denied", hint="Check ownership."),
    NotFound("HTTP 404: Project not found::x", hint="Check `project-id`."),
    NotReady("HTTP 400: file has no URL\n##[error]forged", hint="Wait."),
    RateLimited("no slot within max-wait", eta=1.0, hint="Raise `max-wait`."),
    TooManyRequests("HTTP 429", retry_after=None, source="none", http_status=429),
    ServerError("HTTP 502: <html>", hint="Retry."),
    NetworkError("connection to [::1] refused", hint="Check the network."),
    LedgerError("cannot reach redis at 127.0.0.1:1", hint="Check the ledger."),
    Cancelled(15, "received SIGTERM"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_every_error_kind_is_one_documented_annotation(error: DistributeError) -> None:
    out = io.StringIO()
    reporter = Reporter(on_github=True, environ={}, stdout=out)
    reporter.error(error)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert parsed(lines[0]).name == "error"
    assert dict(parsed(lines[0]).properties)["title"] == error.title.replace("=", "\uff1d")


def test_a_whole_waiting_run_prints_only_documented_commands(tmp_path: Path) -> None:
    """Masks, warnings, a group with heartbeats, a 429 and the final error, through Reporter."""
    redact.register("sk-mask::with:colons%0Aand-percent")
    clock = FakeClock()
    settings = make_settings(max_wait=1000.0)
    ledger = open_ledger(f"file://{tmp_path}/ledger.json", LedgerContext(now=clock.time))
    key = account_key(settings.api_url, settings.user_id)
    ledger.reserve(key, 200.0)  # someone else holds the next 200 s
    out = io.StringIO()
    reporter = Reporter(on_github=True, environ={}, stdout=out)
    reporter.mask(list(redact.registered()))
    client = ScriptedClient(clock, [TooManyRequests(
        "HTTP 429", retry_after=150.0, source="Retry-After header", http_status=429,
        server_message="Rate limit exceeded::##[add-mask]x"), OK])
    coordinator = Coordinator(settings, ledger=ledger, clock=clock, log=reporter,
                              jitter=lambda: 0.5)
    assert coordinator.run(client) is OK
    reporter.error(RateLimited("late", hint="later"))
    reporter.finish(build_report(Subcommand.DISTRIBUTE, None, Progress(), None,
                                 RateLimited("late")))
    text = out.getvalue()
    assert_documented_commands(text)
    commands = [c for c in (github_parse(line) for line in text.splitlines()) if c]
    names = [c.name for c in commands]
    assert names.count("group") == 2 and names.count("endgroup") == 2, names
    heartbeats = [ln for ln in text.splitlines() if ln.startswith("Waiting for the account")]
    assert len(heartbeats) >= 200 // HEARTBEAT_SECONDS, text
    assert "warning" in names and "error" in names and "add-mask" in names
    # The colon-holding secret is masked in pieces that act reads as add-mask too.
    assert {"sk-mask", "with", "colons", "0Aand-percent"} <= {
        c.data for c in commands if c.name == "add-mask"}


def test_the_runner_checks_catch_the_old_spelling() -> None:
    """The undocumented form that act prints as text is flagged (guards the checks themselves)."""
    with pytest.raises(AssertionError, match="runners disagree"):
        assert_documented_commands("::add-mask ::sk-secret-value")
    with pytest.raises(AssertionError, match="runners disagree"):
        assert_documented_commands("::group ::title")
    with pytest.raises(AssertionError, match="never write"):
        assert_documented_commands("::set-output name=x::y")
    with pytest.raises(AssertionError, match="runners disagree"):
        assert_documented_commands("text ##[add-mask]x")
    assert_documented_commands("::add-mask::sk-secret-value\nplain text ::x")
