"""The one place that writes to the runner: logs, masks, annotations, outputs and the summary.

Inside GitHub Actions, logs and workflow commands go to stdout (the runner reads commands there),
outputs to `$GITHUB_OUTPUT` and the summary to `$GITHUB_STEP_SUMMARY`. Elsewhere human logs go to
stderr so stdout stays clean for `--json`. Every string passes through `redact.scrub` here, the
last gate before anything leaves the process.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from ..errors import DistributeError, InvalidInput
from ..redact import scrub
from . import github, plain
from .summary import render_summary

OUTPUT_NAMES = (
    "status", "message", "http-status", "attempts", "waited-seconds", "slot-at",
    "triggered-at", "error", "ledger", "position",
)


@dataclass
class Report:
    """Everything the final outputs and summary say about one run."""

    status: str  # triggered | dry-run | failed
    message: str = ""
    http_status: int | None = None
    attempts: int = 0
    waited: float = 0.0
    slot_at: str = ""
    triggered_at: str = ""
    error: DistributeError | None = None
    ledger: str = ""
    position: int | None = None
    project_id: str = ""
    upload_id: str = ""
    user_id: str = ""
    warnings: list[str] = field(default_factory=list)

    def outputs(self) -> dict[str, str]:
        values = {
            "status": self.status,
            "message": self.message,
            "http-status": "" if self.http_status is None else str(self.http_status),
            "attempts": str(self.attempts),
            "waited-seconds": f"{round(self.waited)}",
            "slot-at": self.slot_at,
            "triggered-at": self.triggered_at,
            "error": self.error.kind if self.error else "",
            "ledger": self.ledger,
            "position": "" if self.position is None else str(self.position),
        }
        return {name: scrub(values[name]) for name in OUTPUT_NAMES}


def shorten_id(value: str) -> str:
    """User ids are semi-secret: show enough to recognise, not enough to reuse."""
    return value if len(value) <= 8 else f"{value[:4]}…{value[-4:]}"


class Reporter:
    def __init__(
        self,
        *,
        on_github: bool,
        environ: Mapping[str, str] | None = None,
        json_stdout: bool = False,
        dotenv: Path | None = None,
        summary_file: Path | None = None,
        output_file: Path | None = None,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.on_github = on_github
        self.environ = dict(environ or {})
        self.json_stdout = json_stdout
        self.dotenv = dotenv
        self.summary_file = summary_file
        self.output_file = output_file
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.masked: set[str] = set()

    # -- logs -------------------------------------------------------------------------------

    def _write(self, text: str) -> None:
        # On GitHub the runner reads commands from stdout; elsewhere stdout is kept for --json.
        stream = self.stdout if self.on_github else self.stderr
        stream.write(text + "\n")
        stream.flush()

    def _emit(self, message: str) -> None:
        """Plain log lines: scrubbed, and never readable as a workflow command."""
        for line in scrub(message).split("\n"):
            self._write(github.plain_line(line))

    def mask(self, values: list[str]) -> None:
        """`::add-mask::` each secret form; must run before anything else is printed."""
        if not self.on_github:
            return
        for value in values:
            for line in github.mask_commands(value):
                if line not in self.masked:
                    self.masked.add(line)
                    self._write(line)

    def info(self, message: str) -> None:
        self._emit(message)

    def notice(self, message: str, title: str = "") -> None:
        self._annotate("notice", message, title)

    def warning(self, message: str, title: str = "") -> None:
        self._annotate("warning", message, title)

    def error(self, error: DistributeError) -> None:
        lines = [error.detail]
        if isinstance(error, InvalidInput):
            lines = [str(p) for p in error.problems]
        else:
            lines[0] = lines[0].rstrip(".") + "."
            if error.hint:
                lines.append(f"Fix: {error.hint}")
        self._annotate("error", "\n".join(lines), error.title)

    def _annotate(self, kind: str, message: str, title: str) -> None:
        message, title = scrub(message), scrub(title)
        if self.on_github:
            self._write(github.command(kind, message, title=title))
        else:
            self._emit(f"{kind}: {title}" if title else f"{kind}:")
            for line in message.splitlines():
                self._emit(f"  {line}")

    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if self.on_github:
            self._write(github.command("group", scrub(title)))
            try:
                yield
            finally:
                self._write(github.command("endgroup"))
        else:
            self._emit(title)
            yield

    # -- the end ------------------------------------------------------------------------------

    def finish(self, report: Report) -> list[str]:
        """Write outputs and the summary everywhere asked for. Returns problems writing them."""
        outputs = report.outputs()
        summary = scrub(render_summary(report))
        problems: list[str] = []

        def attempt(what: str, action: object) -> None:
            try:
                action()  # type: ignore[operator]
            except OSError as exc:
                problems.append(f"could not write {what}: {scrub(str(exc))}")

        if self.on_github:
            output_path = self.environ.get("GITHUB_OUTPUT")
            if output_path:
                attempt("$GITHUB_OUTPUT",
                        lambda: github.append(output_path, github.output_records(outputs)))
            summary_path = self.environ.get("GITHUB_STEP_SUMMARY")
            if summary_path:
                attempt("$GITHUB_STEP_SUMMARY",
                        lambda: github.append(summary_path, summary + "\n"))
        if self.output_file:
            path = self.output_file
            attempt(str(path), lambda: path.write_text(plain.name_value(outputs), encoding="utf-8"))
        if self.summary_file:
            sfile = self.summary_file
            attempt(str(sfile), lambda: sfile.write_text(summary + "\n", encoding="utf-8"))
        if self.dotenv:
            dpath = self.dotenv
            attempt(str(dpath), lambda: dpath.write_text(plain.dotenv(outputs), encoding="utf-8"))
        if self.json_stdout:
            self.stdout.write(json.dumps(outputs) + "\n")
            self.stdout.flush()
        for problem in problems:
            self.warning(problem, title="Output not written")
        return problems
