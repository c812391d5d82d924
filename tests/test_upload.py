"""The upload and reserve commands end to end: the product under the runner's contract (and as
the CLI), against the real emulator over HTTP.

A presigned file URL is a credential: every path checks that it, its query, the signature on its
own and their base64 forms appear nowhere anyone can read, and that it was masked first.
"""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import product
from support.commands import act_parse, github_parse
from support.emulator import Emulator
from support.runner import LEAK_KEY, LEAK_TOKEN, ActionRun, base_env, run_action

USER = "6a1b2c3d4e5f60718293a4b5"
PROJECT = "6a1b2c3d4e5f60718293b001"
OTHER_PROJECT = "6a1b2c3d4e5f60718293b009"
SIGNATURE = "5f2c0b1e9d8a7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a291807f6e5d4c3b2a19080"
CREDENTIAL = "AKIAIOSFODNN7EXAMPLE/20261201/us-east-1/s3/aws4_request"
#: What a presigned S3 link looks like (the query is the credential).
PRESIGNED = (
    "https://builds-example.s3.amazonaws.com/showroom/Build-1234.zip"
    f"?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={urllib.parse.quote(CREDENTIAL, safe='')}"
    f"&X-Amz-Date=20261201T120000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={SIGNATURE}"
)

Action = Callable[..., ActionRun]


@pytest.fixture
def account(emulator: Emulator) -> Emulator:
    emulator.add_account(USER, LEAK_KEY, [{"projectId": PROJECT, "uploads": []}])
    return emulator


def inputs(emulator: Emulator, command: str = "upload", **kw: str) -> dict[str, str]:
    base = {
        "COMMAND": command, "API-KEY": LEAK_KEY, "USER-ID": USER, "PROJECT-ID": PROJECT,
        "FILE-URL": PRESIGNED, "API-URL": emulator.url, "LEDGER": "none",
        "GITHUB-TOKEN": LEAK_TOKEN, "TIMEOUT": "5", "RETRIES": "1",
    }
    if command != "upload":
        del base["FILE-URL"]
    base.update({k.upper(): v for k, v in kw.items()})
    return base


def secret_forms(*secrets: str) -> list[str]:
    forms = []
    for secret in secrets:
        forms += [secret, urllib.parse.quote(secret, safe=""),
                  base64.b64encode(secret.encode()).decode(),
                  base64.urlsafe_b64encode(secret.encode()).decode().rstrip("=")]
    return forms


def assert_nothing_leaked(run: ActionRun, url: str = PRESIGNED) -> None:
    text = run.everything()
    query = url.partition("?")[2]
    for form in secret_forms(LEAK_KEY, LEAK_TOKEN, url, query, SIGNATURE, CREDENTIAL):
        assert form not in text, f"a secret form {form[:12]}… leaked"


def assert_url_masked_first(run: ActionRun, url: str = PRESIGNED) -> None:
    """Masked before anything else was printed, as both kinds of runner read the commands."""
    lines = [line for line in run.stdout.splitlines() if line.strip()]
    first = len(lines) - len([line for line in lines if not line.startswith("::add-mask::")])
    assert all(line.startswith("::add-mask::") for line in lines[:first]), "printed before masks"
    for parse in (github_parse, act_parse):
        commands = [parse(line) for line in lines[:first]]
        masks = [c.data for c in commands if c is not None and c.name == "add-mask"]
        assert url in masks and SIGNATURE in masks
    assert SIGNATURE in masks  # the signature alone, as a runner may print a piece of the URL


def upload_calls(emulator: Emulator) -> list[dict[str, Any]]:
    return emulator.requests("upload-file")


def uploads(emulator: Emulator, project: str = PROJECT) -> list[dict[str, Any]]:
    for user in emulator.state()["accounts"]:
        for found in user["projects"]:
            if found["projectId"] == project:
                return list(found["uploads"])
    raise AssertionError(f"project {project} not in the emulator")


