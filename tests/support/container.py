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
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pytest

from support.commands import assert_documented_commands
from support.runner import parse_output_file
from support.tools import in_ci, missing

REPO = Path(__file__).resolve().parents[2]
CONTAINER_SH = REPO / "scripts" / "container.sh"
EMULATOR_START_TIMEOUT = 30.0


class DeclaredInput(NamedTuple):
    description: str
    required: bool
    default: str | None


def declared_inputs(path: Path = REPO / "action.yml") -> dict[str, DeclaredInput]:
    """Each input of action.yml with its description, `required` and default (None: none).

    A deliberately small reader for the file's own layout (two-space indents, one key per line,
    plain or double-quoted scalars), so the tests need no YAML library.
    """
    raw: dict[str, dict[str, str]] = {}
    section = current = ""
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if value.startswith('"'):
            value = json.loads(value)
        if indent == 0:
            section = key
        elif section == "inputs" and indent == 2:
            current = key
            raw[current] = {}
        elif section == "inputs" and indent == 4:
            raw[current][key] = value
    return {name: DeclaredInput(fields.get("description", ""), fields.get("required") == "true",
                                fields.get("default")) for name, fields in raw.items()}


def action_inputs(path: Path = REPO / "action.yml") -> dict[str, str | None]:
    """Input name -> default (None: no default) from action.yml."""
    return {name: spec.default for name, spec in declared_inputs(path).items()}


def runner_inputs(env: Mapping[str, str]) -> dict[str, str]:
    """INPUT_* for every input the caller left out, as the runner sets them (defaults or empty).

    `${{ github.token }}` is evaluated to an empty token: no test may reach GitHub.
    """
    given = {k.upper().replace("_", "-") for k in env}
    filled: dict[str, str] = {}
    for name, default in action_inputs().items():
        var = f"INPUT_{name.upper()}"
        if var.replace("_", "-") not in given:
            filled[var] = "" if default is None or default.startswith("${{") else default
    return filled


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
        action_defaults: bool = True,
        workspace: Path | None = None,
    ) -> Result: ...


parse_github_output = parse_output_file  # the same file format inside the container


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
        action_defaults: bool = True,
        workspace: Path | None = None,
    ) -> Result:
        """Run the image as the runner runs a Docker action step; `env` holds INPUT_* etc.

        Like the runner, every input of action.yml the caller did not give is passed with its
        default (`action_defaults=False` passes only `env`). `read_only` mounts the workspace
        read-only and runs with a read-only root filesystem. `workspace` shares one host
        directory between runs, as the steps of one job share theirs.
        """
        with tempfile.TemporaryDirectory(prefix="spd-runner-") as tmp:
            root = Path(tmp)
            dirs = {d: root / d for d in ("workspace", "file_commands", "home", "workflow")}
            for d in dirs.values():
                d.mkdir()
            if workspace is not None:
                dirs["workspace"] = workspace
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
                "GITHUB_EVENT_NAME": "repository_dispatch" if event else "workflow_dispatch",
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
            defaults = runner_inputs(env) if action_defaults else {}
            full_env = {**runner_env, **defaults, **env}
            ro = ":ro" if read_only else ""
            cmd = [
                "run", "--rm", "--name", f"spd-test-{step.hex[:12]}",
                "--workdir", "/github/workspace", "--network", "host",
            ]  # fmt: skip
            if read_only:
                cmd.append("--read-only")  # the image's own files too
            for name in full_env:
                cmd += ["-e", name]
            for dname, path in dirs.items():
                mount_ro = ro if dname == "workspace" else ""
                cmd += ["-v", f"{path}:/github/{dname}{mount_ro}"]
            cmd += [self.name, *args]
            proc = self.podman(*cmd, env=full_env, timeout=timeout)
            assert_documented_commands(proc.stdout, proc.stderr)
            fc = dirs["file_commands"]
            return Result(
                exit_code=proc.returncode,
                stdout=proc.stdout,
                stderr=proc.stderr,
                outputs=parse_github_output((fc / files["GITHUB_OUTPUT"]).read_text()),
                summary=(fc / files["GITHUB_STEP_SUMMARY"]).read_text(),
                workspace=dirs["workspace"],
            )


@dataclass
class ImageEmulator:
    """The emulator subcommand of the image itself, listening on the host's loopback."""

    url: str
    name: str
    image: ContainerImage

    @property
    def root(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def control(self, method: str, route: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.root}/_emulator/{route}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read() or b"null")

    def requests(self, endpoint: str = "distribute-file") -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.control("GET", f"requests?endpoint={endpoint}")
        return result

    def stop(self) -> None:
        self.image.podman("rm", "-f", "-t", "2", self.name)


def start_image_emulator(
    image: ContainerImage, *extra: str, mounts: Sequence[tuple[Path, str]] = ()
) -> ImageEmulator:
    """Run `streampixel-distribute emulator` from the image with host networking on 127.0.0.1.

    `mounts` are (host dir, container dir) pairs, mounted read-only (e.g. TLS files).
    """
    ready_dir = Path(tempfile.mkdtemp(prefix="spd-emu-"))
    name = f"spd-emu-{uuid.uuid4().hex[:12]}"
    volumes = [arg for host, inside in mounts for arg in ("-v", f"{host}:{inside}:ro")]
    proc = image.podman(
        "run", "-d", "--rm", "--name", name, "--network", "host",
        "-v", f"{ready_dir}:/ready", *volumes, image.name,
        "emulator", "--host", "127.0.0.1", "--port", "0", "--ready-file", "/ready/ready.json",
        *extra,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"emulator container did not start: {proc.stderr[-2000:]}")
    ready = ready_dir / "ready.json"
    deadline = time.monotonic() + EMULATOR_START_TIMEOUT
    while not ready.exists() or not ready.read_text().strip().endswith("}"):
        if time.monotonic() > deadline:
            logs = image.podman("logs", name).stderr
            image.podman("rm", "-f", name)
            raise RuntimeError(f"emulator container never became ready: {logs[-2000:]}")
        time.sleep(0.05)
    url = json.loads(ready.read_text())["url"]
    shutil.rmtree(ready_dir, ignore_errors=True)
    return ImageEmulator(url=url, name=name, image=image)


def _podman_env() -> dict[str, str]:
    proc = subprocess.run(
        ["bash", str(CONTAINER_SH), "env"], capture_output=True, text=True, check=True
    )
    pairs = (line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)
    return {**os.environ, **dict(pairs)}


@pytest.fixture(scope="session")
def container_image() -> ContainerImage:
    """The action image, built once per session from the unchanged Dockerfile."""
    if shutil.which("podman") is None and not in_ci():
        # Outside CI only; under CI scripts/container.sh installs podman, or the build fails.
        missing("podman is not installed (run scripts/container.sh setup, or set CI=true)")
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
    return ContainerImage(env["IMAGE"], env)


@pytest.fixture
def run_action(container_image: ContainerImage) -> RunAction:
    return container_image.run_action


@pytest.fixture(scope="session")
def _image_emulator_session(container_image: ContainerImage) -> Iterator[ImageEmulator]:
    emulator = start_image_emulator(container_image, "--interval", "0", "--quiet")
    yield emulator
    emulator.stop()


@pytest.fixture
def image_emulator(_image_emulator_session: ImageEmulator) -> ImageEmulator:
    """The image's own emulator (demo account, no rate limit), reset for each test."""
    _image_emulator_session.control("POST", "reset", {})
    return _image_emulator_session
