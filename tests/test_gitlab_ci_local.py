"""The README's GitLab CI example, run by a real GitLab CI runner: gitlab-ci-local.

gitlab-ci-local 4.75.1 (npm, on Node.js 22; `scripts/gitlab-ci-local.sh setup` installs it, rsync
and a local stand-in for its helper image) runs the YAML block of README.md as written, except
that our freshly built image replaces the published one. podman is the container executable; the
emulator and a Redis ledger listen on the host's loopback, and the account, the URLs and a short
rate-limit interval come in as CI/CD variables (`--variable`), as a project's settings would.

What it proves: every matrix leg uploads its build (held) and its manual `release` job distributes
that same build, with the account's 2 x legs write calls one interval apart and no 429; the
`release` job that picks its leg with `needs: … parallel: matrix` receives that leg's dotenv
outputs; and a server message full of the characters dotenv parsers disagree on (`#`, quotes,
`$`) reaches it exactly as our writer wrote it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import pytest

from streampixel_distribute.emulator import DEMO
from streampixel_distribute.report import OUTPUT_NAMES
from streampixel_distribute.report.plain import dotenv_name, dotenv_value
from support.container import REPO, ContainerImage
from support.emulator import Emulator
from support.redis_server import RedisServer
from support.tools import missing

pytestmark = pytest.mark.container
T = TypeVar("T")

SETUP_SH = REPO / "scripts" / "gitlab-ci-local.sh"
PUBLISHED_IMAGE = "ghcr.io/<owner>/streampixel-distribute:1"
INTERVAL = 2  # seconds: the emulator's limit
#: The tool is told a slightly longer interval. Its guard between slots is 1 s of Streampixel's
#: 120 s but only 0.1 s of 2 s, less than a job container's start-up jitter on a busy machine (a
#: call 0.2 s late was seen); this gives the compressed run the real guard's margin.
TOOL_INTERVAL = INTERVAL + 0.5
#: The emulator answers the first upload-file call with this: a leading and trailing quote
#: (dotenv strips them), `#` (dotenv cuts there), `$NAME` of a variable every job has (dotenv and
#: GitLab expand it), a backtick and an apostrophe.
SERVER_MESSAGE = "\"Build #42 queued for $CI_JOB_NAME's `main`\""
#: The upload id that answer carries: every project has a ready build of that id, so whichever
#: leg gets it can release it.
FAULT_UPLOAD = "65de0000000000000000c1ff"
DOTENV_NAMES = [dotenv_name(name) for name in OUTPUT_NAMES]
# Added to the README's YAML, for the test only: every job prints its STREAMPIXEL_* outputs, and a
# job with the plain `needs: [distribute]` that the README warns against.
PROBE_YAML = f"""
# --- added by tests/test_gitlab_ci_local.py ---
default:
  after_script:
    - env | grep -E '^({"|".join(DOTENV_NAMES)})=' | sort

plain-needs:
  stage: deploy
  needs: [upload]
  script:
    - "true"
"""


def readme_gitlab_example() -> str:
    """The README's one YAML block with an `upload:` job that writes a dotenv report."""
    blocks: list[str] = re.findall(r"^```yaml\n(.*?)^```$", (REPO / "README.md").read_text(),
                                   re.M | re.S)
    found = [b for b in blocks if re.search(r"^upload:$", b, re.M) and "dotenv:" in b]
    assert len(found) == 1, "README.md should have exactly one GitLab CI example"
    return found[0]


