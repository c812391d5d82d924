"""Cancellation: SIGTERM (a cancelled CI job) and SIGINT (Ctrl-C) while waiting for a slot and
while a request is in flight.

The contract: the process ends within 2 s of the signal with exit 128 + signal (143 / 130), still
writes its outputs and summary (`status=failed`, `error=cancelled`), and a job cancelled while
it waits gives its slot back, in every storing backend: released when nobody reserved after it
(the next job may call in it), marked released when someone did (nobody moves; the next job to
reserve takes it). A job cancelled during its request keeps its slot: the call may have arrived.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from streampixel_distribute.coordinator import GUARD_FRACTION, GUARD_MAX
from streampixel_distribute.ledger import account_key, open_ledger
from streampixel_distribute.ledger.queue import Holder
from support.emulator import Emulator
from support.hostile import LiveAction, finish_action, spawn_action
from support.ledger_contract import BackendUnderTest
from support.runner import ActionRun

GRACE = 2.0  # seconds from the signal to the process having exited
SIGNALS = [pytest.param(signal.SIGTERM, 143, id="SIGTERM"),
           pytest.param(signal.SIGINT, 130, id="SIGINT")]


def inputs_for(emu: Emulator, ledger: str, interval: float, **overrides: str) -> dict[str, str]:
    demo = emu.demo
    values = {
        "api-key": demo.api_key, "user-id": demo.user_id, "project-id": demo.project_id,
        "upload-id": demo.upload_id, "api-url": emu.url, "ledger": ledger,
        "rate-limit-interval": f"{interval:g}", "max-wait": "600", "timeout": "20",
        "retries": "0",
    }
    values.update(overrides)
    return values


def spacing(interval: float) -> float:
    """What one reservation occupies: the interval plus the coordinator's small guard."""
    return interval + min(GUARD_MAX, GUARD_FRACTION * interval)


def next_free(path: Path) -> float:
    state = json.loads(path.read_text())
    (entry,) = state["accounts"].values()
    return float(entry["next_free"])


def cancel(live: LiveAction, signum: int) -> tuple[ActionRun, float]:
    """Send `signum`; return the run and the seconds it took to exit after the signal."""
    sent = time.monotonic()
    live.process.send_signal(signum)
    run = finish_action(live, timeout=30)
    return run, time.monotonic() - sent


def assert_cancelled(run: ActionRun, took: float, code: int, signum: int) -> None:
    assert took <= GRACE, f"exited {took:.2f} s after the signal"
    assert run.exit_code == code, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.outputs["status"] == "failed", run.outputs
    assert run.outputs["error"] == "cancelled"
    name = signal.Signals(signum).name
    assert name in run.stdout
    assert "Streampixel distribution failed: Cancelled" in run.summary, run.summary
    assert "### What went wrong" in run.summary and name in run.summary


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_signal_during_slot_wait(emulator: Emulator, tmp_path: Path, signum: int,
                                 code: int) -> None:
    interval = 60.0
    path = tmp_path / "ledger.json"
    ledger = open_ledger(f"file://{path}")
    # Another job holds the next minute, so ours must wait for the slot after it.
    ledger.reserve(account_key(emulator.url, emulator.demo.user_id), interval)
    held = next_free(path)

    live = spawn_action(tmp_path / "run", inputs_for(emulator, f"file://{path}", interval))
    live.wait_for("Waiting for the account's rate-limit slot")
    run, took = cancel(live, signum)

    assert_cancelled(run, took, code, signum)
    assert run.outputs["attempts"] == "0"
    assert run.outputs["slot-at"] and run.outputs["position"] == "1"
    assert emulator.requests("distribute-file") == []
    # The cancelled job gave its slot back: the queue is as if it had never reserved.
    assert next_free(path) == held
    assert "Gave the slot back" in run.stdout
    assert "given back: the next job may call in it" in run.summary


def _holder(n: int) -> Holder:
    return Holder(f"{n:012x}", "distribute", "65de0000000000000000b001", f"other job {n}")


def test_a_cancelled_waiting_job_gives_its_slot_back_in_every_backend(
        racing_ledger_backend: BackendUnderTest, emulator: Emulator, tmp_path: Path) -> None:
    """Real processes and signals: released when last, marked when a job queued behind it,
    and the marked slot taken by the next job that reserves."""
    interval = 60.0
    target = racing_ledger_backend.target
    ledger = racing_ledger_backend.open()
    key = account_key(emulator.url, emulator.demo.user_id)
    env = {k: v for k, v in target.environ.items() if k.startswith("GITHUB_")}
    extra = {"github-token": target.github_token} if target.github_token else {}
    ledger.reserve(key, spacing(interval), 0.0, _holder(1))  # another job holds the next minute

    def cancelled_waiter(name: str) -> ActionRun:
        live = spawn_action(tmp_path / name, inputs_for(emulator, target.spec, interval, **extra),
                            env=env)
        live.wait_for("Waiting for the account's rate-limit slot")
        run, took = cancel(live, signal.SIGTERM)
        assert_cancelled(run, took, 143, signal.SIGTERM)
        return run

    # 1. Nobody behind it: released, the account's next slot is where it was before.
    before = ledger.peek(key, spacing(interval))
    run = cancelled_waiter("released")
    assert "given back: the next job may call in it" in run.summary, run.summary
    assert [s.holder for s in ledger.queue(key, spacing(interval))] == [_holder(1)]
    assert ledger.peek(key, spacing(interval)) == pytest.approx(before, abs=0.5)

    # 2. A job queues behind it while it waits: marked, nobody moves, the next one takes it.
    live = spawn_action(tmp_path / "marked", inputs_for(emulator, target.spec, interval, **extra),
                        env=env)
    live.wait_for("Waiting for the account's rate-limit slot")
    ledger.reserve(key, spacing(interval), 0.0, _holder(3))
    behind = ledger.peek(key, spacing(interval))
    run, took = cancel(live, signal.SIGTERM)
    assert_cancelled(run, took, 143, signal.SIGTERM)
    assert "given back: marked for the next job to take" in run.summary, run.summary
    queue = ledger.queue(key, spacing(interval))
    assert [(s.holder == _holder(3), s.released) for s in queue] == [
        (False, False), (False, True), (True, False)]
    assert ledger.peek(key, spacing(interval)) == pytest.approx(behind, abs=0.5)
    taken = ledger.reserve(key, spacing(interval), 0.0, _holder(4))
    assert taken == pytest.approx(queue[1].at, abs=0.5)
    assert emulator.requests("distribute-file") == []


@pytest.mark.parametrize(("signum", "code"), SIGNALS)
def test_signal_during_request(emulator: Emulator, tmp_path: Path, signum: int,
                               code: int) -> None:
    interval = 30.0
    path = tmp_path / "ledger.json"
    emulator.fault(path="distribute-file", delay=15)  # the server sits on the request
    started = time.time()
    live = spawn_action(tmp_path / "run", inputs_for(emulator, f"file://{path}", interval))
    live.wait_for("Calling distribute-file")
    deadline = time.monotonic() + 10
    while not emulator.requests("distribute-file") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert emulator.requests("distribute-file"), "the request never reached the emulator"
    run, took = cancel(live, signum)

    assert_cancelled(run, took, code, signum)
    assert run.outputs["attempts"] == "1"
    assert run.outputs["http-status"] == ""
    # Only the slot this job used is reserved: the next job may call one interval later.
    assert started <= next_free(path) - spacing(interval) <= time.time()
