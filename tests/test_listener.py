"""The webhook listener over real HTTP: a real subprocess, the emulator, a GitHub stand-in.

Waiting is polling with a deadline (`wait_until`); nothing asserts how fast anything was.
"""

from __future__ import annotations

import http.client
import itertools
import json
import os
import resource
import socket
import sqlite3
import stat
import subprocess
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import requests

from support import product
from support.emulator import Emulator
from support.listener import (
    API_KEY,
    GITHUB_TOKEN,
    WEBHOOK_TOKEN,
    GitHubStandIn,
    ListenerProcess,
    SlowClients,
    can_mount,
    envelope,
    fill_filesystem,
    free_port,
    in_namespace,
    listener_env,
    nginx_recipe,
    private_mount,
    start_nginx,
    wait_until,
)
from support.tools import missing, require_binary

USER_ID = "66aa0000000000000000a0a1"
PROJECTS = [f"66aa0000000000000000b0{i:02x}" for i in range(1, 5)]
UPLOADS = [f"66aa0000000000000000c0{i:02x}" for i in range(1, 9)]
SECRETS = (API_KEY, WEBHOOK_TOKEN, GITHUB_TOKEN)


def seed(emulator: Emulator, projects: int = 1, uploads_per_project: int = 2) -> None:
    """One account with distinctive key, its projects and ready uploads (upload j of project i
    is UPLOADS[i * uploads_per_project + j])."""
    emulator.add_account(USER_ID, API_KEY, [
        {"projectId": PROJECTS[i], "uploads": [
            {"uploadId": UPLOADS[i * uploads_per_project + j], "ready": True}
            for j in range(uploads_per_project)]}
        for i in range(projects)])


def distribute_env(emulator: Emulator, interval: float) -> dict[str, str]:
    return {"STREAMPIXEL_API_KEY": API_KEY, "STREAMPIXEL_USER_ID": USER_ID,
            "STREAMPIXEL_API_URL": emulator.url,
            "STREAMPIXEL_RATE_LIMIT_INTERVAL": f"{interval:g}"}


def distributed(emulator: Emulator, upload_id: str | None = None) -> list[dict[str, Any]]:
    """distribute-file calls the emulator received (answered or still in progress)."""
    return [r for r in emulator.requests("distribute-file")
            if upload_id in (None, r.get("uploadId"))]


def answered(emulator: Emulator, count: int) -> list[dict[str, Any]] | None:
    """The distribute-file calls once at least `count` were received and all answered."""
    calls = distributed(emulator)
    return calls if len(calls) >= count and all(c["status"] for c in calls) else None


def no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


# --- the whole chain -------------------------------------------------------------------------


def test_emulator_pipeline_events_reach_the_listener_which_distributes(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0.2, processing_seconds=1.0)
    seed(emulator, uploads_per_project=0)
    listener = listener_factory(env=distribute_env(emulator, 0.5))
    emulator.set_webhook(PROJECTS[0], listener.webhook_url)

    upload = requests.post(f"{emulator.url}/projects/upload-file", json={
        "apiKey": API_KEY, "userId": USER_ID, "projectId": PROJECTS[0],
        "fileUrl": "https://bucket.example/game.zip", "autoRelease": False}, timeout=10)
    assert upload.status_code == 200
    upload_id = upload.json()["uploadId"]

    calls = wait_until(lambda: answered(emulator, 1), what="distribute-file call")
    assert [c["status"] for c in calls] == [200]
    # The emulator answers a distribute with build.distributing: acknowledged, not acted on.
    hooks = wait_until(lambda: [h for h in emulator.webhooks()
                                if h["event"] == "build.distributing"] and emulator.webhooks(),
                       what="build.distributing delivery")
    assert [h["event"] for h in hooks] == [
        "build.uploaded", "build.downloading", "build.extracting", "build.saving",
        "build.approved", "build.distributing"]
    assert {h["statusCode"] for h in hooks} <= {200, 202}
    assert [h["statusCode"] for h in hooks if h["event"] == "build.approved"] == [202]

    done = listener.wait_log("distribute done", uploadId=upload_id)
    assert done["result"]["status"] == "triggered"
    assert listener.metric("deliveries_total", event="build.approved", outcome="queued") == 1
    assert listener.metric("deliveries_total", event="build.uploaded", outcome="ignored") == 1
    assert listener.metric("distributions_total", result="triggered") == 1
    assert len(distributed(emulator, upload_id)) == 1
    assert listener.stop() == 0
    no_secrets(listener.output())


def test_duplicate_deliveries_are_acted_on_once(emulator: Emulator, listener_factory: Any) -> None:
    emulator.configure(interval=0.2)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5))
    first = envelope("build.approved", PROJECTS[0], UPLOADS[0])
    replies = [listener.deliver(first) for _ in range(3)]
    assert [r.status for r in replies] == [202, 200, 200]
    assert [r.json()["status"] for r in replies] == ["queued", "duplicate", "duplicate"]

    # The same event five times at once, on five server threads.
    second = envelope("build.approved", PROJECTS[0], UPLOADS[1])
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda: statuses.append(listener.deliver(second).status))
               for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 200, 200, 200, 202]

    for upload_id in UPLOADS[:2]:
        listener.wait_log("distribute done", uploadId=upload_id)
    assert [len(distributed(emulator, u)) for u in UPLOADS[:2]] == [1, 1]
    assert len(listener.rows()) == 2
    assert listener.metric("deliveries_total", event="build.approved", outcome="duplicate") == 6


