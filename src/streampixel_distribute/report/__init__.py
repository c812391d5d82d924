"""The one place that writes to the runner: logs, masks, annotations, outputs and the summary.

Inside GitHub Actions, logs and workflow commands go to stdout (the runner reads commands there),
outputs to `$GITHUB_OUTPUT` and the summary to `$GITHUB_STEP_SUMMARY`. Elsewhere human logs go to
stderr so stdout stays clean for `--json`. Every string passes through `redact.scrub` here, the
last gate before anything leaves the process.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import TextIO

from ..errors import DistributeError, InvalidInput
from ..redact import scrub
from . import github
from .record import OUTPUT_NAMES, Report, Status, build_report
from .summary import render_summary

__all__ = ["OUTPUT_NAMES", "Report", "Reporter", "Status", "build_report"]

class Reporter:
    def __init__(
        self,
        *,
        on_github: bool,
        environ: Mapping[str, str] | None = None,
        json_stdout: bool = False,
        dotenv: str | None = None,
        summary_file: str | None = None,
        output_file: str | None = None,
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

    def finish(self, report: Report) -> None:
        """Write outputs and the summary everywhere asked for; a file that cannot be written is
        a warning, not a failure (the run's result stands)."""
        outputs = report.outputs()
        summary = scrub(render_summary(report))
        writes: list[tuple[str, Callable[[], object]]] = []
        if self.on_github:
            output_path = self.environ.get("GITHUB_OUTPUT")
            if output_path:
                writes.append(("$GITHUB_OUTPUT", lambda: github.append(
                    output_path, github.output_records(outputs))))
            summary_path = self.environ.get("GITHUB_STEP_SUMMARY")
            if summary_path:
                writes.append(("$GITHUB_STEP_SUMMARY",
                               lambda: github.append(summary_path, summary + "\n")))
        for path, render in ((self.output_file, lambda: _plain().name_value(outputs)),
                             (self.summary_file, lambda: summary + "\n"),
                             (self.dotenv, lambda: _plain().dotenv(outputs))):
            if path is not None:
                writes.append((path, functools.partial(_write_text, path, render)))
        for what, write in writes:
            try:
                write()
            except OSError as exc:
                self.warning(f"could not write {what}: {scrub(str(exc))}",
                             title="Output not written")
        if self.json_stdout:
            self.stdout.write(json.dumps(outputs) + "\n")
            self.stdout.flush()


def _write_text(path: str, render: Callable[[], str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render())


def _plain() -> ModuleType:
    from . import plain  # noqa: PLC0415 - only the files of other CI systems need it

    return plain
