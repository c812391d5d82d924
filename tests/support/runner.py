"""Run the product as a subprocess under the GitHub runner's contract, and read what it wrote.

`run_action(inputs)` passes inputs as `INPUT_<NAME>` with the hyphen kept (as the runner does),
points `GITHUB_OUTPUT` / `GITHUB_STEP_SUMMARY` / `GITHUB_EVENT_PATH` at temp files, and parses the
output file's `name<<delimiter` records back into a dict.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import product
from support.commands import assert_documented_commands

ROOT = Path(__file__).resolve().parents[2]

# Distinctive secret values: the leak checks search every output for them.
LEAK_KEY = "sk-LEAKCHECK-9f3a7c1e5b2d4f6a8c0e"
LEAK_TOKEN = "ghs_LEAKTOKEN0123456789abcdefABCDEF"


def parse_output_file(text: str) -> dict[str, str]:
    """Parse the runner's file-command format: `name=value` lines and `name<<DELIM` heredocs."""
    outputs: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line:
            continue
        eq = line.find("=")
        heredoc = line.find("<<")
        if heredoc > 0 and (eq < 0 or heredoc < eq):
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            body: list[str] = []
            while i < len(lines) and lines[i].rstrip("\r") != delimiter:
                body.append(lines[i].rstrip("\r"))
                i += 1
            if i >= len(lines):
                raise ValueError(f"output {name!r}: delimiter {delimiter!r} never closes")
            i += 1  # the delimiter line
            outputs[name] = "\n".join(body)
        elif eq > 0:
            outputs[line[:eq]] = line[eq + 1 :]
        else:
            raise ValueError(f"not a GITHUB_OUTPUT line: {line!r}")
    return outputs


@dataclass
class ActionRun:
    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    files: dict[str, str]

    def __post_init__(self) -> None:
        # Every run of the program, on every path, prints commands both runners read alike.
        assert_documented_commands(self.stdout, self.stderr)

    def everything(self) -> str:
        """All text the run produced that anyone can read, for leak checks.

        `::add-mask::` lines carry the secret by design: the runner consumes them and never
        shows them, so they are left out (test_action checks they come first).
        """
        visible = "\n".join(line for line in self.stdout.splitlines()
                            if not line.startswith("::add-mask"))
        return "\n".join([visible, self.stderr, self.summary, json.dumps(self.outputs),
                          *self.files.values()])


def base_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in product.env().items()
           if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))}
    env.update({"HOME": str(tmp / "home"), "NO_PROXY": "*"})
    (tmp / "home").mkdir(exist_ok=True)
    return env


def action_env(
    tmp: Path,
    inputs: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    event: dict[str, Any] | None = None,
    github: bool = True,
) -> tuple[dict[str, str], Path, Path]:
    """The environment the runner gives a step, with empty output and summary files in `tmp`."""
    tmp.mkdir(parents=True, exist_ok=True)
    full = base_env(tmp)
    output, summary = tmp / "github_output", tmp / "step_summary"
    output.write_text("")
    summary.write_text("")
    if github:
        full.update({"GITHUB_ACTIONS": "true", "CI": "true", "GITHUB_OUTPUT": str(output),
                     "GITHUB_STEP_SUMMARY": str(summary), "RUNNER_ENVIRONMENT": "self-hosted"})
        if event is not None:
            path = tmp / "event.json"
            path.write_text(json.dumps(event))
            full["GITHUB_EVENT_PATH"] = str(path)
            full["GITHUB_EVENT_NAME"] = "repository_dispatch"
    for name, value in inputs.items():
        full[f"INPUT_{name.upper()}"] = value
    full.update(env or {})
    return full, output, summary


def run_action(
    tmp: Path,
    inputs: Mapping[str, str],
    *,
    env: Mapping[str, str] | None = None,
    event: dict[str, Any] | None = None,
    args: list[str] | None = None,
    github: bool = True,
    timeout: float = 120,
    program: list[str] | None = None,
) -> ActionRun:
    """`program`: what Python runs instead of the product (e.g. `-c CODE`), before `args`."""
    full, output, summary = action_env(tmp, inputs, env=env, event=event, github=github)
    proc = subprocess.run(
        product.command(*(args or []), program=program),
        env=full, capture_output=True, text=True, timeout=timeout, check=False,
    )
    files = {p.name: p.read_text(errors="replace") for p in tmp.iterdir()
             if p.is_file() and p.name not in ("event.json",)}
    return ActionRun(
        exit_code=proc.returncode,
        stdout=proc.stdout,
        stderr=proc.stderr,
        outputs=parse_output_file(output.read_text()),
        summary=summary.read_text(),
        files=files,
    )


@pytest.fixture
def action(tmp_path: Path) -> Callable[..., ActionRun]:
    counter = iter(range(1000))

    def run(inputs: Mapping[str, str], **kw: Any) -> ActionRun:
        return run_action(tmp_path / f"run{next(counter)}", inputs, **kw)

    return run