# --- durability ------------------------------------------------------------------------------


def test_kill_9_after_accepting_then_restart_processes_exactly_once(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0.2)
    seed(emulator)
    env = distribute_env(emulator, 0.5)
    body = envelope("build.approved", PROJECTS[0], UPLOADS[0])
    # --paused: the worker never starts, so the kill lands between the 2xx and any action.
    paused = listener_factory(env=env, args=["--paused"])
    assert paused.deliver(body).status == 202
    paused.kill9()
    assert [r["state"] for r in paused.rows()] == ["pending"]
    assert distributed(emulator) == []

    restarted = listener_factory(env=env, queue=paused.queue)
    restarted.wait_log("distribute done", uploadId=UPLOADS[0])
    assert [c["status"] for c in distributed(emulator)] == [200]
    # A late second delivery of the same event finds it in the durable queue.
    assert restarted.deliver(body).json()["status"] == "duplicate"
    assert [r["state"] for r in restarted.rows()] == ["done"]
    assert len(distributed(emulator)) == 1


def test_kill_9_while_waiting_for_a_slot_requeues_the_item_in_hand(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0.2)
    seed(emulator)
    env = distribute_env(emulator, 2.0)  # the second build waits ~2 s for its slot
    first = listener_factory(env=env)
    for upload_id in UPLOADS[:2]:
        assert first.deliver(envelope("build.approved", PROJECTS[0], upload_id)).status == 202
    first.wait_log("distribute done", uploadId=UPLOADS[0])
    wait_until(lambda: [r["state"] for r in first.rows()] == ["done", "working"],
               what="second item in hand")
    first.kill9()

    second = listener_factory(env=env, queue=first.queue)
    second.wait_log("were in hand when the listener last stopped")
    second.wait_log("distribute done", uploadId=UPLOADS[1])
    assert [len(distributed(emulator, u)) for u in UPLOADS[:2]] == [1, 1]
    assert all(c["status"] == 200 for c in distributed(emulator))


def test_sigterm_gives_back_the_item_in_hand_and_exits_cleanly(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0.2)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 60.0))
    for upload_id in UPLOADS[:2]:
        assert listener.deliver(envelope("build.approved", PROJECTS[0], upload_id)).status == 202
    listener.wait_log("distribute done", uploadId=UPLOADS[0])
    wait_until(lambda: [r["state"] for r in listener.rows()] == ["done", "working"],
               what="second item waiting for its slot")

    assert listener.stop() == 0
    assert [r["state"] for r in listener.rows()] == ["done", "pending"]
    listener.wait_log("goes back to the queue", uploadId=UPLOADS[1])
    listener.wait_log("stopped", unfinished_workers=[])
    assert len(distributed(emulator)) == 1


# --- the rate limit --------------------------------------------------------------------------