# --- upload ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
def test_upload_succeeds_with_200_or_201_and_returns_the_upload_id(
        account: Emulator, action: Action, status: int) -> None:
    account.configure(upload_status=status)  # the docs give both
    run = action(inputs(account))
    assert run.exit_code == 0, run.stdout + run.stderr
    out = run.outputs
    assert (out["status"], out["http-status"], out["attempts"], out["error"]) == \
        ("uploaded", str(status), "1", "")
    assert out["message"] == "Build queued for processing"
    [call] = upload_calls(account)
    assert call["status"] == status and call["api_key_ok"] is True
    assert call["file_url_query"] is True  # the whole presigned URL reached the server
    assert out["upload-id"] == call["uploadId"]
    [build] = uploads(account)
    assert build["uploadId"] == out["upload-id"] and build["autoRelease"] is True
    assert "✅ Streampixel upload" in run.summary
    assert out["upload-id"] in run.summary and PROJECT in run.summary
    assert "hidden (a presigned link is a credential)" in run.summary
    # The one warning about query strings, as the docs disagree about them.
    assert run.stdout.count("has a query string") == 1
    assert_url_masked_first(run)
    assert_nothing_leaked(run)


def test_auto_release_false_holds_the_build_until_distribute(account: Emulator,
                                                             action: Action) -> None:
    account.configure(interval=0, processing_seconds=0)
    uploaded = action(inputs(account, **{"AUTO-RELEASE": "false"}))
    assert uploaded.exit_code == 0, uploaded.stdout + uploaded.stderr
    upload_id = uploaded.outputs["upload-id"]
    assert "held after approval until a distribute call" in uploaded.summary
    [build] = uploads(account)
    assert (build["autoRelease"], build["state"], build["distributions"]) == \
        (False, "awaiting distribution", 0)
    distributed = action(inputs(account, "distribute", **{"UPLOAD-ID": upload_id}))
    assert distributed.exit_code == 0, distributed.stdout + distributed.stderr
    assert distributed.outputs["status"] == "triggered"
    assert distributed.outputs["upload-id"] == upload_id
    [build] = uploads(account)
    assert build["distributions"] == 1


def test_auto_release_must_be_a_boolean(account: Emulator, action: Action) -> None:
    run = action(inputs(account, **{"AUTO-RELEASE": "no"}))
    assert run.exit_code == 2
    assert "`auto-release`" in run.summary
    assert upload_calls(account) == []


@pytest.mark.parametrize(
    ("override", "code", "kind", "status", "fix_words"),
    [
        ({"API-KEY": "sk-wrong-key-1234567"}, 3, "unauthorized", "401", "STREAMPIXEL_API_KEY"),
        ({"USER-ID": "6a1b2c3d4e5f60718293ffff"}, 3, "unauthorized", "401", "user-id"),
        ({"PROJECT-ID": OTHER_PROJECT}, 4, "not-found", "404", "project-id"),
    ],
)
def test_upload_errors_name_the_input_and_the_fix(account: Emulator, action: Action,
                                                  override: dict[str, str], code: int,
                                                  kind: str, status: str,
                                                  fix_words: str) -> None:
    run = action(inputs(account, **override))
    assert run.exit_code == code, run.stdout + run.stderr
    out = run.outputs
    assert (out["status"], out["error"], out["http-status"], out["attempts"]) == \
        ("failed", kind, status, "1")
    assert out["upload-id"] == ""
    assert "❌ Streampixel upload failed" in run.summary
    assert fix_words in run.summary and fix_words in run.stdout
    assert "Traceback" not in run.stdout + run.stderr
    assert_url_masked_first(run)
    assert_nothing_leaked(run)


