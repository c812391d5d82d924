"""End to end: parallel CLI processes share one account's rate limit through each ledger.

Five CLI processes (`python -m streampixel_distribute`) start together against one emulator
whose write window is `INTERVAL` seconds (the CLI is told the same interval). With a coordinating
ledger they must take turns so precisely that the emulator never answers 429; with `none` they
collide, get 429s, and still all succeed by retrying within `max-wait`.

The emulator's own window check is authoritative: it answers 429 to any call that arrives inside
the previous call's window, so "zero 429s" is the real assertion. The gaps between the recorded
arrival times are checked as well, with a few milliseconds of slack for the time between stamping
a request on arrival and checking its window (that slack cannot hide a violation: the window check
would still have answered 429).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from support import product
from support.emulator import Emulator
from support.ledger_contract import BackendUnderTest

JOBS = 5
INTERVAL = 1.0  # seconds: the emulator's window and the CLI's rate-limit-interval
ARRIVAL_SLACK = 0.005  # seconds; see the module docstring
PROCESS_TIMEOUT = 60.0


@dataclass
class Job:
    returncode: int
    outputs: dict[str, Any]
    stdout: str
    stderr: str


def _base_env(emulator: Emulator) -> dict[str, str]:
    """The runner's environment without anything that could steer the CLI from outside."""
    env = {
        k: v for k, v in product.env().items()
        if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))
    }
    env["STREAMPIXEL_API_KEY"] = emulator.demo.api_key  # secrets by environment, not argv
    return env