def test_burst_of_approvals_for_several_projects_is_spaced_without_429(
    emulator: Emulator, listener_factory: Any
) -> None:
    interval = 0.5
    emulator.configure(interval=interval)
    seed(emulator, projects=4, uploads_per_project=1)
    # A little above the server's interval: the server counts a call when it arrives, a moment
    # after its slot; the margin keeps that delay (and its jitter) from producing a 429.
    listener = listener_factory(env=distribute_env(emulator, interval + 0.2))
    bodies = [envelope("build.approved", PROJECTS[i], UPLOADS[i]) for i in range(4)]
    statuses: list[int] = []
    threads = [threading.Thread(target=lambda b=b: statuses.append(listener.deliver(b).status))
               for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [202] * 4

    calls = wait_until(lambda: answered(emulator, 4), timeout=20, what="four distribute calls")
    assert [c["status"] for c in calls] == [200] * 4
    assert {c["uploadId"] for c in calls} == set(UPLOADS[:4])
    times = sorted(c["time"] for c in calls)
    assert all(b - a >= interval for a, b in itertools.pairwise(times))
    assert listener.metric("rate_limited_total") == 0


def test_more_simultaneous_deliveries_than_waitress_default_connection_limit(
    emulator: Emulator, listener_factory: Any
) -> None:
    """waitress serves 100 connections by default; the 99th delivery would wait for a hang-up."""
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    conns = [http.client.HTTPConnection("127.0.0.1", listener.port, timeout=10)
             for _ in range(150)]  # Streampixel's own timeout
    for conn in conns:
        conn.connect()
    for i, conn in enumerate(conns):
        body = envelope("build.approved", PROJECTS[0], f"{i:024x}")
        conn.request("POST", f"/webhook/{WEBHOOK_TOKEN}", json.dumps(body).encode(),
                     {"Content-Type": "application/json"})
    statuses = []
    for conn in conns:  # every connection stays open until all are answered
        statuses.append(conn.getresponse().status)
    for conn in conns:
        conn.close()
    assert statuses == [202] * 150
    assert len(listener.rows()) == 150


# --- hostile clients --------------------------------------------------------------------------


def _enough_descriptors(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            missing(f"needs {need} open files; the hard limit is {hard} (raise `ulimit -Hn`)")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def test_a_thousand_slow_clients_do_not_keep_a_real_delivery_out(
    emulator: Emulator, listener_factory: Any
) -> None:
    """Slowloris: 1,000 connections (the default connection limit) each trickle one header byte
    a second. waitress's idle timeout never fires for them; a real delivery must still get in."""
    _enough_descriptors(1000 + 512)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    with SlowClients(listener.port, 1000, path=f"/webhook/{WEBHOOK_TOKEN}") as attack:
        assert attack.open_count() == 1000
        # A generous client timeout: the property is that it is answered at all (bench/listener.py
        # measures how fast); before the fix it waited in the backlog until the attack ended.
        conn = http.client.HTTPConnection("127.0.0.1", listener.port, timeout=30)
        try:
            conn.request("POST", f"/webhook/{WEBHOOK_TOKEN}",
                         json.dumps(envelope("build.approved", PROJECTS[0], UPLOADS[0])).encode(),
                         {"Content-Type": "application/json"})
            reply = conn.getresponse()
            status, body = reply.status, json.loads(reply.read())
        finally:
            conn.close()
        assert (status, body["status"]) == (202, "queued")
        assert listener.healthy()
        still_open = attack.open_count()
        shed = sum(listener.metric("connections_dropped_total", reason=reason)
                   for reason in ("evicted", "deadline"))
    assert still_open > 900  # the attack went on throughout (dropped connections reopened)
    assert shed >= 1  # slow clients gave their slots up (normally: one evicted for the delivery)
    assert [r["upload_id"] for r in listener.rows()] == [UPLOADS[0]]


def test_the_documented_nginx_recipe_keeps_deliveries_flowing_through_a_slowloris(
    emulator: Emulator, listener_factory: Any, tmp_path: Path
) -> None:
    """The deployment recipe puts nginx in front: the attack meets nginx first. The block from
    docs/listener.md, as written there (TLS lines aside), in a real nginx."""
    nginx = require_binary("nginx", "nginx-light")
    _enough_descriptors(1000 + 512)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    port = free_port()
    proxy = start_nginx(tmp_path / "nginx", nginx_recipe(port, listener.port), nginx=nginx)
    try:
        with SlowClients(port, 1000, path=f"/webhook/{WEBHOOK_TOKEN}",
                         source="127.0.0.2") as attack:
            assert attack.open_count() == 1000
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                body = envelope("build.approved", PROJECTS[0], UPLOADS[0])
                conn.request("POST", f"/webhook/{WEBHOOK_TOKEN}", json.dumps(body).encode(),
                             {"Content-Type": "application/json"})
                reply = conn.getresponse()
                status, answer = reply.status, json.loads(reply.read())
            finally:
                conn.close()
            still_open = attack.open_count()
    finally:
        proxy.terminate()
        proxy.wait(20)
    assert (status, answer["status"]) == (202, "queued")
    assert still_open > 900  # the attack went on throughout
    assert [r["upload_id"] for r in listener.rows()] == [UPLOADS[0]]


def test_a_request_that_trickles_in_is_dropped_at_its_deadline(
    emulator: Emulator, listener_factory: Any
) -> None:
    """A request must arrive whole within --request-timeout (default 5 s), however active the
    client is; waitress alone only closes connections that send nothing for 30 s."""
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    good = json.dumps(envelope("build.approved", PROJECTS[0], UPLOADS[0])).encode()
    head = (f"POST /webhook/{WEBHOOK_TOKEN} HTTP/1.1\r\nHost: x\r\nContent-Type: "
            f"application/json\r\nContent-Length: {len(good)}\r\n\r\n").encode()
    slow_header = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    slow_body = socket.create_connection(("127.0.0.1", listener.port), timeout=5)
    slow_header.sendall(head[:20])
    slow_body.sendall(head)
    sent = {"header": 20, "body": 0}
    closed: dict[str, bool] = {}

    def trickle() -> bool:
        """Send the next byte on each connection; True once the server has closed both."""
        for name, sock, data in (("header", slow_header, head), ("body", slow_body, good)):
            if name in closed:
                continue
            try:
                sock.sendall(data[sent[name]:sent[name] + 1])
                sent[name] += 1
            except OSError:
                closed[name] = True
        time.sleep(1.0)  # the client's pace, not an assertion about the server's
        return len(closed) == 2

    wait_until(trickle, timeout=40, what="the server to close both trickling connections")
    slow_header.close()
    slow_body.close()
    assert sent["header"] < len(head) and sent["body"] < len(good)  # neither ever finished
    assert listener.metric("connections_dropped_total", reason="deadline") == 2
    assert listener.rows() == []
    assert listener.deliver(json.loads(good)).status == 202


# --- failures of the action ---------------------------------------------------------------------


def test_transient_failure_is_retried_later_and_a_refusal_fails_with_its_fix(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0)
    seed(emulator)
    emulator.fault(path="distribute-file", status=503, times=1)
    env = distribute_env(emulator, 0.5) | {"STREAMPIXEL_RETRIES": "0"}
    listener = listener_factory(env=env)
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    retry = listener.wait_log("failed for now; retrying in 60 s", uploadId=UPLOADS[0])
    assert retry["result"]["http_status"] == 503
    row = listener.rows()[0]
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert row["not_before"] >= row["updated_at"] + 60

    unknown = "66aa0000000000000000cfff"  # not an upload of this project: 404, no retry helps
    assert listener.deliver(envelope("build.approved", PROJECTS[0], unknown)).status == 202
    failed = listener.wait_log("distribute failed", uploadId=unknown)
    assert failed["result"]["error"] == "not-found"
    assert "upload-id" in failed["result"]["hint"]
    assert [r["state"] for r in listener.rows()] == ["pending", "failed"]
    assert listener.metric("distributions_total", result="failed") == 1
    no_secrets(listener.output())


# --- refusals --------------------------------------------------------------------------------


def test_wrong_token_gets_the_same_404_as_an_unknown_path_and_queues_nothing(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5))
    body = envelope("build.approved", PROJECTS[0], UPLOADS[0])
    unknown = listener.request("POST", "/somewhere", json.dumps(body).encode())
    wrong = listener.deliver(body, token="whk-wrong-guess-0000000000")
    prefix = listener.deliver(body, token=WEBHOOK_TOKEN[:-1])
    empty = listener.request("POST", "/webhook/", json.dumps(body).encode())
    for reply in (wrong, prefix, empty):
        assert (reply.status, reply.body) == (unknown.status, unknown.body) == (404, unknown.body)
        assert reply.headers["content-type"] == unknown.headers["content-type"]
    assert listener.rows() == []
    assert listener.metric("queue_depth", state="pending") == 0
    # The right token with the wrong method is told so; that reveals nothing to its holder.
    assert listener.request("GET", f"/webhook/{WEBHOOK_TOKEN}").status == 405
    assert listener.stop() == 0
    assert distributed(emulator) == []
    output = listener.output()
    no_secrets(output)
    assert "whk-wrong-guess" not in output


def test_malformed_invalid_and_oversized_bodies_are_refused_and_nothing_breaks(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5))
    good = envelope("build.approved", PROJECTS[0], UPLOADS[0])
    cases: list[tuple[bytes, int]] = [
        (b"{not json", 400),
        (b"", 400),
        (b"\xff\xfe{}", 400),
        (b"[" * 100_000 + b"]" * 100_000, 413),
        (b"[" * 30_000 + b"]" * 30_000, 400),  # deeper than the JSON parser goes
        (json.dumps([good]).encode(), 422),
        (json.dumps({k: v for k, v in good.items() if k != "projectId"}).encode(), 422),
        (json.dumps(good | {"projectId": 12345}).encode(), 422),
        (json.dumps(good | {"uploadId": "../../etc/passwd"}).encode(), 422),
        (json.dumps(good | {"objection": "x" * 70_000}).encode(), 413),
        (json.dumps(good | {"event": "Build Approved!"}).encode(), 422),
    ]
    for raw, expected in cases:
        reply = listener.deliver(None, raw=raw)
        assert reply.status == expected, (raw[:40], reply.body)
    # A lying Content-Length larger than the cap is refused before the body is read.
    conn_reply = listener.request("POST", f"/webhook/{WEBHOOK_TOKEN}", b"{}",
                                  {"Content-Length": "2", "Content-Type": "application/json"})
    assert conn_reply.status == 422
    assert listener.healthy()
    assert listener.rows() == []
    assert listener.process.poll() is None
    assert listener.deliver(good).status == 202  # still serving
    problems = listener.wait_log("delivery invalid")["problems"]
    assert problems and all("passwd" not in p for p in problems)


