"""action.yml against the code: every input with the default the program applies, every output
the reporter writes. Pure Python, so it runs wherever the tests run (not only with podman)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streampixel_distribute.report import OUTPUT_NAMES
from streampixel_distribute.settings import SPECS
from support.container import action_inputs
from support.runner import parse_output_file

ACTION_YML = Path(__file__).parents[1] / "action.yml"


def test_action_yml_declares_every_input_with_the_settings_default() -> None:
    declared = action_inputs(ACTION_YML)
    assert set(declared) == set(SPECS)
    for name, spec in SPECS.items():
        if name == "github-token":
            assert declared[name] == "${{ github.token }}"
        else:
            # An input without a default in the code has none in action.yml either.
            assert declared[name] == (spec.default or None), name


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