def run_parallel(
    emulator: Emulator, ledger: str, *, max_wait: float, extra_env: dict[str, str] | None = None
) -> list[Job]:
    """Start JOBS CLI processes at once and wait for all of them."""
    env = _base_env(emulator)
    env["STREAMPIXEL_LEDGER"] = ledger  # may hold a password: environment, not argv
    env.update(extra_env or {})
    argv = [
        *product.command(),
        "--api-url", emulator.url,
        "--user-id", emulator.demo.user_id,
        "--project-id", emulator.demo.project_id,
        "--upload-id", emulator.demo.upload_id,
        "--rate-limit-interval", f"{INTERVAL:g}",
        "--max-wait", f"{max_wait:g}",
        "--json",
    ]  # fmt: skip
    processes = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(JOBS)
    ]
    jobs = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=PROCESS_TIMEOUT)
            stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
            try:
                outputs = json.loads(stdout)
            except ValueError:
                outputs = {}
            jobs.append(Job(process.returncode, outputs, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return jobs


def distribute_calls(emulator: Emulator) -> list[dict[str, Any]]:
    calls = emulator.requests("distribute-file")
    return sorted(calls, key=lambda call: float(call["time"]))


def assert_all_triggered(jobs: list[Job]) -> None:
    for number, job in enumerate(jobs):
        assert job.returncode == 0, (
            f"job {number} exited {job.returncode}\nstdout: {job.stdout}\nstderr: {job.stderr}"
        )
        assert job.outputs.get("status") == "triggered", job.stdout


def gaps(calls: list[dict[str, Any]]) -> list[float]:
    times = [float(call["time"]) for call in calls]
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_coordinated_jobs_take_turns_without_429(
    racing_ledger_backend: BackendUnderTest, emulator: Emulator
) -> None:
    """One run per reservation algorithm: file, redis, git+file, git+http (the race registry)."""
    emulator.configure(interval=INTERVAL)
    target = racing_ledger_backend.target
    extra_env = {k: v for k, v in target.environ.items() if k.startswith("GITHUB_")}
    if target.github_token:
        extra_env["STREAMPIXEL_GITHUB_TOKEN"] = target.github_token
    # Enough for every job to wait its turn, but a job never needs to wait for a 429 retry.
    jobs = run_parallel(emulator, target.spec, max_wait=JOBS * INTERVAL + 30,
                        extra_env=extra_env)

    assert_all_triggered(jobs)
    calls = distribute_calls(emulator)
    statuses = [call["status"] for call in calls]
    assert statuses.count(429) == 0, f"the emulator answered 429: {statuses}"
    assert statuses == [200] * JOBS, statuses
    assert [job.outputs.get("attempts") for job in jobs] == ["1"] * JOBS
    too_close = [round(gap, 4) for gap in gaps(calls) if gap < INTERVAL - ARRIVAL_SLACK]
    assert not too_close, f"calls closer than {INTERVAL} s: {too_close} (all gaps {gaps(calls)})"

    # Each job reports the ledger it used, never its credentials.
    for job in jobs:
        assert job.outputs.get("ledger") not in (None, "", "none"), job.stdout
        for secret in (*target.secrets, emulator.demo.api_key):
            assert secret not in job.stdout + job.stderr
    # Jobs queued for their turn rather than racing: the last one slept at least an interval
    # (not (JOBS - 1) intervals: a git ledger's lost CAS races also take a share of the spread).
    waited = sorted(float(job.outputs["waited-seconds"]) for job in jobs)
    assert waited[-1] >= INTERVAL, waited


def test_uncoordinated_jobs_collide_and_recover_through_429_handling(
    emulator: Emulator, record_property: Any
) -> None:
    """`none`: nothing spaces the jobs out, the server's 429s do; everyone still gets through."""
    emulator.configure(interval=INTERVAL)
    jobs = run_parallel(emulator, "none", max_wait=60)

    assert_all_triggered(jobs)
    calls = distribute_calls(emulator)
    statuses = [call["status"] for call in calls]
    rejected = statuses.count(429)
    record_property("429s with ledger none", rejected)
    print(f"ledger none, {JOBS} jobs: {rejected} responses were 429 ({statuses})")
    # Started together without a ledger they collide, or this test proves nothing about 429s.
    assert rejected >= 1, statuses
    assert statuses.count(200) == JOBS, statuses
    assert set(statuses) <= {200, 429}, statuses
    # Every POST is accounted for: the outputs' attempts add up to what the server saw.
    assert sum(int(job.outputs["attempts"]) for job in jobs) == len(calls)
    # The server kept the accepted calls one window apart whatever the clients did.
    accepted = [call for call in calls if call["status"] == 200]
    assert all(gap >= INTERVAL - ARRIVAL_SLACK for gap in gaps(accepted)), gaps(accepted)


LEGS = 3


def _leg(emulator: Emulator, env: dict[str, str], max_wait: float) -> list[Job]:
    """One matrix leg: upload a build (held, autoRelease false), then distribute it."""
    common = ["--api-url", emulator.url, "--user-id", emulator.demo.user_id,
              "--project-id", emulator.demo.project_id, "--rate-limit-interval", f"{INTERVAL:g}",
              "--max-wait", f"{max_wait:g}", "--json"]
    jobs: list[Job] = []
    for argv in (["upload", *common, "--auto-release", "false"], ["distribute", *common]):
        if argv[0] == "distribute":
            argv += ["--upload-id", jobs[0].outputs.get("upload-id", "")]
        proc = subprocess.run(product.command(*argv), env=env,
                              capture_output=True, text=True, timeout=PROCESS_TIMEOUT,
                              check=False)
        try:
            outputs = json.loads(proc.stdout)
        except ValueError:
            outputs = {}
        jobs.append(Job(proc.returncode, outputs, proc.stdout, proc.stderr))
        if proc.returncode != 0:
            break
    return jobs


def test_a_matrix_of_uploads_and_distributes_shares_one_queue_without_429(
    racing_ledger_backend: BackendUnderTest, emulator: Emulator, record_property: Any
) -> None:
    """3 legs, each uploading then distributing: 6 write calls of one account, one window."""
    # One window shared by upload-file and distribute-file (the emulator's default), and builds
    # that are ready at once, so each distribute can follow its upload in the next free slot.
    emulator.configure(interval=INTERVAL, processing_seconds=0, separate_windows=False)
    target = racing_ledger_backend.target
    env = _base_env(emulator) | {"STREAMPIXEL_LEDGER": target.spec}
    env |= {k: v for k, v in target.environ.items() if k.startswith("GITHUB_")}
    env["STREAMPIXEL_FILE_URL"] = ("https://builds.s3.amazonaws.com/Build.zip"
                                   "?X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0")
    if target.github_token:
        env["STREAMPIXEL_GITHUB_TOKEN"] = target.github_token
    with ThreadPoolExecutor(LEGS) as pool:
        legs = list(pool.map(lambda _: _leg(emulator, env, 2 * LEGS * INTERVAL + 30),
                             range(LEGS)))

    for number, leg in enumerate(legs):
        assert [job.returncode for job in leg] == [0, 0], f"leg {number}: " + "\n".join(
            job.stdout + job.stderr for job in leg)
        assert [job.outputs["status"] for job in leg] == ["uploaded", "triggered"]
        assert leg[1].outputs["upload-id"] == leg[0].outputs["upload-id"]
    calls = sorted(emulator.requests("upload-file") + emulator.requests("distribute-file"),
                   key=lambda call: float(call["time"]))
    statuses = [call["status"] for call in calls]
    smallest = min(gaps(calls))
    figures = {"accepted": statuses.count(200), "429s": statuses.count(429),
               "smallest gap / interval": round(smallest / INTERVAL, 3)}
    record_property("upload+distribute matrix", figures)
    print(f"{racing_ledger_backend.backend.name}: {LEGS} legs x (upload, distribute): {figures}")
    assert statuses.count(429) == 0, f"the emulator answered 429: {statuses}"
    assert statuses == [200] * 2 * LEGS, statuses
    assert [call["endpoint"] for call in calls].count("upload-file") == LEGS
    assert smallest >= INTERVAL - ARRIVAL_SLACK, f"write calls {smallest:.4f} s apart: {calls}"
    released = {u["uploadId"]: u for account in emulator.state()["accounts"]
                for project in account["projects"] for u in project["uploads"]}
    for leg in legs:
        build = released[leg[0].outputs["upload-id"]]
        assert (build["autoRelease"], build["distributions"]) == (False, 1)