def test_object_ids_differing_only_in_case_are_one_delivery(
    emulator: Emulator, listener_factory: Any
) -> None:
    """24-hex ids are MongoDB ObjectIds: `…C0` and `…c0` are one upload, queued once."""
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    first = listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0]))
    shouted = listener.deliver(envelope("build.approved", PROJECTS[0].upper(),
                                        UPLOADS[0].upper()))
    mixed = listener.deliver(envelope("build.approved", PROJECTS[0],
                                      UPLOADS[0][:4].upper() + UPLOADS[0][4:]))
    assert (first.status, first.json()["status"]) == (202, "queued")
    assert [(r.status, r.json()["status"]) for r in (shouted, mixed)] == [(200, "duplicate")] * 2
    # The other way round, on a second upload: upper case first.
    upper = listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[1].upper()))
    lower = listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[1]))
    assert [upper.status, lower.status] == [202, 200]
    rows = listener.rows()
    assert [(r["project_id"], r["upload_id"]) for r in rows] == [
        (PROJECTS[0], UPLOADS[0]), (PROJECTS[0], UPLOADS[1])]
    # The body is kept as delivered (a dispatch passes it on unchanged).
    assert json.loads(rows[1]["body"])["uploadId"] == UPLOADS[1].upper()
    assert listener.stop() == 0

    # The allow-list and per-project rules compare ids the same way.
    allowing = listener_factory(env=distribute_env(emulator, 0.5),
                                args=["--paused", "--allow-projects", PROJECTS[1].upper()])
    assert allowing.deliver(envelope("build.approved", PROJECTS[1], UPLOADS[2])).status == 202


def test_allow_list_refuses_other_projects(emulator: Emulator, listener_factory: Any) -> None:
    seed(emulator, projects=2)
    listener = listener_factory(env=distribute_env(emulator, 0.5),
                                args=["--allow-projects", PROJECTS[0]])
    assert listener.deliver(envelope("build.approved", PROJECTS[1], UPLOADS[2])).status == 403
    assert listener.rows() == []
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202


