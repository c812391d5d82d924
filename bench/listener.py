"""How many webhook deliveries the listener accepts per second, and how long each waits for its 2xx.

Starts `streampixel-distribute listen --paused` (deliveries are validated and committed to the
durable SQLite queue, fsync included, and nothing is acted on, so only the accept path is timed),
pins it to one CPU core, and over loopback sends
  1. N deliveries one after another on one keep-alive connection, then
  2. bursts of 100 deliveries at once, each on its own connection,
  3. under a slowloris attack: 1,000 connections (the default connection limit) that each trickle
     one header byte a second and reconnect when dropped, held open while deliveries are sent one
     at a time, each on a new connection (as Streampixel sends them),
all with distinct uploadIds (each one is a real insert). Prints a Markdown table: accepted per
second, p50/p99/max time to the 2xx (connection set-up included in 3). Streampixel gives up after
10 s; p99 must stay far below, and under 1 s during the attack.

    python bench/listener.py [--sequential 1000] [--burst 100] [--bursts 3] [--slow 1000]
                             [--slow-deliveries 50] [--queue-dir DIR]

The queue lives in --queue-dir (default: a temporary directory under the repository, i.e. on a
real disk; /tmp is often tmpfs, where fsync costs nothing). The table names the filesystem.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import product  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def start_listener(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    ready = workdir / "ready.json"
    env = {k: v for k, v in product.env().items() if not k.startswith("STREAMPIXEL_")}
    env.update({
        "STREAMPIXEL_WEBHOOK_TOKEN": TOKEN,
        "STREAMPIXEL_API_KEY": "bench-api-key-0a1b2c3d",
        "STREAMPIXEL_USER_ID": "65de0000000000000000a001",
        "STREAMPIXEL_API_URL": "http://127.0.0.1:9/pixelStripeApi",  # never called: --paused
    })
    proc = subprocess.Popen(
        product.command(
            "listen", "--port", "0", "--paused", "--queue", str(workdir / "queue.sqlite3"),
            "--ready-file", str(ready), "--threads", "8",
            "--max-pending", "1000000"),  # paused: everything stays pending, none may be refused
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir,
    )
    deadline = time.monotonic() + 20
    while not ready.exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit("listener did not start")
        time.sleep(0.05)
    return proc, int(json.loads(ready.read_text())["port"])


def body(i: int) -> bytes:
    return json.dumps({
        "event": "build.approved", "projectId": "65de0000000000000000b001",
        "uploadId": f"{i:024x}", "fileUrl": "https://bucket.example/build.zip",
        "status": "Approved", "objection": None, "timestamp": "2026-04-21T11:30:00.000Z",
    }).encode()


HEADERS = {"Content-Type": "application/json"}
PATH = f"/webhook/{TOKEN}"


def post(conn: http.client.HTTPConnection, data: bytes) -> tuple[int, float]:
    start = time.perf_counter()
    conn.request("POST", PATH, body=data, headers=HEADERS)
    resp = conn.getresponse()
    resp.read()
    return resp.status, time.perf_counter() - start


def sequential(port: int, n: int, first: int) -> tuple[list[float], float, list[int]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times, statuses = [], []
    start = time.perf_counter()
    for i in range(first, first + n):
        status, elapsed = post(conn, body(i))
        statuses.append(status)
        times.append(elapsed)
    wall = time.perf_counter() - start
    conn.close()
    return times, wall, statuses


def burst(port: int, n: int, first: int) -> tuple[list[float], float, list[int]]:
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(n)]
    for conn in conns:
        conn.connect()  # connection setup is not part of the time to 2xx
    barrier = threading.Barrier(n + 1)
    times: list[float] = [0.0] * n
    statuses: list[int] = [0] * n

    def one(k: int) -> None:
        data = body(first + k)
        barrier.wait()
        statuses[k], times[k] = post(conns[k], data)

    threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    barrier.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return times, wall, statuses


class SlowClients:
    """Connections that send a request's start, then one header byte a second, never finishing;
    a dropped one is opened again. The feeding thread stops by itself after `limit` seconds."""

    def __init__(self, port: int, count: int, limit: float = 600.0) -> None:
        self.port = port
        self.head = f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ".encode()
        self.sockets: list[socket.socket | None] = [None] * count
        self.reopened = 0
        self.limit = limit
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)

    def _open(self) -> socket.socket | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(self.head)
        except OSError:
            return None
        return sock

    def __enter__(self) -> SlowClients:
        self.sockets = [self._open() for _ in self.sockets]
        self.thread.start()
        return self

    def _feed(self) -> None:
        deadline = time.monotonic() + self.limit
        while not self.stop.wait(1.0) and time.monotonic() < deadline:
            for i, sock in enumerate(self.sockets):
                if sock is not None:
                    try:
                        sock.send(b"a")
                        continue
                    except OSError:  # dropped by the server: open another
                        sock.close()
                        self.reopened += 1
                self.sockets[i] = self._open()

    def open_count(self) -> int:
        return sum(s is not None for s in self.sockets)

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock in self.sockets:
            if sock is not None:
                sock.close()


def under_slowloris(port: int, slow: int, n: int, first: int) -> tuple[list[float], float,
                                                                         list[int], str]:
    times, statuses = [], []
    with SlowClients(port, slow) as attack:
        time.sleep(2.0)  # the attack settles: every slot taken, the feeder running
        held = attack.open_count()
        start = time.perf_counter()
        for i in range(first, first + n):
            began = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            status, _ = post(conn, body(i))
            conn.close()
            statuses.append(status)
            times.append(time.perf_counter() - began)
            time.sleep(0.1)  # deliveries arrive one by one, while the attack goes on
        wall = time.perf_counter() - start
        note = f"{held} slow connections held, {attack.reopened} reopened after a drop"
    return times, wall, statuses, note


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def filesystem(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _dev, mount, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mount) and len(mount) > len(best):
                best, kind = mount, fstype
    except OSError:
        pass
    return kind


def row(name: str, times: list[float], wall: float) -> str:
    ms = [t * 1000 for t in times]
    return (f"| {name} | {len(times)} | {len(times) / wall:,.0f} | {statistics.median(ms):.1f} | "
            f"{pct(ms, 99):.1f} | {max(ms):.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--slow", type=int, default=1000)
    parser.add_argument("--slow-deliveries", type=int, default=50)
    parser.add_argument("--queue-dir", type=Path, default=None)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.slow + args.burst + 256
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    base = args.queue_dir or ROOT
    base.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=".bench-listener-", dir=base))
    proc, port = start_listener(workdir)
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    pinned = "not pinned"
    if len(cores) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(proc.pid, {cores[0]})  # the listener: one core
        os.sched_setaffinity(0, set(cores[1:]))  # this client: the others
        pinned = f"listener pinned to core {cores[0]}"
    results: list[str] = []
    try:
        # Warm-up: first requests load the JSON Schema validator and fill caches.
        sequential(port, 20, 10_000_000)
        times, wall, statuses = sequential(port, args.sequential, 0)
        assert set(statuses) == {202}, f"unexpected statuses {set(statuses)}"
        results.append(row("sequential, 1 keep-alive connection", times, wall))
        all_burst: list[float] = []
        walls = 0.0
        for b in range(args.bursts):
            times, wall, statuses = burst(port, args.burst, 1_000_000 * (b + 1))
            assert set(statuses) == {202}, f"unexpected statuses {set(statuses)}"
            all_burst += times
            walls += wall
        results.append(row(f"{args.bursts} bursts of {args.burst} concurrent", all_burst, walls))
        if args.slow:
            times, _wall, statuses, note = under_slowloris(port, args.slow, args.slow_deliveries,
                                                           5_000_000)
            assert set(statuses) == {202}, f"unexpected statuses {set(statuses)}"
            # Paced 0.1 s apart on purpose: a rate here would measure the pacing.
            results.append(row(f"one at a time, new connection each, during a slowloris of "
                               f"{args.slow} ({note})", times, sum(times)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"streampixel-distribute listen, durable queue (SQLite WAL, synchronous=FULL) on "
          f"{filesystem(base)}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs, {pinned}")
    print()
    print("| scenario | deliveries | accepted/s | p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for line in results:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
