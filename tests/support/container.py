"""Pytest plugin: build the real action image once and run it the way the GitHub runner does.

The image is built by scripts/container.sh (podman; on CI machines it installs podman itself). The
session is skipped only when podman is missing and CI is not set: under CI a missing podman or a
failed build fails every container test instead of hiding them.

`run_action` mirrors the runner's `docker run` (actions/runner ContainerActionHandler): workdir
/github/workspace, the four /github mounts, `-e NAME` (values come from podman's environment, so
hyphenated names such as INPUT_API-KEY work), GITHUB_* file paths translated into the mounts,
GITHUB_ACTIONS=true and CI=true. `--network host` replaces the job network so the container reaches
servers the tests start on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

REPO = Path(__file__).resolve().parents[2]
CONTAINER_SH = REPO / "scripts" / "container.sh"


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str
    outputs: dict[str, str]
    summary: str
    workspace: Path = field(repr=False, default=Path())


class RunAction(Protocol):
    def __call__(
        self,
        env: Mapping[str, str],
        event: Mapping[str, Any] | None = None,
        *,
        args: Sequence[str] = (),
        read_only: bool = False,
        timeout: float = 120,
    ) -> Result: ...


def parse_github_output(text: str) -> dict[str, str]:
    """Parse the $GITHUB_OUTPUT file format: `name=value` lines and `name<<DELIM` heredocs."""
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


class ContainerImage:
    """A built image plus the podman environment (private config and storage) to run it."""

    def __init__(self, name: str, podman_env: Mapping[str, str]) -> None:
        self.name = name
        self.podman_env = dict(podman_env)

    def podman(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["podman", *args],
            env={**self.podman_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    def shell(self, script: str) -> subprocess.CompletedProcess[str]:
        """Run a shell snippet inside the image (entrypoint replaced) to inspect its contents."""
        return self.podman(
            "run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", self.name, "-c", script
        )

    def run_action(
        self,
        env: Mapping[str, str],
        event: Mapping[str, Any] | None = None,
        *,
        args: Sequence[str] = (),
        read_only: bool = False,
        timeout: float = 120,
    ) -> Result:
        """Run the image as the runner runs a Docker action step; `env` holds INPUT_* etc."""
        with tempfile.TemporaryDirectory(prefix="spd-runner-") as tmp:
            root = Path(tmp)
            dirs = {d: root / d for d in ("workspace", "file_commands", "home", "workflow")}
            for d in dirs.values():
                d.mkdir()
            (dirs["workflow"] / "event.json").write_text(json.dumps(dict(event or {})))
            step = uuid.uuid4()
            files = {
                "GITHUB_OUTPUT": f"set_output_{step}",
                "GITHUB_STEP_SUMMARY": f"step_summary_{step}",
                "GITHUB_ENV": f"set_env_{step}",
                "GITHUB_PATH": f"add_path_{step}",
                "GITHUB_STATE": f"save_state_{step}",
            }
            for fname in files.values():
                (dirs["file_commands"] / fname).touch()
            runner_env = {
                "HOME": "/github/home",
                "GITHUB_WORKSPACE": "/github/workspace",
                "GITHUB_EVENT_PATH": "/github/workflow/event.json",
                "GITHUB_EVENT_NAME": "workflow_dispatch" if event is None else "repository_dispatch",
                "GITHUB_REPOSITORY": "octo-org/game",
                "GITHUB_RUN_ID": "1001",
                "GITHUB_RUN_ATTEMPT": "1",
                "GITHUB_JOB": "distribute",
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_API_URL": "https://api.github.com",
                "RUNNER_OS": "Linux",
                "GITHUB_ACTIONS": "true",
                "CI": "true",
                **{k: f"/github/file_commands/{v}" for k, v in files.items()},
            }
            full_env = {**runner_env, **env}
            ro = ":ro" if read_only else ""
            cmd = [
                "run", "--rm", "--name", f"spd-test-{step.hex[:12]}",
                "--workdir", "/github/workspace", "--network", "host",
            ]  # fmt: skip
            if read_only:
                cmd.append("--read-only")  # the image's own files too
            for name in full_env:
                cmd += ["-e", name]
            for d, path in dirs.items():
                mount_ro = ro if d == "workspace" else ""
                cmd += ["-v", f"{path}:/github/{d}{mount_ro}"]
            cmd += [self.name, *args]
            proc = self.podman(*cmd, env=full_env, timeout=timeout)
            fc = dirs["file_commands"]
            return Result(
                exit_code=proc.returncode,
                stdout=proc.stdout,
                stderr=proc.stderr,
                outputs=parse_github_output((fc / files["GITHUB_OUTPUT"]).read_text()),
                summary=(fc / files["GITHUB_STEP_SUMMARY"]).read_text(),
            )


def _podman_env() -> dict[str, str]:
    proc = subprocess.run(
        ["bash", str(CONTAINER_SH), "env"], capture_output=True, text=True, check=True
    )
    pairs = (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return {**os.environ, **dict(pairs)}


@pytest.fixture(scope="session")
def container_image() -> Iterator[ContainerImage]:
    """The action image, built once per session from the unchanged Dockerfile."""
    in_ci = os.environ.get("CI", "").lower() in ("true", "1")
    if shutil.which("podman") is None and not in_ci:
        pytest.skip("podman is not installed (run scripts/container.sh setup, or set CI=true)")
    proc = subprocess.run(
        ["bash", str(CONTAINER_SH), "build"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the image failed:\n{proc.stderr[-4000:]}", pytrace=False)
    env = _podman_env()
    yield ContainerImage(env["IMAGE"], env)


@pytest.fixture
def run_action(container_image: ContainerImage) -> RunAction:
    return container_image.run_action