def test_unconfigured_events_test_event_and_rejections_are_acknowledged_and_logged(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    test = listener.deliver(envelope("webhook.test", PROJECTS[0], None))
    assert (test.status, test.json()["status"]) == (200, "acknowledged")
    distributing = listener.deliver(envelope("build.distributing", PROJECTS[0], UPLOADS[0]))
    assert (distributing.status, distributing.json()["status"]) == (200, "ignored")
    objection = "No packaged Windows executable\nfound {\"level\": \"forged\"}"
    rejected = listener.deliver(envelope("build.rejected", PROJECTS[0], UPLOADS[1],
                                         objection=objection))
    assert (rejected.status, rejected.json()["status"]) == (200, "ignored")
    record = listener.wait_log("Streampixel rejected a build", uploadId=UPLOADS[1])
    assert record["level"] == "warning"
    assert record["objection"] == 'No packaged Windows executable found {"level": "forged"}'
    listener.wait_log("delivery acknowledged", event="webhook.test")
    assert listener.rows() == []
    assert all(r.get("level") != "forged" for r in listener.logs())  # no forged log line


# --- dispatch --------------------------------------------------------------------------------


def dispatch_actions(*projects: str, on: list[str] | None = None) -> dict[str, Any]:
    return {"projects": {p: {"on": on or ["build.approved"], "action": "dispatch",
                             "repository": "acme/game", "event_type": "streampixel-build"}
                         for p in projects}}


def test_dispatch_sends_the_webhook_body_to_github_with_the_token_never_logged(
    github_standin: GitHubStandIn, listener_factory: Any
) -> None:
    listener = listener_factory(
        actions=dispatch_actions(PROJECTS[0], on=["build.approved", "build.rejected"]),
        env={"STREAMPIXEL_GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": github_standin.url})
    approved = envelope("build.approved", PROJECTS[0], UPLOADS[0])
    rejected = envelope("build.rejected", PROJECTS[0], UPLOADS[1], objection="bad zip")
    assert listener.deliver(approved).status == 202
    assert listener.deliver(rejected).status == 202
    requests_seen = wait_until(lambda: len(github_standin.received()) >= 2 and
                               github_standin.received(), what="two dispatches")
    assert [r["path"] for r in requests_seen] == ["/repos/acme/game/dispatches"] * 2
    assert all(r["auth_ok"] for r in requests_seen)
    # The session sends the tool's own User-Agent (GitHub rejects requests without one).
    assert all(r["headers"].get("User-Agent", "").startswith("streampixel-distribute/")
               for r in requests_seen)
    assert [r["body"] for r in requests_seen] == [
        {"event_type": "streampixel-build", "client_payload": approved},
        {"event_type": "streampixel-build", "client_payload": rejected}]
    assert requests_seen[0]["headers"]["Accept"] == "application/vnd.github+json"
    listener.wait_log("dispatch done", uploadId=UPLOADS[1])
    assert listener.metric("actions_total", action="dispatch", result="dispatched") == 2
    assert listener.stop() == 0
    no_secrets(listener.output())


@pytest.mark.parametrize(("status", "hint"), [
    (401, "STREAMPIXEL_GITHUB_TOKEN"),
    (403, "Contents: read and write"),
    (404, "cannot see it"),
    (422, "event_type"),
])
def test_dispatch_refusals_are_explained_without_the_token(
    github_standin: GitHubStandIn, listener_factory: Any, status: int, hint: str
) -> None:
    github_standin.status = status
    listener = listener_factory(
        actions=dispatch_actions(PROJECTS[0]),
        env={"STREAMPIXEL_GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": github_standin.url})
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    record = listener.wait_log("dispatch failed", uploadId=UPLOADS[0])
    assert record["result"]["http_status"] == status
    assert hint in record["result"]["hint"]
    assert [r["state"] for r in listener.rows()] == ["failed"]
    assert len(github_standin.received()) == 1  # refusals are not retried
    no_secrets(listener.output())


def test_the_envelope_schema_is_a_valid_schema_and_accepts_every_documented_event() -> None:
    import jsonschema

    from streampixel_distribute.listener.config import KNOWN_EVENTS
    from streampixel_distribute.listener.server import envelope_problems

    # The schema as installed: the package data the listener itself loads.
    schema = json.loads(resources.files("streampixel_distribute").joinpath(
        "schema", "webhook.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    for event in KNOWN_EVENTS:
        upload = None if event == "webhook.test" else UPLOADS[0]
        assert envelope_problems(envelope(event, PROJECTS[0], upload)) == []
    # Only the two fields the listener cannot work without are required.
    assert envelope_problems({"event": "build.uploaded", "projectId": PROJECTS[0]}) == []
    assert envelope_problems({"event": "build.approved"}) == ["missing projectId"]


# --- configuration ---------------------------------------------------------------------------


def run_listen(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        product.command("listen", "--port", "0", "--queue", str(tmp_path / "q.sqlite3"), *args),
        env=listener_env(env), capture_output=True, text=True, timeout=30, cwd=tmp_path,
        check=False)


@pytest.mark.parametrize(("env", "args", "expected"), [
    ({"STREAMPIXEL_WEBHOOK_TOKEN": ""}, [], "webhook-token"),
    ({"STREAMPIXEL_WEBHOOK_TOKEN": "short"}, [], "16 to 256"),
    ({}, ["--actions", "{\"default\": {\"action\": \"explode\"}}"], "actions.default.action"),
    ({}, ["--actions", "{oops"], "not valid JSON"),
    ({}, ["--actions", json.dumps(dispatch_actions(PROJECTS[0]))], "github-token"),
    ({"STREAMPIXEL_USER_ID": USER_ID}, [], "api-key"),
])
def test_bad_configuration_exits_2_with_every_problem(
    tmp_path: Path, env: dict[str, str], args: list[str], expected: str
) -> None:
    result = run_listen(tmp_path, env, *args)
    assert result.returncode == 2, result.stderr
    records = [json.loads(line) for line in result.stderr.splitlines()]
    assert records[-1]["level"] == "error"
    assert expected in json.dumps(records[-1])
    no_secrets(result.stderr, result.stdout)


def test_a_busy_port_or_a_queue_in_use_is_a_clear_startup_error(
    tmp_path: Path, listener_factory: Any
) -> None:
    running: ListenerProcess = listener_factory(args=["--paused"],
                                                env={"STREAMPIXEL_API_KEY": API_KEY,
                                                     "STREAMPIXEL_USER_ID": USER_ID})
    env = {"STREAMPIXEL_API_KEY": API_KEY, "STREAMPIXEL_USER_ID": USER_ID}
    busy = run_listen(tmp_path, env, "--port", str(running.port))
    assert busy.returncode == 2
    assert "Pick another --port" in busy.stderr
    shared = run_listen(tmp_path, env, "--queue", str(running.queue))
    assert shared.returncode == 2
    assert "another listener is using the queue" in shared.stderr
    assert running.healthy()
    no_secrets(busy.stderr, shared.stderr)


# --- test-webhook ----------------------------------------------------------------------------


def run_test_webhook(emulator: Emulator, project: str) -> subprocess.CompletedProcess[str]:
    env = listener_env({"STREAMPIXEL_API_KEY": API_KEY, "STREAMPIXEL_USER_ID": USER_ID,
                        "STREAMPIXEL_API_URL": emulator.url})
    return subprocess.run(
        product.command("test-webhook", "--project-id", project, "--json"),
        env=env, capture_output=True, text=True, timeout=60, check=False)


def test_test_webhook_reaches_the_listener_through_the_emulator(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator, projects=1)
    listener: ListenerProcess = listener_factory(env=distribute_env(emulator, 0.5))
    emulator.set_webhook(PROJECTS[0], listener.webhook_url)
    result = run_test_webhook(emulator, PROJECTS[0])
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["success"], out["statusCode"], out["error"]) == (True, 200, "")
    listener.wait_log("delivery acknowledged", event="webhook.test", projectId=PROJECTS[0])
    no_secrets(result.stdout, result.stderr)


def test_test_webhook_reports_a_receiver_that_refuses(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator, projects=1)
    listener = listener_factory(env=distribute_env(emulator, 0.5))
    emulator.set_webhook(PROJECTS[0], f"{listener.root}/webhook/not-the-right-token-123")
    result = run_test_webhook(emulator, PROJECTS[0])
    assert result.returncode == 8
    out = json.loads(result.stdout)
    assert (out["success"], out["statusCode"], out["error"]) == (False, 404, "webhook-failed")
    assert "token in the URL does not match" in result.stderr
    no_secrets(result.stdout, result.stderr)


def test_test_webhook_without_a_webhook_url_says_where_to_set_it(emulator: Emulator) -> None:
    seed(emulator, projects=1)
    result = run_test_webhook(emulator, PROJECTS[0])
    assert result.returncode == 4
    assert json.loads(result.stdout)["error"] == "not-found"
    assert "Project Settings" in result.stderr
    no_secrets(result.stdout, result.stderr)


# --- the queue: bounded, pruned, private, honest about failures --------------------------------


def test_a_full_queue_answers_503_and_healthz_says_so_until_it_drains(
    emulator: Emulator, listener_factory: Any
) -> None:
    emulator.configure(interval=0)
    seed(emulator, projects=2, uploads_per_project=2)
    env = distribute_env(emulator, 0.2) | {"STREAMPIXEL_LISTEN_MAX_PENDING": "3"}
    paused = listener_factory(env=env, args=["--paused"])
    bodies = [envelope("build.approved", PROJECTS[i // 2], UPLOADS[i]) for i in range(4)]
    ids = []
    for body in bodies[:3]:
        assert paused.healthy()  # its probe insert leaves no gap in the ids deliveries get
        reply = paused.deliver(body)
        assert reply.status == 202
        ids.append(reply.json()["id"])
    assert ids == [1, 2, 3]
    refused = paused.deliver(bodies[3])
    assert (refused.status, refused.json()) == (503, {"message": "Queue full"})
    assert paused.deliver(bodies[0]).json()["status"] == "duplicate"  # known ones still are
    health = paused.request("GET", "/healthz")
    assert (health.status, health.json()["queue"]) == (503, "full")
    assert paused.metric("deliveries_total", event="build.approved", outcome="queue_full") == 1
    assert paused.metric("queue_capacity") == 3
    assert len(paused.rows()) == 3
    assert paused.stop() == 0

    working = listener_factory(env=env, queue=paused.queue)
    wait_until(lambda: [r["state"] for r in working.rows()] == ["done"] * 3, timeout=30,
               what="the backlog to be worked off")
    assert working.healthy()
    assert working.deliver(bodies[3]).status == 202


def test_done_deliveries_are_deleted_after_the_retention_period(
    emulator: Emulator, listener_factory: Any
) -> None:
    seed(emulator, projects=1, uploads_per_project=3)
    env = distribute_env(emulator, 0.5)
    first = listener_factory(env=env, args=["--paused"])
    for upload_id in UPLOADS[:3]:
        assert first.deliver(envelope("build.approved", PROJECTS[0], upload_id)).status == 202
    assert first.stop() == 0
    now = time.time()
    db = sqlite3.connect(first.queue)
    with db:  # what the worker would have written, 40 days ago, yesterday, 40 days ago
        for upload_id, state, age_days in ((UPLOADS[0], "done", 40), (UPLOADS[1], "done", 1),
                                           (UPLOADS[2], "failed", 40)):
            db.execute("UPDATE deliveries SET state = ?, updated_at = ? WHERE upload_id = ?",
                       (state, now - age_days * 86400, upload_id))
    db.close()

    second = listener_factory(env=env, args=["--paused"], queue=first.queue)
    second.wait_log("deleted 1 done delivery(ies) older than 30 days")
    assert [(r["upload_id"], r["state"]) for r in second.rows()] == [
        (UPLOADS[1], "done"), (UPLOADS[2], "failed")]  # recent ones, and failures, stay


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_queue_files_are_private_and_a_new_directory_is_0700(
    emulator: Emulator, listener_factory: Any, tmp_path: Path
) -> None:
    seed(emulator)
    old_umask = os.umask(0o022)  # the usual one: files 0644, directories 0755
    try:
        queue = tmp_path / "state" / "listener" / "queue.sqlite3"
        listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"],
                                    queue=queue)
        assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
        assert "bucket.example" in listener.rows()[0]["body"]  # the fileUrl is in there
        files = [queue, Path(f"{queue}-wal"), Path(f"{queue}-shm"), Path(f"{queue}.lock")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
        assert (_mode(queue.parent), _mode(queue.parent.parent)) == (0o700, 0o700)
        assert listener.stop() == 0

        # A queue left world-readable by an older version is tightened at the next start.
        for f in files[:3]:
            if f.exists():
                f.chmod(0o644)
        again = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"],
                                 queue=queue)
        assert again.healthy()
        assert {f.name: _mode(f) for f in files if f.exists()} == {
            f.name: 0o600 for f in files if f.exists()}
    finally:
        os.umask(old_umask)


REFUSE_INSERTS = ("CREATE TRIGGER test_refuse BEFORE INSERT ON deliveries "
                  "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")
REFUSE_DONE = ("CREATE TRIGGER test_refuse BEFORE UPDATE OF state ON deliveries "
               "WHEN NEW.state = 'done' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")


def _schema(queue: Path, statement: str) -> None:
    """Change the live queue's schema from outside, as another SQLite client can."""
    db = sqlite3.connect(queue, timeout=10)
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


def test_a_delivery_the_queue_cannot_commit_gets_503_and_healthz_agrees(
    emulator: Emulator, listener_factory: Any
) -> None:
    """Deterministic: the database itself refuses every insert (a trigger), as a broken or full
    queue would; the listener must not answer 2xx for what it did not store."""
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"])
    assert listener.healthy()
    _schema(listener.queue, REFUSE_INSERTS)
    refused = listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0]))
    assert (refused.status, refused.json()) == (503, {"message": "Queue unavailable"})
    wait_until(lambda: listener.request("GET", "/healthz").status == 503, what="healthz 503")
    assert listener.request("GET", "/healthz").json() == {"ok": False, "queue": "unwritable"}
    assert listener.metric("up") == 0
    assert listener.rows() == []

    _schema(listener.queue, "DROP TRIGGER test_refuse")
    wait_until(listener.healthy, what="healthz 200 again")
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    listener.wait_log("the queue takes deliveries again")


def test_an_outcome_that_cannot_be_recorded_is_retried_and_the_build_distributed_once(
    emulator: Emulator, listener_factory: Any
) -> None:
    """The distribute happened; if its result were lost the item would stay `working` and be
    distributed again at the next start. The worker keeps trying to record it instead."""
    emulator.configure(interval=0)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.2))
    _schema(listener.queue, REFUSE_DONE)
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    listener.wait_log("could not record the result (done); retrying", uploadId=UPLOADS[0])
    assert [r["state"] for r in listener.rows()] == ["working"]
    assert len(distributed(emulator)) == 1

    _schema(listener.queue, "DROP TRIGGER test_refuse")
    listener.wait_log("distribute done", uploadId=UPLOADS[0])
    assert [r["state"] for r in listener.rows()] == ["done"]
    # The worker is alive and takes the next item.
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[1])).status == 202
    listener.wait_log("distribute done", uploadId=UPLOADS[1])
    assert [len(distributed(emulator, u)) for u in UPLOADS[:2]] == [1, 1]
    assert listener.stop() == 0
    assert "Traceback" not in listener.output()