@dataclass(frozen=True)
class GitlabCiLocal:
    """gitlab-ci-local's command (Node.js 22 + its bundle) and the environment to run it in."""

    node: str
    cli: str
    env: dict[str, str]
    image: ContainerImage

    def run(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
        before = self.job_volumes()
        try:
            return subprocess.run(
                [self.node, self.cli, *args], cwd=cwd, env=self.env, capture_output=True,
                text=True, stdin=subprocess.DEVNULL, timeout=240, check=False,
            )  # fmt: skip
        finally:
            # gitlab-ci-local cleans up with one `podman rm -vf` of every container it made for a
            # job, the first of which (the chown helper) it had already removed; podman 4.3.1 then
            # exits 0 without removing the others, so their volumes stay in use as well.
            # `volume rm -f` removes the volumes this run made and the containers using them.
            if leftovers := self.job_volumes() - before:
                self.image.podman("volume", "rm", "-f", *sorted(leftovers))

    def job_volumes(self) -> set[str]:
        listed = self.image.podman("volume", "ls", "-q", "--filter", "name=^gcl-")
        return set(listed.stdout.split())


@pytest.fixture(scope="session")
def gitlab_ci_local(container_image: ContainerImage,
                    tmp_path_factory: pytest.TempPathFactory) -> GitlabCiLocal:
    """gitlab-ci-local as `scripts/gitlab-ci-local.sh setup` (run by scripts/test.sh) left it."""
    proc = subprocess.run(["bash", str(SETUP_SH), "env"], capture_output=True, text=True,
                          check=True)
    paths = dict(line.split("=", 1) for line in proc.stdout.splitlines())
    absent = [what for what, present in (
        (f"Node.js 22 ({paths['NODE']})", Path(paths["NODE"]).is_file()),
        (f"gitlab-ci-local ({paths['CLI']})", Path(paths["CLI"]).is_file()),
        ("rsync", shutil.which("rsync") is not None),
        (f"the helper image {paths['HELPER_IMAGE']}",
         container_image.podman("image", "exists", paths["HELPER_IMAGE"]).returncode == 0),
    ) if not present]
    if absent:  # a skip on a developer's machine, a failure under CI
        missing(f"missing {', '.join(absent)}: run `bash scripts/gitlab-ci-local.sh setup`")
    home = tmp_path_factory.mktemp("gcl-home")  # no ~/.gitlab-ci-local/variables.yml of the user
    # Shell-executor jobs get the host's environment over their own variables: none of ours.
    env = {k: v for k, v in container_image.podman_env.items()
           if not k.startswith(("STREAMPIXEL_", "INPUT_"))}
    env.update(HOME=str(home), FORCE_COLOR="0", NO_COLOR="1")
    return GitlabCiLocal(paths["NODE"], paths["CLI"], env, container_image)


def read_env_lines(text: str) -> dict[str, str]:
    """`NAME=value` lines (a dotenv file as written, or the probe's `env` output in a job log)."""
    return dict(line.split("=", 1) for line in text.splitlines()
                if re.match(r"STREAMPIXEL_[A-Z0-9_]+=", line))


def only(items: list[T]) -> T:
    assert len(items) == 1, items
    return items[0]


def test_readme_gitlab_example_runs_under_gitlab_ci_local(
    gitlab_ci_local: GitlabCiLocal, container_image: ContainerImage, emulator: Emulator,
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    example = readme_gitlab_example()
    assert PUBLISHED_IMAGE in example
    matrix = re.search(r"STREAMPIXEL_PROJECT_ID: \[([0-9a-f, ]+)\]", example)
    assert matrix, "the example's matrix should list the project ids"
    projects = [p.strip() for p in matrix.group(1).split(",")]
    assert len(projects) >= 2

    # One account owning every project of the matrix (each with a ready build of the id the
    # fault answers with), builds that are approved at once, a short interval.
    emulator.add_account(DEMO.user_id, DEMO.api_key, projects=[
        {"projectId": p, "uploads": [{"uploadId": FAULT_UPLOAD, "autoRelease": False}]}
        for p in projects])
    emulator.configure(interval=INTERVAL, processing_seconds=0)
    emulator.fault(path="upload-file", status=200,
                   body={"message": SERVER_MESSAGE, "uploadId": FAULT_UPLOAD})
    redis_server.client(db=7).flushdb()

    repo = tmp_path / "repo"
    (repo / "builds").mkdir(parents=True)
    links = {p: f"https://builds.example.com/{p}/Build.zip?X-Amz-Signature=5e{i}c0ffee{i}a2b4c6d8e0"
             for i, p in enumerate(projects)}
    for project, link in links.items():  # what the README's packaging job leaves behind
        (repo / "builds" / f"{project}.url").write_text(link + "\n")
    (repo / ".gitlab-ci.yml").write_text(
        example.replace(PUBLISHED_IMAGE, container_image.name) + PROBE_YAML)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "pipeline"], cwd=repo, check=True)

    manual = [arg for p in projects for arg in ("--manual", f"release: [{p}]")]
    run = gitlab_ci_local.run(
        repo,
        "--container-executable", "podman",  # no Docker engine on these machines
        "--network", "host",  # job containers reach the emulator and Redis on 127.0.0.1
        "--pull-policy", "if-not-present",  # both images exist locally: nothing is pulled
        *manual,  # someone presses each leg's `release` button
        "--variable", f"STREAMPIXEL_API_URL={emulator.url}",
        "--variable", f"STREAMPIXEL_USER_ID={DEMO.user_id}",
        "--variable", f"STREAMPIXEL_API_KEY={DEMO.api_key}",
        "--variable", f"STREAMPIXEL_RATE_LIMIT_INTERVAL={TOOL_INTERVAL:g}",
        "--variable", f"REDIS_URL={redis_server.url(db=7)}",
    )  # fmt: skip
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-6000:]
    state = repo / ".gitlab-ci-local"

    # Every leg uploaded and released; the emulator saw 2 x legs write calls, all accepted, each
    # pair at least one interval apart (upload-file and distribute-file share one window).
    for project in projects:
        assert re.search(rf"PASS +upload: \[{project}\]", log), log[-6000:]
        assert re.search(rf"PASS +release: \[{project}\]", log), log[-6000:]
    calls = sorted(emulator.requests("upload-file") + emulator.requests("distribute-file"),
                   key=lambda call: float(call["time"]))
    assert [c["status"] for c in calls] == [200] * 2 * len(projects), calls
    times = [float(c["time"]) for c in calls]
    assert all(b - a >= INTERVAL - 0.005 for a, b in pairwise(times)), times
    written = {p: read_env_lines(only(list(
        state.glob(f"artifacts/upload*{p}*/.gitlab-ci-reports/dotenv/streampixel.env"))
    ).read_text(encoding="utf-8")) for p in projects}  # fmt: skip
    for values in written.values():
        assert list(values) == DOTENV_NAMES
        assert values["STREAMPIXEL_STATUS"] == "uploaded"
        assert values["STREAMPIXEL_HTTP_STATUS"] == "200"
        assert values["STREAMPIXEL_LEDGER"] == redis_server.url(db=7)
    # The first upload got the fault's answer (not processed, so the emulator logs no ids for
    # it); the other legs' uploads were processed, each returning a new build id.
    first = next(p for p, v in written.items() if v["STREAMPIXEL_UPLOAD_ID"] == FAULT_UPLOAD)
    assert written[first]["STREAMPIXEL_MESSAGE"] == dotenv_value(SERVER_MESSAGE)
    others = [p for p in projects if p != first]
    assert all(written[p]["STREAMPIXEL_MESSAGE"] == "Build queued for processing" for p in others)
    assert len({written[p]["STREAMPIXEL_UPLOAD_ID"] for p in projects}) == len(projects)
    # Each leg's release distributed the build its own leg uploaded, in that project.
    released = {(c["projectId"], c["uploadId"]) for c in emulator.requests("distribute-file")}
    assert released == {(p, written[p]["STREAMPIXEL_UPLOAD_ID"]) for p in projects}

    # Each `release` leg (README: needs … parallel: matrix) holds exactly its own leg's outputs,
    # the server message included, byte for byte as written; the README's echo shows it.
    for project in projects:
        job_log = only(list(state.glob(f"output/release*{project}*.log"))).read_text()
        assert read_env_lines(job_log) == written[project]
        echoed = [line for line in job_log.splitlines()
                  if project in line and not line.startswith("$")]
        assert any(written[project]["STREAMPIXEL_MESSAGE"] in line for line in echoed), job_log

    # The plain `needs: [upload]` form: gitlab-ci-local merges every leg's dotenv into one set
    # of variables, in job order, so the last leg (here 65de…b004) overwrites the others. Seen:
    # the job printed b004's slot, position and message; b001's outputs were gone. GitLab itself
    # also hands such a job every leg's variables under the same names.
    plain = read_env_lines((state / "output" / "plain-needs.log").read_text())
    assert plain == written[projects[-1]]
    slot = plain["STREAMPIXEL_SLOT_AT"]  # every other leg's outputs are lost:
    assert [p for p in projects if written[p]["STREAMPIXEL_SLOT_AT"] == slot] == [projects[-1]]

    # (Not the job's copy of the repository: the link files are in it, as in a real project.)
    kept = [f for d in ("output", "artifacts") for f in (state / d).rglob("*") if f.is_file()]
    everything = "\n".join([log, *(f.read_text(errors="replace") for f in kept)])
    assert DEMO.api_key not in everything
    for link in links.values():
        assert link not in everything and link.partition("?")[2] not in everything
