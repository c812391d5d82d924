"""The command line: argv -> command -> exit code.

`streampixel-distribute [distribute] [options]` is the main job; `test-webhook`, `listen` and
`emulator` are the other subcommands, each with its own `--help`. Each command's flags come from
the table of inputs (settings/inputs.py); only the chosen command's parser is built, and only its
modules are imported.

`guarded` is the one place that catches errors; every command picks its exit code from what
it returns. Expected failures are
`DistributeError`s and end with their own code and a fix; anything else is a bug (exit 1) and shows
a traceback only with `--debug` or `RUNNER_DEBUG=1` (scrubbed even then). The report of a run is
built once, from the job, its progress and how it ended.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, TypeVar

from . import __version__, redact
from .errors import DistributeError, InternalError
from .settings.inputs import ACTION_COMMANDS, BY_NAME, Command, Input, Kind, inputs_of
from .settings.sources import first_given

if TYPE_CHECKING:
    import argparse

PROG = "streampixel-distribute"
DEFAULT_COMMAND = Command.DISTRIBUTE
#: Subcommands and what they do, for the top-level help.
SUBCOMMANDS = {
    Command.DISTRIBUTE: "trigger distribution of an uploaded build (the default)",
    Command.UPLOAD: "register a build's .zip by URL (the Upload File API)",
    Command.RESERVE: "wait for the account's next slot, for another tool's write call",
    Command.TEST_WEBHOOK: "have Streampixel send webhook.test to the project's webhook URL",
    Command.LISTEN: "receive Streampixel webhooks durably and act on them",
    Command.QUEUE: "show the account's reserved slots and who holds them (no API key needed)",
    "emulator": "run a local stand-in of the Streampixel API",
}
T = TypeVar("T")
Parsed = SimpleNamespace
#: Options of the write commands besides their inputs: switches, and the ones that name a file.
_SWITCHES = ("json", "debug")
_FILES = ("dotenv", "summary-file", "output-file")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """The command line; `environ` (default: the process environment) is every other input."""
    args = list(sys.argv[1:] if argv is None else argv)
    first = args[0] if args else ""
    if first == "emulator":
        # The emulator shares no code with the client it stands in for, its CLI included.
        from .emulator import main as emulator_main  # noqa: PLC0415

        return emulator_main(args[1:])
    if first in ("-h", "--help", "--version"):
        shown = parse(_top_parser(), args[:1])  # argparse prints and exits 0
        return shown if isinstance(shown, int) else 0
    env = os.environ if environ is None else environ
    if first in {c.value for c in Command}:
        command, args = Command(first), args[1:]
    else:
        command = chosen_command(env)
    parsed = fast_parse(command, args) or parse(build_parser(command), args)
    if isinstance(parsed, int):
        return parsed
    return _handler(command)(parsed, env)


def chosen_command(environ: Mapping[str, str]) -> Command:
    """The action's `command` input (or STREAMPIXEL_COMMAND); a value that names no command of
    the action leaves the default, and the input check reports it (exit 2)."""
    found = first_given(BY_NAME["command"], {}, environ)
    names = {command.value: command for command in ACTION_COMMANDS}
    return names.get(found[0], DEFAULT_COMMAND) if found else DEFAULT_COMMAND


def _handler(command: Command) -> Callable[[Parsed, Mapping[str, str]], int]:
    """The function that runs `command`, imported only when it is chosen."""
    if command is Command.LISTEN:
        from .listener import serve  # noqa: PLC0415 - only `listen` needs the server

        return serve
    if command is Command.TEST_WEBHOOK:
        from .webhook_test import test_webhook  # noqa: PLC0415

        return test_webhook
    if command is Command.QUEUE:
        from .queue_command import show_queue  # noqa: PLC0415

        return show_queue
    return functools.partial(run, command)


def parse(parser: argparse.ArgumentParser, argv: Sequence[str]) -> Parsed | int:
    """Parsed arguments, or the exit code argparse chose (2 for a usage error, 0 for --help)."""
    try:
        return SimpleNamespace(**vars(parser.parse_args(list(argv))))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2


def fast_parse(command: Command, argv: Sequence[str]) -> Parsed | None:
    """The usual command line of a write command, without argparse (which costs a third of
    the start-up): `--name value`, `--name=value`, `--dry-run` alone, the switches. None for
    anything else (help, abbreviations, a value that starts with `-`, an unknown option): argparse
    then parses it, and reports what is wrong. Tests check both agree on every line accepted."""
    if command not in ACTION_COMMANDS:
        return None
    specs = {spec.name: spec for spec in cli_inputs(command)}
    known = {*specs, *_SWITCHES, *_FILES}
    out: dict[str, object] = {spec.attribute: None for spec in specs.values()}
    out |= {"json": False, "debug": False} | {name.replace("-", "_"): None for name in _FILES}
    args = list(argv)
    while args:
        name, eq, value = args.pop(0).partition("=")
        if not name.startswith("--") or name[2:] not in known:
            return None
        name = name[2:]
        if name in _SWITCHES:
            if eq:
                return None
            out[name] = True
            continue
        if not eq:
            flag = name in specs and specs[name].kind is Kind.FLAG
            if flag and (not args or args[0].partition("=")[0][2:] in known):
                value = "true"  # `--dry-run` alone
            elif not args or args[0].startswith("-"):
                return None
            else:
                value = args.pop(0)
        out[name.replace("-", "_")] = value
    return SimpleNamespace(**out)


def flags_of(command: Command, parsed: Parsed) -> dict[str, str | None]:
    """The input flags given on the command line, by input name (None: not given)."""
    return {spec.name: getattr(parsed, spec.attribute, None) for spec in cli_inputs(command)}


def cli_inputs(command: Command) -> tuple[Input, ...]:
    """The inputs a subcommand takes as flags (the subcommand itself replaces `command`)."""
    return tuple(spec for spec in inputs_of(command) if spec.kind is not Kind.COMMAND)


def build_parser(command: Command) -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 - see fast_parse

    parser = argparse.ArgumentParser(
        prog=f"{PROG} {command.value}" if command is not DEFAULT_COMMAND else PROG,
        description=SUBCOMMANDS[command].capitalize() + ".",
        epilog="Every flag may also be given as STREAMPIXEL_<NAME> (e.g. STREAMPIXEL_API_KEY) or, "
        "inside GitHub Actions, as the action input. Prefer the environment for secrets: "
        "command lines are visible to other processes.",
    )
    for spec in cli_inputs(command):
        if spec.kind is Kind.FLAG:
            # `--dry-run` alone means true; `--dry-run false` still works.
            parser.add_argument(spec.flag, dest=spec.attribute, nargs="?", const="true",
                                metavar="true|false", help=spec.description)
        else:
            parser.add_argument(spec.flag, dest=spec.attribute, metavar="VALUE",
                                help=spec.description)
    if command is Command.LISTEN:
        from .listener.config import add_arguments  # noqa: PLC0415

        add_arguments(parser)
        return parser
    parser.add_argument("--json", action="store_true", help="print the outputs as one JSON "
                        "object on stdout (logs go to stderr)")
    if command in (Command.TEST_WEBHOOK, Command.QUEUE):
        return parser
    parser.add_argument("--dotenv", metavar="FILE",
                        help="write the outputs as a GitLab dotenv report (STREAMPIXEL_STATUS=…)")
    parser.add_argument("--summary-file", metavar="FILE",
                        help="write the Markdown summary to FILE")
    parser.add_argument("--output-file", metavar="FILE",
                        help="write the outputs as name=value lines to FILE")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def _top_parser() -> argparse.ArgumentParser:
    import argparse  # noqa: PLC0415 - see fast_parse

    parser = argparse.ArgumentParser(
        prog=PROG, description="Ship an Unreal Engine build to Streampixel from CI, one "
        "account-wide rate-limit slot at a time. With no subcommand, `distribute` runs.",
        epilog=f"`{PROG} <command> --help` shows a command's options.")
    commands = parser.add_subparsers(title="commands", metavar="<command>")
    for name, text in SUBCOMMANDS.items():
        commands.add_parser(str(name), help=text)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def run(command: Command, parsed: Parsed, environ: Mapping[str, str]) -> int:
    """A write command: load the job, run it, report. Returns the exit code."""
    # Imported here: `--help` and the other subcommands need none of it.
    from . import commands  # noqa: PLC0415
    from .answers import Result  # noqa: PLC0415
    from .clock import SystemClock  # noqa: PLC0415
    from .coordinator import Progress  # noqa: PLC0415
    from .report import Reporter, build_report  # noqa: PLC0415
    from .settings import Job, load, secret_candidates  # noqa: PLC0415

    flags = flags_of(command, parsed)
    debug = bool(parsed.debug) or environ.get("RUNNER_DEBUG") == "1"
    reporter = Reporter(
        on_github=environ.get("GITHUB_ACTIONS") == "true", environ=environ,
        json_stdout=parsed.json, dotenv=parsed.dotenv, summary_file=parsed.summary_file,
        output_file=parsed.output_file,
    )
    # Masks first: nothing may be printed before the runner knows what to hide.
    for secret in secret_candidates(flags, environ):
        redact.register(secret)
    reporter.mask(list(redact.registered()))

    clock = SystemClock()
    clock.install_signal_handlers()
    progress = Progress()
    job: Job | None = None

    def work() -> Result | None:
        nonlocal job
        job = load(command, flags, environ)
        for warning in job.warnings:
            reporter.warning(warning, title="Input")
        about = {Command.DISTRIBUTE: f" project {job.target.project_id}, upload "
                                     f"{job.target.upload_id},",
                 Command.UPLOAD: f" project {job.target.project_id},"}.get(command, "")
        reporter.info(f"{PROG} {__version__}: {command.value} for{about} account "
                      f"{redact.shorten_id(job.account.user_id)}"
                      + (" (dry run)" if job.dry_run else ""))
        return commands.run(job, environ=environ, clock=clock, log=reporter, progress=progress)

    outcome = guarded(work, on_bug=reporter.info if debug else None, finally_=clock.shield)
    error = outcome if isinstance(outcome, DistributeError) else None
    result = None if isinstance(outcome, DistributeError) else outcome
    report = build_report(command, job, progress, result, error, now=clock.time())
    if error is not None:
        reporter.error(error)
    reporter.finish(report)
    if error is None:
        reporter.info(f"Done: {report.status.value}. {report.message}")
    return 0 if error is None else error.code


def guarded(work: Callable[[], T], *, on_bug: Callable[[str], None] | None = None,
            finally_: Callable[[], None] | None = None) -> T | DistributeError:
    """`work()`'s result, or the DistributeError it raised; any other exception becomes an
    `InternalError` (a bug), its traceback given scrubbed to `on_bug` when asked for."""
    try:
        try:
            return work()
        finally:
            if finally_ is not None:
                finally_()  # e.g. a late SIGTERM must not interrupt writing the outputs
    except DistributeError as exc:
        return exc
    except Exception as exc:  # noqa: BLE001 - the one place that turns a bug into exit 1
        if on_bug is not None:
            import traceback  # noqa: PLC0415

            on_bug(redact.scrub(traceback.format_exc()))
        return InternalError(f"{type(exc).__name__}: {redact.one_line(str(exc), 300)}")