REFUSE_CLAIM = ("CREATE TRIGGER test_refuse BEFORE UPDATE OF state ON deliveries "
                "WHEN NEW.state = 'working' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END")


def test_a_queue_the_worker_cannot_read_is_logged_and_waited_out(
    emulator: Emulator, listener_factory: Any
) -> None:
    """Taking an item fails (a locked or broken database, here a trigger): the worker logs why,
    stays alive, and acts on the item once the queue works again, once."""
    emulator.configure(interval=0)
    seed(emulator)
    listener = listener_factory(env=distribute_env(emulator, 0.2))
    _schema(listener.queue, REFUSE_CLAIM)
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    record = listener.wait_log("could not read the queue")
    assert (record["level"], record["error"]) == ("error", "refused by the test")
    assert [r["state"] for r in listener.rows()] == ["pending"]
    assert distributed(emulator) == []

    _schema(listener.queue, "DROP TRIGGER test_refuse")
    listener.wait_log("distribute done", uploadId=UPLOADS[0])  # at the worker's next poll
    assert [r["state"] for r in listener.rows()] == ["done"]
    assert len(distributed(emulator, UPLOADS[0])) == 1
    assert listener.stop() == 0
    assert "Traceback" not in listener.output()


def test_an_action_that_raises_fails_its_item_only_with_the_traceback_logged(
    github_standin: GitHubStandIn, listener_factory: Any
) -> None:
    """A row this listener cannot act on (written by another tool: its body is a JSON array,
    not the webhook object) makes the action raise. That item fails with `internal-error` and
    its traceback in the log; the worker goes on with the next delivery."""
    listener = listener_factory(
        actions=dispatch_actions(PROJECTS[0]),
        env={"STREAMPIXEL_GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_API_URL": github_standin.url})
    assert listener.healthy()
    db = sqlite3.connect(listener.queue, timeout=10)
    try:
        db.execute("INSERT INTO deliveries (upload_id, event, project_id, action, rule, body, "
                   "received_at, updated_at) VALUES (?, 'build.approved', ?, 'dispatch', ?, "
                   "'[1, 2]', 0, 0)", (UPLOADS[0], PROJECTS[0], json.dumps(
                       {"repository": "acme/game", "event_type": "streampixel-build"})))
        db.commit()
    finally:
        db.close()
    good = envelope("build.approved", PROJECTS[0], UPLOADS[1])
    assert listener.deliver(good).status == 202  # also wakes the worker

    bug = listener.wait_log("internal error while acting on a delivery", uploadId=UPLOADS[0])
    assert bug["level"] == "error"
    assert bug["traceback"].startswith("Traceback (most recent call last):")
    assert "dict(item.body)" in bug["traceback"]
    failed = listener.wait_log("dispatch failed", uploadId=UPLOADS[0])
    assert failed["result"]["error"] == "internal-error"
    assert failed["result"]["detail"].startswith("TypeError: ")
    listener.wait_log("dispatch done", uploadId=UPLOADS[1])
    assert [(r["upload_id"], r["state"]) for r in listener.rows()] == [
        (UPLOADS[0], "failed"), (UPLOADS[1], "done")]
    assert [r["body"]["client_payload"] for r in github_standin.received()] == [good]
    assert listener.metric("actions_total", action="dispatch", result="failed") == 1
    assert listener.stop() == 0
    no_secrets(listener.output())

