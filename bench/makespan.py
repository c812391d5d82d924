"""Makespan of N parallel jobs sharing one account's rate limit, per ledger backend.

For each ledger (`none`, `file`, `redis`, `git+file`, `git+http`) and N in (2, 5, 10), start N
CLI processes (`python -m streampixel_distribute`) together against one emulator whose write
window is `--interval` seconds (the CLI is given the same interval), and read the emulator's
request log:

- makespan: from the first to the last successful distribute call, as the emulator saw them;
- ratio: makespan / ((N - 1) x interval), the physical minimum (1.00 is perfect);
- 429s: rate-limited answers the jobs received.

Side by side, in this same process, the reservation latency of each backend: `--reserves`
sequential `ledger.reserve` calls on distinct keys, median and p95.

Then the matrix of the README's quick start (`--legs`, default 3): each leg uploads a build
(`upload`, autoRelease false) and then distributes it, all legs at once, so 2 x legs write calls
of one account share one window (upload-file and distribute-file alike). Its table gives the
accepted calls, the 429s, the smallest gap between two write calls over the interval (>= 1 is
required) and the makespan over its minimum, (2 x legs - 1) x interval.

Then the cancelled job (`--cancel`, on by default): 5 jobs start at once and the one second in
line is cancelled while it waits, side by side in two ways: SIGKILL (it cannot give its slot
back: what every release did before jobs gave slots back) and SIGTERM (as a CI runner cancels:
it gives the slot back, and the jobs behind move up). The table gives the makespan of the 4
calls made, over its minimum 3 x interval.

Targets: ratio <= 1.05 and zero 429s for every coordinating backend. `none` is shown for
comparison; it gets a `max-wait` long enough to succeed by retrying after 429s.

Needs `redis-server` and `git` (missing ones are skipped with a note). It reuses the servers of
tests/support (no pytest run) and the installed package (the project venv's python). Takes
about 2-3 minutes with the defaults:

    python bench/makespan.py [--interval 1] [--jobs 2,5,10] [--legs 3] [--backends none,...]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from streampixel_distribute.ledger import open_ledger  # noqa: E402
from support import product  # noqa: E402
from support.emulator import Emulator, start_emulator  # noqa: E402
from support.git_server import GitHTTPServer, init_bare, start_git_http_server  # noqa: E402
from support.redis_server import RedisServer, start_redis  # noqa: E402

BACKENDS = ("none", "file", "redis", "git+file", "git+http")
JOB_TIMEOUT = 600.0


@dataclass
class Row:
    backend: str
    jobs: int
    makespan: float | None = None
    ratio: float | None = None
    rate_limited: int = 0
    failed: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    note: str = ""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def reserve_latency(spec: str, count: int, interval: float) -> tuple[float, float]:
    """Median and p95 milliseconds of `count` sequential reserves on distinct keys."""
    ledger = open_ledger(spec)
    try:
        ledger.reserve(f"bench-warm-{uuid.uuid4().hex}", interval)  # connect, create repos
        samples = []
        for index in range(count):
            key = f"bench-{uuid.uuid4().hex[:12]}-{index}"
            start = time.perf_counter()
            ledger.reserve(key, interval)
            samples.append((time.perf_counter() - start) * 1000)
    finally:
        ledger.close()
    return statistics.median(samples), percentile(samples, 0.95)


def run_jobs(emulator: Emulator, ledger: str, jobs: int, interval: float,
             max_wait: float) -> tuple[int, list[int]]:
    """Start `jobs` CLI processes together; return (failed jobs, attempts per job)."""
    env = _env(emulator, ledger)
    argv = [
        *product.command(), "--api-url", emulator.url,
        "--user-id", emulator.demo.user_id, "--project-id", emulator.demo.project_id,
        "--upload-id", emulator.demo.upload_id, "--rate-limit-interval", f"{interval:g}",
        "--max-wait", f"{max_wait:g}", "--json",
    ]  # fmt: skip
    processes = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for _ in range(jobs)]
    failed, attempts = 0, []
    for process in processes:
        out, _ = process.communicate(timeout=JOB_TIMEOUT)
        try:
            outputs = json.loads(out)
        except ValueError:
            outputs = {}
        if process.returncode != 0 or outputs.get("status") != "triggered":
            failed += 1
        attempts.append(int(outputs.get("attempts") or 0))
    return failed, attempts


def _env(emulator: Emulator, ledger: str) -> dict[str, str]:
    env = {k: v for k, v in product.env().items()
           if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))}
    env.update(STREAMPIXEL_API_KEY=emulator.demo.api_key,
               STREAMPIXEL_LEDGER=ledger,
               STREAMPIXEL_FILE_URL="https://builds.example.com/Build.zip?X-Amz-Signature=00")
    return env


def _leg(emulator: Emulator, env: dict[str, str], interval: float, max_wait: float) -> bool:
    """Upload a build, then distribute it: True if both calls succeeded."""
    common = ["--api-url", emulator.url, "--user-id", emulator.demo.user_id,
              "--project-id", emulator.demo.project_id, "--rate-limit-interval", f"{interval:g}",
              "--max-wait", f"{max_wait:g}", "--json"]
    upload = subprocess.run([*product.command("upload"), *common,
                             "--auto-release", "false"], env=env, capture_output=True,
                            text=True, timeout=JOB_TIMEOUT, check=False)
    try:
        upload_id = json.loads(upload.stdout)["upload-id"]
    except (ValueError, KeyError):
        return False
    distribute = subprocess.run([*product.command("distribute"), *common,
                                 "--upload-id", upload_id], env=env, capture_output=True,
                                text=True, timeout=JOB_TIMEOUT, check=False)
    return upload.returncode == 0 and distribute.returncode == 0


@dataclass
class MatrixRow:
    backend: str
    legs: int
    accepted: int
    rate_limited: int
    failed: int
    smallest_gap: float | None
    ratio: float | None


def measure_matrix(emulator: Emulator, backend: str, spec: str, legs: int,
                   interval: float) -> MatrixRow:
    emulator.reset()
    emulator.configure(processing_seconds=0)  # a build is distributable once uploaded
    calls_needed = 2 * legs
    max_wait = (calls_needed * interval * 4 + 60) if backend == "none" else \
        (calls_needed * interval + 60)
    env = _env(emulator, spec)
    with ThreadPoolExecutor(legs) as pool:
        done = list(pool.map(lambda _: _leg(emulator, env, interval, max_wait), range(legs)))
    calls = sorted(emulator.requests("upload-file") + emulator.requests("distribute-file"),
                   key=lambda c: float(c["time"]))
    accepted = [float(c["time"]) for c in calls if c["status"] == 200]
    gaps = [later - earlier for earlier, later in itertools.pairwise(accepted)]
    return MatrixRow(
        backend, legs, len(accepted), sum(1 for c in calls if c["status"] == 429),
        done.count(False), min(gaps) / interval if gaps else None,
        (accepted[-1] - accepted[0]) / ((calls_needed - 1) * interval) if gaps else None)


def matrix_table(rows: list[MatrixRow], interval: float) -> str:
    lines = [f"| ledger | legs | write calls accepted | 429s | failed legs | smallest gap / "
             f"{interval:g} s | makespan / minimum |", "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r.backend} | {r.legs} | {r.accepted} of {2 * r.legs} | {r.rate_limited} | "
              f"{r.failed} | {fmt(r.smallest_gap, '.3f')} | {fmt(r.ratio, '.3f')} |"
              for r in rows]
    return "\n".join(lines)


CANCEL_JOBS = 5


def measure_cancel(emulator: Emulator, spec: str, interval: float, signum: int) -> float | None:
    """Makespan of the calls of CANCEL_JOBS jobs started at once, the second in line cancelled
    with `signum` while it waits; None if a job failed."""
    emulator.reset()
    env = _env(emulator, spec)
    argv = [*product.command(), "--api-url", emulator.url,
            "--user-id", emulator.demo.user_id, "--project-id", emulator.demo.project_id,
            "--upload-id", emulator.demo.upload_id, "--rate-limit-interval", f"{interval:g}",
            "--max-wait", f"{CANCEL_JOBS * interval + 60:g}", "--json"]
    second = threading.Event()
    chosen: list[subprocess.Popen[str]] = []

    def watch(process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            if "Reserved slot" in line and "(position 1," in line and not second.is_set():
                chosen.append(process)
                second.set()

    processes = [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(CANCEL_JOBS)]
    readers = [threading.Thread(target=watch, args=(p,), daemon=True) for p in processes]
    for reader in readers:
        reader.start()
    try:
        if not second.wait(timeout=60):
            return None
        chosen[0].send_signal(signum)
        codes = [p.wait(timeout=JOB_TIMEOUT) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    if codes.count(0) != CANCEL_JOBS - 1:
        return None
    accepted = sorted(float(c["time"]) for c in emulator.requests("distribute-file")
                      if c["status"] == 200)
    return accepted[-1] - accepted[0] if len(accepted) == CANCEL_JOBS - 1 else None


def cancel_table(rows: list[tuple[str, float | None, float | None]], interval: float) -> str:
    minimum = (CANCEL_JOBS - 2) * interval
    lines = [f"| ledger | makespan, slot kept (SIGKILL) | makespan, slot given back (SIGTERM) "
             f"| / {minimum:g} s kept | / {minimum:g} s given back |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {fmt(kept, '.2f')} s | {fmt(back, '.2f')} s | "
              f"{fmt(kept and kept / minimum, '.3f')} | {fmt(back and back / minimum, '.3f')} |"
              for name, kept, back in rows]
    return "\n".join(lines)


def measure(emulator: Emulator, backend: str, spec: str, jobs: int, interval: float) -> Row:
    emulator.reset()  # forgets the request log and the rate-limit window
    # `none` needs room to retry after 429s; coordinated jobs only wait their turn.
    max_wait = (jobs * interval * 4 + 60) if backend == "none" else (jobs * interval + 60)
    failed, _attempts = run_jobs(emulator, spec, jobs, interval, max_wait)
    calls = emulator.requests("distribute-file")
    accepted = sorted(float(c["time"]) for c in calls if c["status"] == 200)
    row = Row(backend, jobs, failed=failed,
              rate_limited=sum(1 for c in calls if c["status"] == 429))
    if len(accepted) >= 2:
        row.makespan = accepted[-1] - accepted[0]
        row.ratio = row.makespan / ((jobs - 1) * interval)
    return row


class Backends:
    """Creates a fresh ledger spec per run; starts and stops the servers it needs."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.redis: RedisServer | None = None
        self.git_http: GitHTTPServer | None = None
        self.count = 0

    def missing(self, backend: str) -> str | None:
        binary = {"redis": "redis-server", "git+file": "git", "git+http": "git"}.get(backend)
        if binary and shutil.which(binary) is None:
            return f"`{binary}` not installed: skipped"
        return None

    def fresh(self, backend: str) -> str:
        """A ledger spec with no reservations in it yet."""
        self.count += 1
        name = f"run-{self.count}"
        if backend == "none":
            return "none"
        if backend == "file":
            return (self.workdir / f"{name}.json").as_uri()
        if backend == "redis":
            if self.redis is None:
                self.redis = start_redis(self.workdir / "redis")
            with contextlib.closing(self.redis.client()) as client:
                client.flushdb()
            return self.redis.url()
        if backend == "git+file":
            return f"git+file://{init_bare(self.workdir / f'{name}.git')}"
        if backend == "git+http":
            if self.git_http is None:
                self.git_http = start_git_http_server(self.workdir / "git-http")
            init_bare(self.git_http.repo_path(f"{name}.git"))
            return self.git_http.spec(f"{name}.git")
        raise ValueError(f"unknown backend {backend!r}")

    def close(self) -> None:
        for server in (self.redis, self.git_http):
            if server is not None:
                server.stop()


