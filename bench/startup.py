"""Start-up cost of the tool, measured side by side in one run (medians of interleaved runs).

Rows:
  (a) `python -c pass`: a bare interpreter;
  (b) `python -c "import requests"`: the floor any Python HTTP tool pays;
  (c) a dry run (`entrypoint.py --dry-run`): validate, peek the ledger, report; no HTTP library;
  (d) a real call to the bundled emulator on loopback (`entrypoint.py`);
  (e) five jobs started at once, one ledger (file, git+file, redis): the time from their common
      start to the first call the emulator receives.

Targets: (c) <= (a) + 60 ms; (d) <= (b) + 60 ms; (e) <= 0.6 s.

    python bench/startup.py [--runs 15] [--bursts 7]

It measures the installed package (run it with the project venv's python: an editable install
or the wheel), started as the image starts it, through entrypoint.py. The package's bytecode is
compiled first (as pip and the image do): without it every run would also compile the sources.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from streampixel_distribute.emulator import DEMO  # noqa: E402
from support import product  # noqa: E402

if TYPE_CHECKING:
    from support.redis_server import RedisServer

JOBS = 5


def start_emulator(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streampixel_distribute.emulator", "--port", "0", "--interval",
         "0", "--ready-file", str(ready), "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("emulator did not start")
        time.sleep(0.05)
    return proc, str(json.loads(ready.read_text())["url"])


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return elapsed


def control(url: str, path: str, body: object = None) -> object:
    import urllib.request

    root = url.split("/pixelStripeApi", maxsplit=1)[0]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(  # noqa: S310 - the emulator on loopback
        root + path, data=data, method="POST" if data else "GET",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
        return json.loads(response.read())


def burst(entry: list[str], env: dict[str, str], url: str) -> float:
    """Seconds from five jobs' common start to the first call the emulator saw."""
    control(url, "/_emulator/reset", {})
    started = time.time()
    procs = [subprocess.Popen(entry, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE) for _ in range(JOBS)]
    # The first call is all this measures: stop the others while they wait for their slots.
    first = None
    while first is None:
        calls = control(url, "/_emulator/requests?endpoint=distribute-file")
        if isinstance(calls, list) and calls:
            first = min(float(call["time"]) for call in calls)
        elif all(p.poll() is not None for p in procs):
            errors = [p.stderr.read().decode()[-300:] for p in procs if p.stderr]
            raise SystemExit(f"no call reached the emulator: {errors}")
        else:
            time.sleep(0.01)
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(10)
    return first - started


def ledgers(tmp: Path) -> dict[str, str]:
    found = {"file": f"file://{tmp}/ledger.json"}
    if shutil.which("git"):
        subprocess.run(["git", "init", "-q", "--bare", str(tmp / "ledger.git")], check=True)
        found["git+file"] = f"git+file://{tmp}/ledger.git"
    if shutil.which("redis-server"):
        found["redis"] = "redis"  # started below
    return found


def run_bursts(tmp: Path, job: dict[str, str], entry: list[str], url: str, count: int
               ) -> tuple[dict[str, list[float]], RedisServer | None]:
    """First-call latency of `count` bursts per ledger; and the Redis server started for it."""
    bursts: dict[str, list[float]] = {}
    redis_server: RedisServer | None = None
    for name, given in ledgers(tmp).items():
        spec = given
        if name == "redis":
            from support.redis_server import start_redis

            redis_server = start_redis(tmp / "redis")
            spec = redis_server.url()
        # The real interval: only the first call happens while the burst is measured.
        burst_env = {**job, "STREAMPIXEL_LEDGER": spec, "STREAMPIXEL_RATE_LIMIT_INTERVAL": "120"}
        bursts[name] = []
        for attempt in range(count):
            if name == "file":
                (tmp / "ledger.json").unlink(missing_ok=True)
            # A fresh account per burst: nobody holds its next slot yet.
            burst_env["STREAMPIXEL_USER_ID"] = f"65de00000000000000{attempt:06x}"
            control(url, "/_emulator/accounts", [{
                "userId": burst_env["STREAMPIXEL_USER_ID"], "apiKey": DEMO.api_key,
                "projects": [{"projectId": DEMO.project_id,
                              "uploads": [{"uploadId": DEMO.upload_id}]}]}])
            bursts[name].append(burst(entry, burst_env, url))
    return bursts, redis_server


def median(values: list[float]) -> float:
    return statistics.median(values) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--bursts", type=int, default=7)
    args = parser.parse_args()
    compileall.compile_dir(str(product.package_dir()), quiet=1)
    env = {k: v for k, v in product.env().items()
           if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_", "RUNNER_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    redis_server: RedisServer | None = None
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        emulator, url = start_emulator(tmp, env)
        account = {"STREAMPIXEL_API_URL": url, "STREAMPIXEL_API_KEY": DEMO.api_key,
                   "STREAMPIXEL_USER_ID": DEMO.user_id, "STREAMPIXEL_PROJECT_ID": DEMO.project_id,
                   "STREAMPIXEL_UPLOAD_ID": DEMO.upload_id, "STREAMPIXEL_LEDGER": "none"}
        job = {**env, **account}
        entry = [sys.executable, str(ROOT / "entrypoint.py")]
        commands = {
            "pass": [sys.executable, "-c", "pass"],
            "requests": [sys.executable, "-c", "import requests"],
            "dry run": [*entry, "--dry-run"],
            "real call": entry,
        }
        try:
            rows: dict[str, list[float]] = {name: [] for name in commands}
            for argv in commands.values():
                timed(argv, job)  # warm the page cache
            for _ in range(args.runs):  # interleaved: machine noise hits every row alike
                for name, argv in commands.items():
                    rows[name].append(timed(argv, job))
            bursts, redis_server = run_bursts(tmp, job, entry, url, args.bursts)
        finally:
            emulator.terminate()
            emulator.wait(10)
            if redis_server is not None:
                redis_server.stop()
    base, floor = median(rows["pass"]), median(rows["requests"])
    print(f"{args.runs} interleaved runs per command, {args.bursts} bursts per ledger, "
          f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print()
    print("| command | median ms | over `python -c pass` | over `import requests` |")
    print("|---|---:|---:|---:|")
    for name in commands:
        value = median(rows[name])
        print(f"| {name} | {value:.0f} | {value - base:+.0f} | {value - floor:+.0f} |")
    print()
    print(f"| {JOBS} jobs started at once, ledger | first call after the start, median s | max s |")
    print("|---|---:|---:|")
    for name, values in bursts.items():
        print(f"| {name} | {statistics.median(values):.2f} | {max(values):.2f} |")
    dry, real = median(rows["dry run"]) - base, median(rows["real call"]) - floor
    worst_burst = max(statistics.median(v) for v in bursts.values())
    print()
    print(f"targets: dry run +{dry:.0f} ms (<= +60), real call +{real:.0f} ms (<= +60), "
          f"five at once {worst_burst:.2f} s (<= 0.6): "
          f"{'OK' if dry <= 60 and real <= 60 and worst_burst <= 0.6 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