def _need_mount() -> None:
    if not can_mount():
        missing("a private mount namespace (a tiny or read-only tmpfs) needs root and `unshare`")


def test_disk_full_gives_503_and_an_unhealthy_healthz_and_both_recover(
    emulator: Emulator, listener_factory: Any, tmp_path: Path
) -> None:
    _need_mount()
    seed(emulator, projects=1, uploads_per_project=3)
    data = tmp_path / "data"
    data.mkdir()
    listener = listener_factory(env=distribute_env(emulator, 0.5), args=["--paused"],
                                queue=data / "queue.sqlite3",
                                prefix=private_mount(data, "size=1m"))
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[0])).status == 202
    assert listener.healthy()

    filler = in_namespace(listener.process, data / "filler")
    assert fill_filesystem(filler) > 0
    refused = listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[1]))
    assert refused.status == 503
    wait_until(lambda: listener.request("GET", "/healthz").status == 503, what="healthz 503")
    listener.wait_log("the queue cannot take a delivery")

    filler.unlink()
    wait_until(listener.healthy, what="healthz 200 once there is space again")
    assert listener.deliver(envelope("build.approved", PROJECTS[0], UPLOADS[1])).status == 202
    assert listener.metric("queue_depth", state="pending") == 2  # the refused one was not stored
    assert listener.stop() == 0


