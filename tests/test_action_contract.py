"""The one table of inputs (settings/inputs.py) against every place that states it: action.yml,
the README's input table, the CLI flags and the `STREAMPIXEL_*` names; and action.yml's outputs
against what the reporter writes. Pure Python, so it runs wherever the tests run."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streampixel_distribute.cli import build_parser, cli_inputs, fast_parse, parse
from streampixel_distribute.report import OUTPUT_NAMES
from streampixel_distribute.settings import Command, load
from streampixel_distribute.settings.inputs import ACTION_COMMANDS, INPUTS, Kind, inputs_of
from support.container import declared_inputs
from support.runner import parse_output_file

ROOT = Path(__file__).parents[1]
ACTION_YML = ROOT / "action.yml"


def sync_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sync_inputs", ROOT / "scripts/sync_inputs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ACTION_INPUTS = [spec for spec in INPUTS if spec.used_by & set(ACTION_COMMANDS)]


def test_action_yml_states_every_input_as_the_table_does() -> None:
    declared = declared_inputs(ACTION_YML)
    assert list(declared) == [spec.name for spec in ACTION_INPUTS]
    for spec in ACTION_INPUTS:
        found = declared[spec.name]
        assert found.description == spec.description, spec.name
        assert found.required is spec.action_required, spec.name
        assert found.default == (spec.action_default or spec.default or None), spec.name


def test_action_yml_and_the_readme_are_what_the_table_makes() -> None:
    """`python scripts/sync_inputs.py` rewrites both; this fails until it has been run."""
    assert sync_script().main(["--check"]) == 0


def test_the_readme_table_names_every_input_and_its_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    for spec in ACTION_INPUTS:
        assert f"| `{spec.name}` | `{spec.env_name}` |" in readme, spec.name


@pytest.mark.parametrize("command", list(Command))
def test_each_command_has_a_flag_per_input_it_takes(command: Command) -> None:
    options = {action.dest: action for action in build_parser(command)._actions}
    assert "command" not in options  # the subcommand is the command on the command line
    for spec in cli_inputs(command):
        action = options[spec.attribute]
        assert spec.flag in action.option_strings
        assert action.help == spec.description
        if spec.kind is Kind.FLAG:
            assert action.const == "true"  # `--dry-run` alone means true
    taken = {spec.attribute for spec in cli_inputs(command)}
    others = {spec.attribute for spec in INPUTS} - taken
    assert not others & set(options), f"{command} offers flags it ignores"


GIVEN = {"command": "upload", "api-key": "sk-contract-0123456789",
         "user-id": "663d0a1b2c3e4f5a6b7c8d9e", "project-id": "664f1a2b3c4d5e6f7a8b9c0d",
         "upload-id": "665a2b3c4d5e6f7a8b9c0e1f", "file-url": "https://b.example.test/Game.zip",
         "auto-release": "false", "api-url": "https://api.example.test/api", "ledger": "none",
         "github-token": "ghs_contract1234", "rate-limit-interval": "60", "max-wait": "600",
         "timeout": "10", "retries": "2", "dry-run": "true", "strict-ids": "true"}


@pytest.mark.parametrize("command", ACTION_COMMANDS)
def test_every_input_is_read_from_its_streampixel_variable(command: Command) -> None:
    assert set(GIVEN) == {spec.name for spec in ACTION_INPUTS}
    env = {spec.env_name: GIVEN[spec.name] for spec in ACTION_INPUTS}
    job = load(command, {}, env)
    assert dict(job.sources) == {spec.name: spec.env_name for spec in inputs_of(command)}


def test_action_yml_declares_every_output_the_reporter_writes() -> None:
    declared: list[str] = []
    section = ""
    for line in ACTION_YML.read_text().splitlines():
        if line and not line[0].isspace():
            section = line.split(":", 1)[0]
        elif section == "outputs" and line.startswith("  ") and not line.startswith("   "):
            declared.append(line.strip().split(":", 1)[0])
    assert declared == list(OUTPUT_NAMES)


def test_github_output_parser_reads_both_forms() -> None:
    text = "status=triggered\nmessage<<ghadelim_1\nline one\nline=two\nghadelim_1\nerror=\n"
    assert parse_output_file(text) == {
        "status": "triggered", "message": "line one\nline=two", "error": ""}
    with pytest.raises(ValueError, match="never closes"):
        parse_output_file("message<<EOF\nno end\n")


_TOKENS = st.sampled_from([
    "--api-key", "--api-key=sk-x-0123456789", "sk-y-0123456789", "--user-id", "--dry-run",
    "--dry-run=false", "false", "true", "--strict-ids", "--json", "--json=1", "--debug",
    "--dotenv", "out.env", "--summary-file=s.md", "--output-file", "-x", "--", "--api",
    "--max-wait", "-5", "900", "--help", "--version", "--ledger=none", "--unknown", "",
    "--timeout=", "--retries", "3", "--project-id", "664f1a2b3c4d5e6f7a8b9c0d",
])


@settings(max_examples=400, deadline=None)
@given(argv=st.lists(_TOKENS, max_size=8))
def test_the_fast_parser_agrees_with_argparse_or_leaves_it_to_argparse(argv: list[str]) -> None:
    """fast_parse skips argparse's start-up cost for the usual command lines; whatever it
    accepts, argparse reads the same way."""
    fast = fast_parse(Command.DISTRIBUTE, argv)
    if fast is None:
        return
    slow = parse(build_parser(Command.DISTRIBUTE), argv)
    assert not isinstance(slow, int), f"argparse refuses {argv} which fast_parse accepted"
    assert vars(fast) == vars(slow)


def test_the_fast_parser_takes_the_usual_lines() -> None:
    assert fast_parse(Command.DISTRIBUTE, ["--dry-run", "--json", "--ledger", "none"]) is not None
    assert fast_parse(Command.DISTRIBUTE, ["--dry-run", "false", "--dotenv=o.env"]) is not None
    assert fast_parse(Command.DISTRIBUTE, ["--help"]) is None
    assert fast_parse(Command.DISTRIBUTE, ["--api", "x"]) is None  # argparse's abbreviation