def test_a_400_for_the_file_url_is_an_input_error_even_when_it_echoes_the_url(
        account: Emulator, action: Action) -> None:
    """The server refuses the link (say, for its query string) and quotes it back."""
    account.fault(path="/projects/upload-file", status=400,
                  body=json.dumps({"message": f"Invalid fileUrl: {PRESIGNED}"}))
    run = action(inputs(account))
    assert run.exit_code == 2, run.stdout + run.stderr
    assert run.outputs["error"] == "invalid-input"
    assert run.outputs["http-status"] == "400"
    assert "`file-url`" in run.summary
    assert "without one" in run.summary  # the query-string advice
    assert "Invalid fileUrl" in run.summary  # the server's words, with the link scrubbed
    assert_nothing_leaked(run)


def test_a_429_for_upload_waits_as_told_on_a_fresh_slot(account: Emulator,
                                                             action: Action) -> None:
    account.configure(interval=2)
    account.fault(path="/projects/upload-file", status=429, headers={"Retry-After": "2"},
                  body=json.dumps({"message": "Rate limit exceeded. Try again in 2 minutes."}))
    run = action(inputs(account, **{"RATE-LIMIT-INTERVAL": "2", "MAX-WAIT": "30"}))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.outputs["attempts"] == "2"
    assert [c["status"] for c in upload_calls(account)] == [429, 200]
    assert "Rate limited" in run.stdout


def test_a_429_for_upload_past_max_wait_is_exit_5(account: Emulator, action: Action) -> None:
    account.fault(path="/projects/upload-file", status=429,
                  body=json.dumps({"message": "Rate limit exceeded. Try again in 2 minutes."}))
    run = action(inputs(account, **{"MAX-WAIT": "10"}))
    assert run.exit_code == 5, run.stdout + run.stderr
    assert (run.outputs["error"], run.outputs["http-status"]) == ("rate-limited", "429")
    assert "max-wait" in run.summary
    assert_nothing_leaked(run)


# The link is never quoted back: only its host, as it may be presigned.
BAD_LINKS = [
    ("https://drive.google.com/file/d/abc123/view?usp=sharing", "Google Drive page"),
    ("https://www.dropbox.com/s/abc123/Build.zip?dl=0", "Dropbox sharing (`?dl=0`)"),
    ("https://github.com/acme/game/blob/main/Build.zip", "github.com file view"),
    ("http://builds.example.com/Build.zip", "plain http"),
    ("ftp://builds.example.com/Build.zip", "not an https:// link"),
    ("https://builds.example.com/Build.7z?X-Amz-Signature=0123456789abcdef",
     "does not name a .zip"),
    ("builds.example.com/Build.zip", "not an https:// link"),
]


@pytest.mark.parametrize(("url", "said"), BAD_LINKS)
def test_a_link_that_is_not_a_direct_zip_download_is_refused_before_any_call(
        account: Emulator, action: Action, url: str, said: str) -> None:
    run = action(inputs(account, **{"FILE-URL": url}))
    assert run.exit_code == 2, run.stdout + run.stderr
    assert run.outputs["error"] == "invalid-input"
    assert "`file-url`" in run.summary and said in run.summary
    assert "direct https link" in run.summary or "https://" in run.summary
    assert upload_calls(account) == []
    text = run.everything()
    assert url not in text
    assert "0123456789abcdef" not in text  # the signature of the presigned one


def test_an_http_link_on_loopback_is_accepted(account: Emulator, action: Action) -> None:
    run = action(inputs(account, **{"FILE-URL": "http://127.0.0.1:8000/Build.zip"}))
    assert run.exit_code == 0, run.stdout + run.stderr
    assert "query string" not in run.stdout  # no query, no warning


def test_upload_needs_a_file_url(account: Emulator, action: Action) -> None:
    given = inputs(account)
    del given["FILE-URL"]
    run = action(given)
    assert run.exit_code == 2
    assert "`file-url`" in run.summary
    assert upload_calls(account) == []


def test_an_unknown_command_is_refused(account: Emulator, action: Action) -> None:
    run = action(inputs(account, "distribution"))
    assert run.exit_code == 2
    assert "`command`" in run.summary and "upload" in run.summary
    assert account.requests() == []