@contextlib.contextmanager
def running(factory: Callable[[], Backends]) -> Iterator[Backends]:
    backends = factory()
    try:
        yield backends
    finally:
        backends.close()


def fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else format(value, pattern)


def table(rows: list[Row], interval: float) -> str:
    lines = [
        f"| ledger | N | makespan (s) | ratio to (N-1) x {interval:g} s | 429s | failed jobs "
        "| reserve p50 (ms) | reserve p95 (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        if row.note:
            lines.append(f"| {row.backend} | - | - | - | - | - | - | {row.note} |")
            continue
        lines.append(
            f"| {row.backend} | {row.jobs} | {fmt(row.makespan, '.2f')} | "
            f"{fmt(row.ratio, '.3f')} | {row.rate_limited} | {row.failed} | "
            f"{fmt(row.p50_ms, '.1f')} | {fmt(row.p95_ms, '.1f')} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds of the emulator's write window (compressed from 120)")
    parser.add_argument("--jobs", default="2,5,10", help="comma-separated N values")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--legs", type=int, default=3,
                        help="matrix legs that each upload and then distribute (0: none)")
    parser.add_argument("--cancel", action=argparse.BooleanOptionalAction, default=True,
                        help="measure 5 jobs with the second cancelled while it waits")
    parser.add_argument("--reserves", type=int, default=50,
                        help="sequential reserves timed per backend")
    args = parser.parse_args()
    counts = [int(n) for n in args.jobs.split(",")]
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(chosen) - set(BACKENDS)
    if unknown or any(n < 2 for n in counts):
        parser.error(f"backends are {', '.join(BACKENDS)}; every N must be at least 2")

    started = time.monotonic()
    rows: list[Row] = []
    matrix: list[MatrixRow] = []
    cancelled: list[tuple[str, float | None, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="spd-makespan-") as tmp:
        workdir = Path(tmp)
        emulator = start_emulator(workdir / "emulator", interval=args.interval, quiet=True)
        try:
            with running(lambda: Backends(workdir)) as backends:
                for backend in chosen:
                    note = backends.missing(backend)
                    if note:
                        rows.append(Row(backend, 0, note=note))
                        continue
                    p50, p95 = reserve_latency(backends.fresh(backend), args.reserves,
                                               args.interval)
                    for jobs in counts:
                        row = measure(emulator, backend, backends.fresh(backend), jobs,
                                      args.interval)
                        row.p50_ms, row.p95_ms = p50, p95
                        rows.append(row)
                        print(f"{backend:9} N={jobs:<3} ratio {fmt(row.ratio, '.3f')}  "
                              f"429s {row.rate_limited}  failed {row.failed}",
                              file=sys.stderr, flush=True)
                    if args.legs:
                        matrix.append(measure_matrix(emulator, backend, backends.fresh(backend),
                                                     args.legs, args.interval))
                        print(f"{backend:9} matrix of {args.legs} legs: "
                              f"429s {matrix[-1].rate_limited}  failed {matrix[-1].failed}",
                              file=sys.stderr, flush=True)
                    if args.cancel and backend != "none":
                        kept, back = (measure_cancel(emulator, backends.fresh(backend),
                                                     args.interval, signum)
                                      for signum in (signal.SIGKILL, signal.SIGTERM))
                        cancelled.append((backend, kept, back))
                        print(f"{backend:9} second job cancelled: kept {fmt(kept, '.2f')} s, "
                              f"given back {fmt(back, '.2f')} s", file=sys.stderr, flush=True)
        finally:
            emulator.stop()
    print(table(rows, args.interval))
    if matrix:
        print(f"\nUpload then distribute, {args.legs} legs at once (one window for both "
              "endpoints):\n")
        print(matrix_table(matrix, args.interval))
    if cancelled:
        print(f"\n{CANCEL_JOBS} jobs at once, the second in line cancelled while it waits:\n")
        print(cancel_table(cancelled, args.interval))
    elapsed = time.monotonic() - started
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; python {sys.version.split()[0]}, "
          f"{os.cpu_count()} CPUs.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
