"""Command line: the main job, the emulator and the listener.

`main` is the one place that catches errors and picks the exit code. Expected failures are
`DistributeError`s and end with their own code and a fix; anything else is a bug (exit 1) and shows
a traceback only with `--debug` or `RUNNER_DEBUG=1` (scrubbed even then).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from . import __version__, redact
from .api import StreampixelClient
from .clock import SystemClock
from .coordinator import Coordinator, Progress, choose_ledger, closing, iso
from .errors import DistributeError, exit_code_of
from .report import Report, Reporter, shorten_id
from .settings import INPUTS, load_settings, secret_candidates

SUBCOMMANDS = {"run": "", "emulator": ".emulator", "listen": ".listener",
               "test-webhook": ".webhook_test"}
BUG_EXIT = 1


class InternalError(DistributeError):
    kind = "internal-error"
    exit_code = BUG_EXIT
    default_title = "Internal error (a bug)"
    default_hint = (
        "Please report it at https://github.com/streampixel-distribute/streampixel-distribute/"
        "issues with the log (run with RUNNER_DEBUG=1 or --debug for a traceback)."
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streampixel-distribute",
        description="Trigger Streampixel build distribution, waiting for a free slot of the "
        "account's rate limit coordinated with every other job of that account. "
        "Other subcommands: `emulator` (local Streampixel stand-in), `listen` (webhook "
        "listener), `test-webhook`.",
        epilog="Every flag may also be given as STREAMPIXEL_<NAME> (e.g. STREAMPIXEL_API_KEY) or, "
        "inside GitHub Actions, as the action input. Prefer the environment for secrets: "
        "command lines are visible to other processes.",
    )
    for spec in INPUTS:
        parser.add_argument(f"--{spec.name}", dest=spec.name, default=None, metavar="VALUE",
                            help=spec.description)
    parser.add_argument("--json", action="store_true", help="print the outputs as one JSON "
                        "object on stdout (logs go to stderr)")
    parser.add_argument("--dotenv", type=Path, metavar="FILE",
                        help="write the outputs as a GitLab dotenv report (STREAMPIXEL_STATUS=…)")
    parser.add_argument("--summary-file", type=Path, metavar="FILE",
                        help="write the Markdown summary to FILE")
    parser.add_argument("--output-file", type=Path, metavar="FILE",
                        help="write the outputs as name=value lines to FILE")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in SUBCOMMANDS:
        command, args = args[0], args[1:]
        if command != "run":
            # Imported on demand: the main job never pays for the emulator or the listener.
            module = importlib.import_module(SUBCOMMANDS[command], __package__)
            entry: Callable[[list[str]], int] = module.main
            return entry(args)
    return run(args, os.environ)


def run(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """The main job: validate, wait for a slot, distribute, report. Returns the exit code."""
    parsed = _parser().parse_args(argv)
    on_github = environ.get("GITHUB_ACTIONS") == "true"
    debug = bool(parsed.debug) or environ.get("RUNNER_DEBUG") == "1"
    flags: dict[str, str | None] = {
        name: value for name, value in vars(parsed).items()
        if name not in ("json", "dotenv", "summary_file", "output_file", "debug")
    }
    reporter = Reporter(
        on_github=on_github, environ=environ, json_stdout=parsed.json, dotenv=parsed.dotenv,
        summary_file=parsed.summary_file, output_file=parsed.output_file,
    )
    # Masks first: nothing may be printed before the runner knows what to hide.
    for secret in secret_candidates(flags, environ):
        redact.register(secret)
    reporter.mask(list(redact.registered()))

    clock = SystemClock()
    clock.install_signal_handlers()
    progress = Progress()
    report = Report(status="failed")
    try:
        try:
            report.status = _job(flags, environ, clock, reporter, progress, report)
        finally:
            clock.shield()  # a late SIGTERM must not interrupt writing the outputs
    except DistributeError as exc:
        report.error = exc
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into exit 1
        report.error = InternalError(f"{type(exc).__name__}: {redact.scrub(str(exc))[:300]}")
        if debug:
            reporter.info(redact.scrub(traceback.format_exc()))

    error = report.error
    if error is not None:
        report.status = "failed"
        report.message = report.message or error.server_message or error.title
        reporter.error(error)
    report.attempts = progress.attempts
    report.waited = progress.waited
    report.slot_at = iso(progress.slot_at)
    report.triggered_at = iso(progress.triggered_at)
    report.http_status = progress.http_status if error is None else (
        error.http_status if error.http_status is not None else progress.http_status)
    report.ledger = report.ledger or progress.ledger
    report.position = progress.position
    report.warnings.extend(progress.warnings)
    reporter.finish(report)
    if error is None:
        reporter.info(f"Done: {report.status}. {report.message}")
    return exit_code_of(error) if error is not None else 0


def _job(
    flags: Mapping[str, str | None],
    environ: Mapping[str, str],
    clock: SystemClock,
    reporter: Reporter,
    progress: Progress,
    report: Report,
) -> str:
    settings = load_settings(flags, environ)
    report.project_id, report.upload_id = settings.project_id, settings.upload_id
    report.user_id = settings.user_id
    for warning in settings.warnings:
        reporter.warning(warning, title="Input")
    reporter.info(
        f"streampixel-distribute {__version__}: project {settings.project_id}, upload "
        f"{settings.upload_id}, account {shorten_id(settings.user_id)}"
        + (" (dry run)" if settings.dry_run else "")
    )
    with closing(choose_ledger(settings, environ, clock, reporter)) as ledger:
        progress.ledger = ledger.description
        client = StreampixelClient(settings.api_url, timeout=settings.timeout)
        coordinator = Coordinator(settings, ledger=ledger, client=client, clock=clock,
                                  log=reporter, progress=progress)
        if settings.dry_run:
            coordinator.dry_run()
            report.message = "Dry run: inputs valid, nothing sent"
            return "dry-run"
        try:
            result = coordinator.run()
        finally:
            report.ledger = ledger.description
        report.message = result.message
        return "triggered"

