"""The action under a second runner implementation: nektos/act (tests/support/act.py).

act, and the Forgejo and Gitea runners built on it, parse only the documented form of workflow
commands (`::name::data`); whatever they do not parse they print, secret included. One act run of
tests/act/workflow.yml (module fixture) against one emulator proves, each in its own test:
1. no form of any key reaches act's log, and act parsed every workflow command we printed;
2. a later step sees the action's outputs;
3. a wrong key fails the step with exit code 3 and still writes `error=unauthorized`;
4. three legs through one shared file ledger get zero 429s, calls one interval apart;
5. an upload with a presigned-looking link (which act knows nothing of) and the distribute of
   that build take turns, and no form of the link reaches act's log.
"""

from __future__ import annotations

import itertools
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from streampixel_distribute.redact import _encoded_forms
from support.act import (
    Act,
    ActRun,
    image_builds,
    job_results,
    step_exit_codes,
    step_lines,
    unparsed_commands,
)
from support.container import REPO
from support.emulator import Emulator, start_emulator

pytestmark = [pytest.mark.container, pytest.mark.slow]

WORKFLOW = REPO / "tests" / "act" / "workflow.yml"
# The emulator's write window and the legs' rate-limit-interval (the same, as users set it).
# The coordinator spaces slots by the interval plus a guard of 2 % (at least 0.1 s). At 2 s the
# 0.1 s guard was too small here: with the legs' containers starting on 2 busy cores, the first
# call reached the emulator up to 0.13 s later than the next one, relative to their slots, and
# got a 429 in 2 of 12 runs. 10 s gives a 0.2 s guard (the real 120 s interval gives 2.4 s).
INTERVAL = 10.0
# Between stamping a request on arrival and checking its window (see test_parallel_e2e); the
# window check itself would answer 429 to a call that is really too early.
ARRIVAL_SLACK = 0.005

SINGLE = {"user": "65de00000000000000aa0001", "project": "65de00000000000000bb0001",
          "upload": "65de00000000000000cc0001"}
LEGS = {"user": "65de00000000000000aa0002", "project": "65de00000000000000bb0002",
        "upload": "65de00000000000000cc0002"}
UPLOADER = {"user": "65de00000000000000aa0003", "project": "65de00000000000000bb0003"}


@dataclass
class Proof:
    run: ActRun
    keys: dict[str, str]  # secret name -> value
    results: Path  # files the workflow's later steps wrote
    calls: list[dict[str, Any]]  # the emulator's distribute-file log
    ledger: Path
    file_url: str  # the presigned-looking link the upload job used
    uploads: list[dict[str, Any]]  # the emulator's upload-file log

    def result(self, name: str) -> dict[str, str]:
        path = self.results / f"{name}.txt"
        assert path.exists(), f"the later step of {name} wrote nothing; act's log:\n{self.tail}"
        return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)

    @property
    def tail(self) -> str:
        return "\n".join(self.run.log.splitlines()[-60:])


@pytest.fixture(scope="module")
def proof(act: Act, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proof]:
    root = tmp_path_factory.mktemp("act-proof")
    emulator: Emulator = start_emulator(root / "emulator", interval=INTERVAL, quiet=True)
    try:
        # Distinctive keys, new for each run: every form of them is searched for in the log.
        keys = {name: f"spd-act-{secrets.token_hex(12)}"
                for name in ("SPD_KEY", "SPD_LEGS_KEY", "SPD_WRONG_KEY", "SPD_UPLOAD_KEY")}
        for ids, key in ((SINGLE, keys["SPD_KEY"]), (LEGS, keys["SPD_LEGS_KEY"])):
            emulator.add_account(ids["user"], key, [{"projectId": ids["project"], "uploads": [
                {"uploadId": ids["upload"], "ready": True}]}])
        emulator.add_account(UPLOADER["user"], keys["SPD_UPLOAD_KEY"],
                             [{"projectId": UPLOADER["project"], "uploads": []}])
        file_url = ("https://builds-act.s3.amazonaws.com/game/Build.zip?X-Amz-Algorithm="
                    f"AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature={secrets.token_hex(32)}")
        results = root / "results"
        ledger_dir = root / "ledger"
        results.mkdir()
        ledger_dir.mkdir()
        env = {
            "SPD_CHECKOUT": str(REPO),
            "SPD_API_URL": emulator.url,
            "SPD_RESULTS": str(results),
            "SPD_LEDGER": str(ledger_dir / "ledger.json"),
            "SPD_INTERVAL": f"{INTERVAL:g}",
            "SPD_USER": SINGLE["user"], "SPD_PROJECT": SINGLE["project"],
            "SPD_UPLOAD": SINGLE["upload"],
            "SPD_LEGS_USER": LEGS["user"], "SPD_LEGS_PROJECT": LEGS["project"],
            "SPD_LEGS_UPLOAD": LEGS["upload"],
            "SPD_UPLOAD_USER": UPLOADER["user"], "SPD_UPLOAD_PROJECT": UPLOADER["project"],
            "SPD_FILE_URL": file_url,
        }  # fmt: skip
        run = act.run(WORKFLOW, env=env, secrets=keys, mounts=[ledger_dir])
        yield Proof(run, keys, results, emulator.requests("distribute-file"),
                    ledger_dir / "ledger.json", file_url, emulator.requests("upload-file"))
    finally:
        emulator.stop()


