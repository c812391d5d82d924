"""The action end to end: the product as a subprocess under the runner's contract, against the
real emulator over HTTP. Every path checks outputs, summary, exit code and that the key leaks
nowhere."""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support.emulator import Emulator
from support.runner import LEAK_KEY, LEAK_TOKEN, ActionRun, run_action

USER = "6a1b2c3d4e5f60718293a4b5"
PROJECT = "6a1b2c3d4e5f60718293b001"
UPLOAD = "6a1b2c3d4e5f60718293c001"
PROCESSING = "6a1b2c3d4e5f60718293c002"
OTHER_PROJECT = "6a1b2c3d4e5f60718293b009"

Action = Callable[..., ActionRun]


@pytest.fixture
def account(emulator: Emulator) -> Emulator:
    """The shared emulator with an account whose key is the distinctive leak-check value."""
    emulator.add_account(USER, LEAK_KEY, [
        {"projectId": PROJECT, "uploads": [{"uploadId": UPLOAD, "ready": True},
                                           {"uploadId": PROCESSING, "ready": False}]},
    ])
    return emulator


def inputs(emulator: Emulator, **kw: str) -> dict[str, str]:
    base = {
        "API-KEY": LEAK_KEY, "USER-ID": USER, "PROJECT-ID": PROJECT, "UPLOAD-ID": UPLOAD,
        "API-URL": emulator.url, "LEDGER": "none", "GITHUB-TOKEN": LEAK_TOKEN,
        "TIMEOUT": "5", "RETRIES": "1",
    }
    base.update({k.upper(): v for k, v in kw.items()})
    return base


def assert_no_leak(run: ActionRun) -> None:
    text = run.everything()
    for secret in (LEAK_KEY, LEAK_TOKEN):
        for form in (secret, base64.b64encode(secret.encode()).decode(),
                     urllib.parse.quote(secret, safe="")):
            assert form not in text, f"secret form {form[:6]}… leaked"


def assert_masked_first(run: ActionRun) -> None:
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    masks = [i for i, line in enumerate(lines) if line.startswith("::add-mask")]
    assert masks, "no ::add-mask:: emitted"
    assert masks == list(range(len(masks))), "something was printed before the masks"


def distribute_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return [r for r in emulator.requests() if r["path"].endswith("/distribute-file")]


def test_success_sets_outputs_summary_and_calls_once(account: Emulator, action: Action) -> None:
    run = action(inputs(account))
    assert run.exit_code == 0, run.stderr + run.stdout
    out = run.outputs
    assert out["status"] == "triggered"
    assert out["http-status"] == "200"
    assert out["attempts"] == "1"
    assert out["error"] == ""
    assert out["message"] == "Distribution triggered"
    assert out["triggered-at"].endswith("Z")
    assert out["slot-at"].endswith("Z")
    assert out["ledger"] == "none"
    assert "✅" in run.summary
    assert PROJECT in run.summary and UPLOAD in run.summary
    assert USER not in run.summary  # shortened
    assert "6a1b…a4b5" in run.summary
    calls = distribute_calls(account)
    assert len(calls) == 1
    assert calls[0]["api_key_ok"] is True
    assert calls[0]["uploadId"] == UPLOAD
    assert_masked_first(run)
    assert_no_leak(run)


@pytest.mark.parametrize(
    ("override", "code", "kind", "status", "fix_words"),
    [
        ({"API-KEY": "sk-wrong-key-1234567"}, 3, "unauthorized", "401", "STREAMPIXEL_API_KEY"),
        ({"USER-ID": "6a1b2c3d4e5f60718293ffff"}, 3, "unauthorized", "401", "user-id"),
        ({"PROJECT-ID": OTHER_PROJECT}, 4, "not-found", "404", "project-id"),
        ({"UPLOAD-ID": "6a1b2c3d4e5f60718293cfff"}, 4, "not-found", "404", "upload-id"),
        ({"UPLOAD-ID": PROCESSING}, 4, "not-ready", "400", "build.approved"),
    ],
)
def test_error_paths(account: Emulator, action: Action, override: dict[str, str], code: int,
                     kind: str, status: str, fix_words: str) -> None:
    run = action(inputs(account, **override))
    assert run.exit_code == code, run.stdout + run.stderr
    assert run.outputs["status"] == "failed"
    assert run.outputs["error"] == kind
    assert run.outputs["attempts"] == "1"  # never retried
    assert run.outputs["http-status"] == status
    assert "::error title=" in run.stdout
    assert fix_words in run.stdout
    assert "❌" in run.summary
    assert "### How to fix it" in run.summary
    assert fix_words in run.summary
    assert "Traceback" not in run.stdout + run.stderr
    assert_masked_first(run)
    assert_no_leak(run)


