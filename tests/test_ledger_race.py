"""Many jobs reserving at the same instant, each in its own process, against every storing backend.

One fresh interpreter (`python -c`, nothing inherited from pytest) imports the backend once and
forks the reservers: each is a separate process with its own ledger object and its own
connection or file descriptors, opened after the fork. Forking from that clean process instead of
starting 32 interpreters keeps the test fast on 2 cores (every interpreter pays its start-up and
imports in CPU) without sharing any state between reservers.

Each reserver opens the ledger, warms it up (a peek: connection open), says it is ready and blocks
on a pipe; when all are ready the parent closes the pipe, which wakes them all at once. Nobody
sleeps until a slot: the interval is long and only the returned slots are checked. A lost update
(two reservers reading the same next_free) shows as a duplicate or too-close slot; a lost
reservation as a missing one.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time

from support.ledger_contract import BackendUnderTest

RESERVERS = 32
INTERVAL = 60.0

ZYGOTE = r"""
import json, os, sys
from streampixel_distribute.ledger import LedgerContext, open_ledger

job = json.loads(os.environ["SPD_RACE_JOB"])


def open_it():
    context = LedgerContext(environ=job["environ"], github_token=job["github_token"])
    return open_ledger(job["spec"], context)


open_it().close()  # imports the backend (and its client library) once, before forking
ready_r, ready_w = os.pipe()
go_r, go_w = os.pipe()
out_r, out_w = os.pipe()
pids = []
for _ in range(job["count"]):
    pid = os.fork()
    if pid == 0:
        os.close(ready_r); os.close(go_w); os.close(out_r)
        said_ready = False
        try:
            ledger = open_it()
            ledger.peek(job["key"], job["interval"])
            os.write(ready_w, b"r"); said_ready = True
            os.read(go_r, 1)  # EOF when the parent closes go_w: the start signal
            slot = ledger.reserve(job["key"], job["interval"])
            ledger.close()
            os.write(out_w, f"{slot!r}\n".encode())
            os._exit(0)
        except BaseException as exc:
            if not said_ready:
                os.write(ready_w, b"r")  # never leave the parent waiting for us
            os.write(out_w, ("error " + repr(exc).replace("\n", " ") + "\n").encode())
            os._exit(1)
    pids.append(pid)
os.close(ready_w); os.close(go_r); os.close(out_w)
ready = 0
while ready < job["count"]:
    chunk = os.read(ready_r, 64)
    if not chunk:
        break
    ready += len(chunk)
os.close(go_w)
out = b""
while chunk := os.read(out_r, 65536):
    out += chunk
codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
print(json.dumps({"pids": pids, "ready": ready, "lines": out.decode().splitlines(),
                  "codes": codes}))
"""


def run_reservers(under_test: BackendUnderTest, key: str, count: int) -> list[float]:
    target = under_test.target
    job = {"spec": target.spec, "environ": dict(target.environ),
           "github_token": target.github_token, "key": key, "interval": INTERVAL,
           "count": count}
    env = {**os.environ, "SPD_RACE_JOB": json.dumps(job)}
    done = subprocess.run([sys.executable, "-c", ZYGOTE], env=env, text=True,
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    errors = [line for line in report["lines"] if line.startswith("error")]
    assert not errors, errors
    assert report["ready"] == count
    assert report["codes"] == [0] * count
    assert len(set(report["pids"])) == count  # separate processes, really
    return [float(line) for line in report["lines"]]


def test_concurrent_reservers_get_distinct_slots_one_interval_apart(
    racing_ledger_backend: BackendUnderTest,
) -> None:
    ledger_backend = racing_ledger_backend
    key, tol = ledger_backend.new_key(), ledger_backend.tolerance
    started = time.time()
    slots = sorted(run_reservers(ledger_backend, key, RESERVERS))

    assert len(slots) == RESERVERS
    assert len(set(slots)) == RESERVERS
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= INTERVAL - tol, gaps
    # No slot lost and none skipped: the reservations form one unbroken chain from the first,
    # and the next free slot is right after the last.
    assert slots[-1] - slots[0] <= (RESERVERS - 1) * INTERVAL + tol * RESERVERS
    assert slots[0] >= started - tol
    ledger = ledger_backend.open()
    assert abs(ledger.peek(key, INTERVAL) - (slots[-1] + INTERVAL)) <= 2 * tol
