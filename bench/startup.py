"""Startup cost of the tool, measured side by side in one run.

Compares the wall time of
  (a) `python -c "import requests"` (the floor any Python HTTP tool pays),
  (b) `python entrypoint.py --dry-run true` (validate, peek the ledger, report),
  (c) `python entrypoint.py` making a real call to the bundled emulator on loopback,
and prints medians, the added milliseconds over (a), and the ratio. Target: (b) and (c) add
under 150 ms over (a).

    python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from streampixel_distribute.emulator import DEMO  # noqa: E402


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    ready = workdir / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streampixel_distribute.emulator", "--port", "0", "--interval",
         "0", "--ready-file", str(ready), "--quiet"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not ready.exists() or not ready.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("emulator did not start")
        time.sleep(0.05)
    info = json.loads(ready.read_text())
    return proc, {
        "STREAMPIXEL_API_URL": info["url"],
        "STREAMPIXEL_API_KEY": DEMO.api_key,
        "STREAMPIXEL_USER_ID": DEMO.user_id,
        "STREAMPIXEL_PROJECT_ID": DEMO.project_id,
        "STREAMPIXEL_UPLOAD_ID": DEMO.upload_id,
        "STREAMPIXEL_LEDGER": "none",
    }


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("INPUT_", "STREAMPIXEL_", "GITHUB_"))}
    base_env["PYTHONPATH"] = str(ROOT / "src")
    with tempfile.TemporaryDirectory() as tmp:
        emulator, account = start_emulator(Path(tmp))
        try:
            env = {**base_env, **account}
            entry = [sys.executable, str(ROOT / "entrypoint.py")]
            # Interleave the three commands so machine noise hits all of them alike.
            rows: dict[str, list[float]] = {"baseline": [], "dry-run": [], "real call": []}
            timed([*entry, "--dry-run", "true"], env, 2)  # warm the page cache
            for _ in range(args.runs):
                rows["baseline"] += timed([sys.executable, "-c", "import requests"], env, 1)
                rows["dry-run"] += timed([*entry, "--dry-run", "true"], env, 1)
                rows["real call"] += timed(entry, env, 1)
        finally:
            emulator.terminate()
            emulator.wait(10)
    base = statistics.median(rows["baseline"])
    print(f"runs per command: {args.runs}; medians on {os.cpu_count()} cores")
    print("| command | median ms | p90 ms | added ms over baseline | ratio |")
    print("|---|---:|---:|---:|---:|")
    for name, label in (("baseline", '`python -c "import requests"`'),
                        ("dry-run", "`entrypoint.py --dry-run true`"),
                        ("real call", "`entrypoint.py` (real call to the emulator)")):
        values = sorted(rows[name])
        med = statistics.median(values)
        p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
        print(f"| {label} | {med * 1000:.0f} | {p90 * 1000:.0f} | {(med - base) * 1000:+.0f} | "
              f"{med / base:.2f} |")
    worst = max(statistics.median(rows["dry-run"]), statistics.median(rows["real call"])) - base
    print(f"target: added <= 150 ms; measured worst {worst * 1000:.0f} ms: "
          f"{'OK' if worst <= 0.150 else 'OVER'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