def test_forbidden_project_is_exit_3(emulator: Emulator, action: Action) -> None:
    demo = emulator.demo
    run = action(inputs(emulator, **{"API-KEY": demo.api_key, "USER-ID": demo.user_id,
                                     "PROJECT-ID": demo.foreign_project_id,
                                     "UPLOAD-ID": demo.foreign_upload_id}))
    assert run.exit_code == 3
    assert run.outputs["error"] == "forbidden"
    assert run.outputs["http-status"] == "403"


def test_invalid_input_reports_every_problem_and_sends_nothing(account: Emulator,
                                                               action: Action) -> None:
    run = action(inputs(account, **{"USER-ID": "not an id", "PROJECT-ID": "",
                                    "TIMEOUT": "soon", "DRY-RUN": "yes"}))
    assert run.exit_code == 2
    assert run.outputs["error"] == "invalid-input"
    for name in ("user-id", "project-id", "timeout", "dry-run"):
        assert f"`{name}`" in run.summary
    assert "forks and Dependabot" in run.summary
    assert distribute_calls(account) == []
    assert_no_leak(run)


def test_dry_run_calls_nothing(account: Emulator, action: Action) -> None:
    run = action(inputs(account, **{"DRY-RUN": "true"}))
    assert run.exit_code == 0
    assert run.outputs["status"] == "dry-run"
    assert run.outputs["attempts"] == "0"
    assert run.outputs["slot-at"]
    assert "dry run" in run.summary.lower()
    assert distribute_calls(account) == []


def test_429_waits_for_the_server_then_succeeds(account: Emulator, action: Action) -> None:
    # Another job's call holds the window: the server's 429 says when it ends. (A fault, not a
    # real earlier call: how long a process takes to start must not decide the test.)
    account.fault(path="distribute-file", status=429,
                  body={"message": "Rate limit exceeded. Try again in 2 seconds."})
    run = action(inputs(account, **{"MAX-WAIT": "30"}))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["attempts"] == "2"
    assert float(run.outputs["waited-seconds"]) >= 1.5
    assert "Rate limited" in run.stdout and "2 s (server message)" in run.stdout
    calls = distribute_calls(account)
    assert [r["status"] for r in calls] == [429, 200]
    assert calls[1]["time"] - calls[0]["time"] >= 2.0


def test_429_beyond_max_wait_exits_5_with_eta(account: Emulator, action: Action) -> None:
    account.configure(interval=600)
    assert action(inputs(account)).exit_code == 0
    run = action(inputs(account, **{"MAX-WAIT": "5"}))
    assert run.exit_code == 5
    assert run.outputs["error"] == "rate-limited"
    assert run.outputs["http-status"] == "429"
    assert "max-wait" in run.summary
    assert_no_leak(run)


def test_ids_from_repository_dispatch_payload(account: Emulator, action: Action) -> None:
    payload = {"event": "build.approved", "projectId": PROJECT, "uploadId": UPLOAD,
               "fileUrl": "https://bucket.s3.amazonaws.com/b.zip", "status": "Approved",
               "objection": None, "timestamp": "2026-11-27T10:00:00.000Z"}
    run = action({k: v for k, v in inputs(account).items()
                  if k not in ("PROJECT-ID", "UPLOAD-ID")},
                 event={"action": "streampixel", "client_payload": payload})
    assert run.exit_code == 0, run.stdout
    assert distribute_calls(account)[0]["projectId"] == PROJECT


def test_rejected_build_payload_fails_with_objection(account: Emulator, action: Action) -> None:
    payload = {"event": "build.rejected", "projectId": PROJECT, "uploadId": UPLOAD,
               "fileUrl": None, "status": "Reject", "objection": "No executable in archive",
               "timestamp": "2026-11-27T10:00:00.000Z"}
    run = action({k: v for k, v in inputs(account).items()
                  if k not in ("PROJECT-ID", "UPLOAD-ID")},
                 event={"client_payload": payload})
    assert run.exit_code == 4
    assert "No executable in archive" in run.summary
    assert distribute_calls(account) == []


def test_underscore_inputs_and_env_fallback(account: Emulator, tmp_path: Path) -> None:
    full = inputs(account)
    underscored = {k.replace("-", "_"): v for k, v in full.items() if k != "API-KEY"}
    underscored["API-KEY"] = ""  # the runner passes unset inputs as empty: must fall through
    run = run_action(tmp_path, underscored, env={"STREAMPIXEL_API_KEY": LEAK_KEY + "\n"})
    assert run.exit_code == 0, run.stdout
    assert distribute_calls(account)[0]["api_key_ok"] is True


