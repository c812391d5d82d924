"""Cancellation: SIGTERM (a cancelled CI job) and SIGINT (Ctrl-C) while waiting for a slot and
while a request is in flight.

The contract: the process ends within 2 s of the signal with exit 128 + signal (143 / 130), still
writes its outputs and summary (`status=failed`, `error=cancelled`), and leaves no reservation
that blocks other jobs for more than one interval (GCRA never releases; a cancelled job wastes at
most the one slot it held).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from streampixel_distribute.coordinator import GUARD_FRACTION, GUARD_MAX
from streampixel_distribute.ledger import account_key, open_ledger
from support.emulator import Emulator
from support.hostile import LiveAction, finish_action, spawn_action
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
    # The cancelled job cost the queue exactly its one slot, nothing more.
    assert next_free(path) <= held + spacing(interval) + 1e-6


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