def test_act_ran_every_job(proof: Proof) -> None:
    results = job_results(proof.run.log)
    # `single` fails by design: its last action step uses a wrong key.
    expected = {"build": "succeeded", "single": "failed", "upload": "succeeded",
                "legs-1": "succeeded", "legs-2": "succeeded", "legs-3": "succeeded"}
    assert results == expected, f"job results {results}; act's log ends:\n{proof.tail}"
    # act built the image from this checkout, once, before the other jobs started it.
    assert image_builds(proof.run.log) == ["build"], image_builds(proof.run.log)
    assert proof.run.returncode != 0


def test_no_form_of_any_key_in_acts_log(proof: Proof) -> None:
    """Raw, percent-encoded and base64 (all three alignments): what redact masks."""
    lines = proof.run.log.splitlines()
    leaks = []
    link = proof.file_url
    signature = link.rpartition("=")[2]
    for name, key in [*proof.keys.items(), ("file-url", link), ("its query", link.split("?")[1]),
                      ("its signature", signature)]:
        for form in sorted(_encoded_forms(key)):
            where = [n for n, line in enumerate(lines, 1) if form in line]
            if where:
                kind = ("raw" if form == key else "percent-encoded"
                        if form in (quote(key, safe=""), quote_plus(key))
                        else f"base64 form ({len(form)} characters)")
                leaks.append(f"{name}: {kind} on log lines {where[:10]}")
    assert not leaks, ("act's log shows secrets (a workflow command act did not parse prints "
                       "its value):\n" + "\n".join(leaks))


def test_act_parsed_every_workflow_command(proof: Proof) -> None:
    unparsed = unparsed_commands(proof.run.log)
    summary = sorted({(job, name) for _, job, name in unparsed})
    assert not unparsed, (
        f"{len(unparsed)} workflow command lines printed as text instead of run, "
        f"(job, command): {summary}; act runs only `::name::data` / `::name k=v::data`"
    )


def test_a_later_step_sees_the_outputs(proof: Proof) -> None:
    seen = proof.result("distribute")
    assert seen.get("status") == "triggered", seen
    assert seen.get("http-status") == "200", seen
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", seen.get("slot-at", "")), seen
    # The same line is in act's log, as the later step printed it.
    assert f"status={seen['status']}" in step_lines(proof.run.log, "single")
    single = [c for c in proof.calls if c["userId"] == SINGLE["user"] and c["status"] == 200]
    assert len(single) == 1, proof.calls
    dry_run = proof.result("build")
    assert dry_run == {"status": "dry-run", "attempts": "0"}, dry_run


def test_wrong_key_fails_with_exit_code_3_and_error_output(proof: Proof) -> None:
    seen = proof.result("wrong-key")
    assert seen.get("outcome") == "failure", seen
    assert seen.get("status") == "failed", seen
    assert seen.get("error") == "unauthorized", seen
    assert seen.get("http-status") == "401", seen
    codes = step_exit_codes(proof.run.log, "single")
    assert codes == [3], f"act reported exit codes {codes} for the wrong key's step"
    rejected = [c["status"] for c in proof.calls if c["api_key_ok"] is False]
    assert rejected == [401], proof.calls


def test_three_legs_one_ledger_zero_429s(proof: Proof) -> None:
    legs = [c for c in proof.calls if c["userId"] == LEGS["user"]]
    statuses = [c["status"] for c in legs]
    # When a leg left late for its slot, the legs' own lines say by how much.
    calling = [line for leg in (1, 2, 3) for line in step_lines(proof.run.log, f"legs-{leg}")
               if "after its slot" in line]
    arrivals = [(c["status"], round(float(c["time"]) - float(legs[0]["time"]), 3)) for c in legs]
    assert statuses.count(429) == 0, (
        f"the emulator answered 429 to the legs: (status, arrival s) {arrivals}; "
        f"the legs said: {calling}")
    assert statuses == [200, 200, 200], statuses
    times = [float(c["time"]) for c in legs]
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]
    assert all(gap >= INTERVAL - ARRIVAL_SLACK for gap in gaps), (
        f"calls closer than the {INTERVAL:g} s interval: gaps {gaps}")
    seen = [proof.result(f"leg-{leg}") for leg in (1, 2, 3)]
    assert [s.get("status") for s in seen] == ["triggered"] * 3, seen
    # One queue: three different slots (an interval apart, so never within one second).
    assert len({s.get("slot-at") for s in seen}) == 3, seen
    assert proof.ledger.exists(), "the legs never wrote the shared ledger file"


def test_upload_then_distribute_the_same_build_in_one_queue(proof: Proof) -> None:
    seen = proof.result("upload")
    assert (seen.get("uploaded"), seen.get("released")) == ("uploaded", "triggered"), seen
    [upload] = proof.uploads
    assert (upload["status"], upload["userId"], upload["file_url_query"]) == \
        (200, UPLOADER["user"], True)
    assert seen["upload-id"] == upload["uploadId"] == seen["released-id"]
    [release] = [c for c in proof.calls if c["userId"] == UPLOADER["user"]]
    assert (release["status"], release["uploadId"]) == (200, upload["uploadId"])
    gap = float(release["time"]) - float(upload["time"])
    assert gap >= INTERVAL - ARRIVAL_SLACK, f"upload and distribute {gap:.3f} s apart"