def test_the_url_stays_out_of_the_ledger_and_the_dry_run(account: Emulator, action: Action,
                                                         tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.json"
    run = action(inputs(account, **{"LEDGER": f"file://{ledger}"}))
    assert run.exit_code == 0, run.stdout + run.stderr
    stored = ledger.read_text()
    for form in secret_forms(PRESIGNED, SIGNATURE):
        assert form not in stored
    dry = action(inputs(account, **{"LEDGER": f"file://{ledger}", "DRY-RUN": "true"}))
    assert dry.exit_code == 0 and dry.outputs["status"] == "dry-run"
    assert "upload-file" in dry.stdout
    assert_nothing_leaked(dry)
    assert len(upload_calls(account)) == 1


def test_the_cli_uploads_with_a_subcommand_and_writes_json(account: Emulator,
                                                           tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env |= {"STREAMPIXEL_API_KEY": LEAK_KEY, "STREAMPIXEL_FILE_URL": PRESIGNED}
    proc = subprocess.run(
        [*product.command("upload"), "--api-url", account.url,
         "--user-id", USER, "--project-id", PROJECT, "--auto-release", "false",
         "--ledger", "none", "--json", "--dotenv", str(tmp_path / "out.env")],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout)
    assert out["status"] == "uploaded" and len(out["upload-id"]) == 24
    assert f"STREAMPIXEL_UPLOAD_ID={out['upload-id']}" in (tmp_path / "out.env").read_text()
    [build] = uploads(account)
    assert build["autoRelease"] is False
    for form in secret_forms(PRESIGNED, SIGNATURE):
        assert form not in proc.stdout + proc.stderr


# --- reserve ---------------------------------------------------------------------------------


def test_reserve_exits_at_the_slot_with_outputs_and_calls_nothing(account: Emulator,
                                                                  tmp_path: Path) -> None:
    ledger = f"file://{tmp_path}/ledger.json"
    # 6 s: the reserve must start within the upload's interval even on a loaded machine.
    account.configure(interval=6)
    first = run_action(tmp_path / "first", inputs(account, "upload", LEDGER=ledger,
                                                  **{"RATE-LIMIT-INTERVAL": "6"}))
    assert first.exit_code == 0, first.stdout + first.stderr
    reserved = run_action(tmp_path / "reserve", inputs(account, "reserve", LEDGER=ledger,
                                                       **{"RATE-LIMIT-INTERVAL": "6"}))
    assert reserved.exit_code == 0, reserved.stdout + reserved.stderr
    out = reserved.outputs
    assert (out["status"], out["attempts"], out["http-status"], out["error"]) == \
        ("reserved", "0", "", "")
    assert out["position"] == "1"
    assert float(out["waited-seconds"]) >= 1  # it waited for the upload's interval
    assert out["slot-at"] == out["triggered-at"]
    assert "rate-limit slot reached" in reserved.summary
    assert "Project" not in reserved.summary  # reserve is about the account only
    assert len(account.requests()) == 1  # the upload's: reserve sends nothing
    # The caller's own call, made now, is one interval after the upload: no 429.
    caller = run_action(tmp_path / "caller", inputs(account, "upload", LEDGER="none"))
    assert caller.exit_code == 0, caller.stdout + caller.stderr
    assert [c["status"] for c in account.requests()] == [200, 200]


def test_reserve_needs_no_project(account: Emulator, tmp_path: Path) -> None:
    env = base_env(tmp_path) | {"STREAMPIXEL_API_KEY": LEAK_KEY}
    proc = subprocess.run(
        [*product.command("reserve"), "--api-url", account.url,
         "--user-id", USER, "--ledger", f"file://{tmp_path}/l.json", "--dotenv",
         str(tmp_path / "out.env")],
        env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dotenv = (tmp_path / "out.env").read_text()
    assert "STREAMPIXEL_STATUS=reserved" in dotenv and "STREAMPIXEL_ATTEMPTS=0" in dotenv
    assert LEAK_KEY not in proc.stdout + proc.stderr + dotenv