def test_plain_ci_json_dotenv_and_summary_file(account: Emulator, tmp_path: Path) -> None:
    env = {f"STREAMPIXEL_{k.replace('-', '_')}": v for k, v in inputs(account).items()}
    dotenv, summary = tmp_path / "out.env", tmp_path / "summary.md"
    run = run_action(tmp_path / "run", {}, env=env, github=False,
                     args=["--json", "--dotenv", str(dotenv), "--summary-file", str(summary)])
    assert run.exit_code == 0, run.stderr
    data = json.loads(run.stdout)
    assert data["status"] == "triggered"
    assert "::" not in run.stderr  # no workflow commands outside GitHub
    lines = dotenv.read_text().splitlines()
    assert "STREAMPIXEL_STATUS=triggered" in lines
    assert "STREAMPIXEL_HTTP_STATUS=200" in lines
    assert all(line.split("=", 1)[0].replace("_", "").isalnum() for line in lines)
    assert len(lines) < 20
    assert "✅" in summary.read_text()
    for text in (run.stdout, run.stderr, dotenv.read_text(), summary.read_text()):
        assert LEAK_KEY not in text


def test_redirect_is_not_followed(account: Emulator, action: Action) -> None:
    account.fault(path="distribute-file", status=307,
                  headers={"Location": "http://127.0.0.1:9/elsewhere"})
    run = action(inputs(account))
    assert run.exit_code == 6
    assert "redirect" in run.summary.lower()
    assert "127.0.0.1" in run.summary
    assert_no_leak(run)


#: The product with a bug planted where the call is made: an exception the program does not
#: expect, whose text holds the API key (as a careless f-string in a library would).
BUGGY_ENTRYPOINT = r"""
import runpy, sys
from streampixel_distribute import api

def distribute(self, *, api_key, user_id, project_id, upload_id):
    raise ValueError(f"cannot send header Authorization: {api_key}\n" + "detail " * 300)

api.StreampixelClient.distribute = distribute
runpy.run_module("streampixel_distribute", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("debug", [False, True], ids=["plain", "RUNNER_DEBUG"])
def test_a_bug_exits_1_with_a_scrubbed_traceback_only_when_debugging(
        account: Emulator, tmp_path: Path, debug: bool) -> None:
    """Any unexpected exception is exit 1, `internal-error`, and says how to report it; the
    traceback is shown only with RUNNER_DEBUG=1 (or --debug), and the key never, in either."""
    run = run_action(tmp_path, inputs(account), env={"RUNNER_DEBUG": "1"} if debug else {},
                     program=["-c", BUGGY_ENTRYPOINT])
    assert run.exit_code == 1, run.stdout + run.stderr
    assert run.outputs["error"] == "internal-error"
    assert run.outputs["status"] == "failed"
    # One line of the bug's text, cut short, then the fix.
    annotation = next(line for line in run.stdout.splitlines() if line.startswith("::error"))
    message, fix = annotation.split("%0AFix: ")
    assert message.startswith("::error title=Internal error (a bug)::ValueError: cannot send "
                              "header Authorization: *** detail detail")
    assert message.endswith("….") and len(message) < 400
    assert fix.startswith("Please report it")
    assert_no_leak(run)
    assert_masked_first(run)
    shown = run.stdout + run.stderr
    if debug:
        assert "Traceback (most recent call last):" in shown
        assert "in distribute" in shown  # the frame of the bug
        assert "ValueError: cannot send header Authorization: ***" in shown
    else:
        assert "Traceback" not in shown
    assert distribute_calls(account) == []


def test_guarded_hands_a_bugs_traceback_over_scrubbed() -> None:
    """The traceback reaches `on_bug` (the debug log, the listener's JSON log) already
    scrubbed; the error says which exception it was, in one short line."""
    from streampixel_distribute import redact
    from streampixel_distribute.cli import guarded
    from streampixel_distribute.errors import InternalError

    redact.register(LEAK_KEY)
    traces: list[str] = []

    def bug() -> None:
        raise KeyError(f"no such header: {LEAK_KEY}")

    error = guarded(bug, on_bug=traces.append)
    assert isinstance(error, InternalError)
    assert (error.code, error.detail) == (1, "KeyError: 'no such header: ***'")
    assert len(traces) == 1
    assert traces[0].startswith("Traceback (most recent call last):")
    assert "in bug" in traces[0] and LEAK_KEY not in traces[0]
