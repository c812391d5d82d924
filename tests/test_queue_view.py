"""Who holds which slot, as people see it: the job summary's Mermaid chart and table, the `queue`
command (a real CLI process, a real file ledger), and how a job names itself in each CI."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from streampixel_distribute.ci import origin
from streampixel_distribute.ledger import account_key, open_ledger
from streampixel_distribute.ledger.queue import Holder, Slot
from streampixel_distribute.report.queue_view import mermaid, summary_section, table
from support import product
from support.runner import base_env

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
USER = "65de0000000000000000a001"
API = "http://127.0.0.1:9/pixelStripeApi"


def holder(n: int, command: str = "distribute", **kw: str) -> Holder:
    return Holder(f"{n:012x}", command, f"65de00000000000000000b0{n}",
                  kw.get("origin", f"acme/game{n} run 8{n} attempt 1 job ship"),
                  kw.get("url", f"https://github.com/acme/game{n}/actions/runs/8{n}/attempts/1"))


def three() -> list[Slot]:
    return [Slot(NOW - 121, NOW, holder(1, "upload")),
            Slot(NOW, NOW + 121, holder(2)),
            Slot(NOW + 121, NOW + 242, holder(3), released=True),
            Slot(NOW + 242, NOW + 363, None)]


def test_the_chart_marks_this_job_and_what_has_run() -> None:
    chart = mermaid(three(), now=NOW + 10, mine=holder(2).id)
    lines = chart.splitlines()
    assert lines[0] == "```mermaid" and lines[1] == "gantt" and lines[-1] == "```"
    tasks = [line.strip() for line in lines if re.search(r":.*s\d+, \d{4}-", line)]
    assert tasks == [
        "acme/game1 run 81 attempt 1 job ship (upload 65de…0b01) :done, s0, "
        "2027-01-15T07:57:59, 121s",
        "this job distribute 65de00000000000000000b02 :crit, s1, 2027-01-15T08:00:00, 121s",
        "given back by acme/game3 run 83 attempt 1 job ship (distribute 65de…0b03) :s2, "
        "2027-01-15T08:02:01, 121s",
        "a job of an older release (no name stored) :s3, 2027-01-15T08:04:02, 121s",
    ]


def test_the_table_links_each_holder_and_names_the_states() -> None:
    rows = table(three(), now=NOW + 10, mine=holder(2).id).splitlines()[2:]
    assert [row.rsplit("|", 2)[-2].strip() for row in rows] == [
        "ended", "**this job**", "given back", "queued"]
    assert "(https://github.com/acme/game1/actions/runs/81/attempts/1)" in rows[0]
    assert "**08:00:00Z**" in rows[1]


@pytest.mark.parametrize("origin_text", [
    "x :crit, click s0 call alert(1)",  # a task's syntax in a label
    "```\n<script>alert(1)</script>",  # leave the code block, inject HTML
    "a | b | c ](javascript:alert(1))",  # break the table or forge a link
])
def test_a_hostile_ledger_entry_stays_data(origin_text: str) -> None:
    hostile = Holder("0123456789ab", "distribute", "p", origin_text, "javascript:alert(1)")
    slots = [Slot(NOW, NOW + 121, hostile)]
    chart = mermaid(slots, now=NOW, mine="")
    [task] = [line for line in chart.splitlines() if re.search(r"\bs\d+, \d{4}-", line)]
    name = task.strip().rsplit(" :", 1)[0]
    assert re.fullmatch(r"[A-Za-z0-9 ._/()+…-]+", name), name
    assert chart.count("```") == 2
    rows = table(slots, now=NOW, mine="").splitlines()
    assert len(rows) == 3 and rows[2].count(" | ") == 3, rows
    assert not re.search(r"(?<!\\)\]\(", rows[2]), rows[2]  # no link: the URL is not http(s)
    assert "<script>" not in rows[2]


def test_no_queue_no_section() -> None:
    assert summary_section([], now=NOW, mine="") == []
    section = summary_section(three(), now=NOW + 10, mine=holder(2).id)
    assert section[1].startswith("<details><summary>The account's queue: 4 slots")
    assert "(1 still to run)" in section[1] and section[-1] == "</details>"


# --- the job's name in each CI ---------------------------------------------------------------


@pytest.mark.parametrize(("env", "text", "url"), [
    ({"GITHUB_RUN_ID": "8123", "GITHUB_RUN_ATTEMPT": "2", "GITHUB_REPOSITORY": "acme/showroom",
      "GITHUB_JOB": "ship", "GITHUB_SERVER_URL": "https://github.com"},
     "acme/showroom run 8123 attempt 2 job ship",
     "https://github.com/acme/showroom/actions/runs/8123/attempts/2"),
    ({"GITLAB_CI": "true", "CI_JOB_ID": "77", "CI_PROJECT_PATH": "acme/showroom",
      "CI_PIPELINE_ID": "501", "CI_JOB_NAME": "upload: [b001]",
      "CI_JOB_URL": "https://gitlab.example/acme/showroom/-/jobs/77"},
     "acme/showroom pipeline 501 job upload: [b001]",
     "https://gitlab.example/acme/showroom/-/jobs/77"),
    ({"JENKINS_URL": "https://ci.example/", "BUILD_URL": "https://u:p@ci.example/job/ship/4/",
      "JOB_NAME": "ship", "BUILD_NUMBER": "4"}, "ship build 4", ""),  # credentials: no link
])
def test_each_ci_names_the_job(env: dict[str, str], text: str, url: str) -> None:
    assert origin(env) == (text, url)


def test_elsewhere_the_host_and_process_name_the_job() -> None:
    found = origin({})
    assert re.fullmatch(r"\S+ pid \d+", found.text) and found.url == ""


# --- the queue command -------------------------------------------------------------------------


def run_queue(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = base_env(tmp_path)  # no API key anywhere: the command needs none
    return subprocess.run(product.command("queue", "--user-id", USER, "--api-url", API, *args),
                          env=env, capture_output=True, text=True, timeout=60, check=False)


def test_the_queue_command_shows_who_holds_which_slot(tmp_path: Path) -> None:
    spec = f"file://{tmp_path}/ledger.json"
    ledger = open_ledger(spec)
    key = account_key(API, USER)
    for n in (1, 2, 3):
        ledger.reserve(key, 121, 0, holder(n, ("upload", "distribute", "reserve")[n - 1]))
    ledger.give_back(key, holder(2).id)
    shown = run_queue(tmp_path, "--ledger", spec)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].startswith(f"Account 65de…a001 on ledger {spec}, now ")
    assert [line.split()[2] for line in lines[2:]] == ["calling", "given", "queued"]
    assert "acme/game3 run 83 attempt 1 job ship (reserve 65de…0b03)" in lines[4]
    as_json = run_queue(tmp_path, "--ledger", spec, "--json")
    data = json.loads(as_json.stdout)
    assert [s["command"] for s in data["slots"]] == ["upload", "distribute", "reserve"]
    assert [s["state"] for s in data["slots"]] == ["calling", "given back", "queued"]
    assert data["slots"][0]["url"] == "https://github.com/acme/game1/actions/runs/81/attempts/1"


def test_the_queue_command_needs_a_storing_ledger(tmp_path: Path) -> None:
    shown = run_queue(tmp_path, "--ledger", "none", "--json")
    assert shown.returncode == 2
    assert json.loads(shown.stdout) == {"error": "invalid-input", "slots": []}
    assert "`ledger`" in shown.stderr and "stores no reservations" in shown.stderr
    missing = run_queue(tmp_path, "--ledger", f"file://{tmp_path}/no/such/dir/l.json")
    assert missing.returncode == 7, missing.stderr
    assert "Traceback" not in missing.stderr
