"""Reporter formats: the dotenv limits GitLab enforces, the summary's content, and writing the
runner's files from the environment mapping the CLI was given."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from streampixel_distribute.cli import main
from streampixel_distribute.coordinator import Progress
from streampixel_distribute.errors import NotFound
from streampixel_distribute.redact import shorten_id
from streampixel_distribute.report import build_report
from streampixel_distribute.report.plain import dotenv
from streampixel_distribute.report.summary import render_summary
from streampixel_distribute.settings import Command, load
from support.runner import parse_output_file


def test_dotenv_fits_gitlab_limits() -> None:
    outputs = {f"out-{i}": ("x\ny\"z " * 500) for i in range(30)}
    text = dotenv(outputs)
    lines = text.splitlines()
    assert len(lines) < 20
    assert len(text.encode()) < 5 * 1024
    for line in lines:
        name, value = line.split("=", 1)
        assert re.fullmatch(r"[A-Z0-9_]+", name)
        assert '"' not in value
        assert "\n" not in value


def test_summary_on_failure_has_cause_fix_and_short_user() -> None:
    progress = Progress()
    progress.attempts = 1
    error = NotFound("HTTP 404: Project not found", hint="Check `project-id`.", http_status=404)
    job = load(Command.DISTRIBUTE, {}, {
        "STREAMPIXEL_API_KEY": "sk-report-test-1234", "STREAMPIXEL_USER_ID":
        "663d0a1b2c3e4f5a6b7c8d9e", "STREAMPIXEL_PROJECT_ID": "664f1a2b3c4d5e6f7a8b9c0d",
        "STREAMPIXEL_UPLOAD_ID": "665a2b3c4d5e6f7a8b9c0e1f", "STREAMPIXEL_LEDGER": "none"})
    report = build_report(job.command, job, progress, None, error)
    assert report.outputs()["http-status"] == "404"
    text = render_summary(report)
    assert "`664f1a2b3c4d5e6f7a8b9c0d`" in text and "`665a2b3c4d5e6f7a8b9c0e1f`" in text
    assert "❌" in text
    assert "### What went wrong" in text
    assert "HTTP 404: Project not found." in text
    assert "### How to fix it" in text and "Check `project-id`." in text
    assert "663d0a1b2c3e4f5a6b7c8d9e" not in text
    assert shorten_id("663d0a1b2c3e4f5a6b7c8d9e") in text


def test_runner_files_come_from_the_given_mapping(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "out"),
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
           "STREAMPIXEL_API_KEY": "sk-in-process-123456"}
    assert main([], env) == 2
    outputs = parse_output_file((tmp_path / "out").read_text())
    assert outputs["status"] == "failed"
    assert outputs["error"] == "invalid-input"
    assert "`user-id`" in (tmp_path / "summary").read_text()
    assert "GITHUB_OUTPUT" not in os.environ  # borrowed for the library call, then restored


def test_an_output_file_that_cannot_be_written_is_a_warning_not_a_failure(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The run's result stands (exit 0, $GITHUB_OUTPUT written); the file asked for with
    --output-file gets a warning that names it and the reason."""
    missing = tmp_path / "no-such-dir" / "outputs.txt"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "out"),
           "STREAMPIXEL_API_KEY": "sk-in-process-123456",
           "STREAMPIXEL_USER_ID": "663d0a1b2c3e4f5a6b7c8d9e",
           "STREAMPIXEL_PROJECT_ID": "664f1a2b3c4d5e6f7a8b9c0d",
           "STREAMPIXEL_UPLOAD_ID": "665a2b3c4d5e6f7a8b9c0e1f", "STREAMPIXEL_LEDGER": "none",
           "STREAMPIXEL_API_URL": "http://127.0.0.1:9/pixelStripeApi"}
    assert main(["--dry-run", "--output-file", str(missing)], env) == 0
    out = capsys.readouterr().out
    assert (f"::warning title=Output not written::could not write {missing}: [Errno 2] No such "
            f"file or directory: '{missing}'") in out
    assert parse_output_file((tmp_path / "out").read_text())["status"] == "dry-run"
    assert not missing.parent.exists()