@pytest.mark.parametrize("existing", [False, True], ids=["empty", "existing-queue"])
def test_a_read_only_queue_directory_is_a_clear_startup_error(
    tmp_path: Path, existing: bool
) -> None:
    _need_mount()
    data = tmp_path / "data"
    data.mkdir()
    setup = ""
    if existing:
        # A queue made while writable, then the filesystem remounted read-only.
        made = tmp_path / "made"
        made.mkdir()
        db = sqlite3.connect(made / "queue.sqlite3")
        db.execute("CREATE TABLE t (x)")
        db.close()
        setup = f'cp {made}/queue.sqlite3 "$0"/ && mount -o remount,ro "$0"'
    options = "size=1m" if existing else "ro,size=1m"
    result = subprocess.run(
        [*private_mount(data, options, setup=setup),
         *product.command("listen", "--port", "0", "--queue", str(data / "queue.sqlite3"))],
        env=listener_env({"STREAMPIXEL_API_KEY": API_KEY, "STREAMPIXEL_USER_ID": USER_ID}),
        capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = json.loads(result.stderr.splitlines()[-1])
    assert last["level"] == "error"
    assert "cannot open the queue database" in last["msg"]
    assert "Read-only file system" in last["msg"] or "readonly" in last["msg"]
    assert "writable" in last["hint"]
    no_secrets(result.stderr)
