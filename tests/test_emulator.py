"""The emulator over real HTTP, in another process: documented statuses and messages, the rate
limit, faults, recording, webhooks, and the process lifecycle."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from streampixel_distribute import emulator as emu_mod
from streampixel_distribute.emulator import DEMO, rate_limit_message
from support.emulator import Emulator, WebhookReceiver
from support.tools import missing, require_binary

HEX24 = re.compile(r"^[0-9a-f]{24}$")
SECRET_KEY = "sk-emulator-test-9f8e7d6c5b4a"  # distinctive, so a leak is easy to find
USER = "70000000000000000000a001"
PROJECT = "70000000000000000000b001"
UPLOAD = "70000000000000000000c001"


def post(
    emu: Emulator, endpoint: str, body: Any, *, timeout: float = 10, **kw: Any
) -> requests.Response:
    return requests.post(f"{emu.url}/projects/{endpoint}", json=body, timeout=timeout, **kw)


def distribute_body(**overrides: str) -> dict[str, str]:
    body = {
        "apiKey": DEMO.api_key,
        "userId": DEMO.user_id,
        "projectId": DEMO.project_id,
        "uploadId": DEMO.upload_id,
    }
    body.update(overrides)
    return body


def upload_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiKey": DEMO.api_key,
        "userId": DEMO.user_id,
        "projectId": DEMO.project_id,
        "fileUrl": "https://bucket.example/builds/Game.zip?X-Amz-Signature=abc",
    }
    body.update(overrides)
    return body


# --- distribute-file -------------------------------------------------------------------------


def test_demo_distribute_succeeds(emulator: Emulator) -> None:
    resp = post(emulator, "distribute-file", distribute_body())
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json() == {
        "message": "Distribution triggered",
        "success": True,
        "uploadId": DEMO.upload_id,
        "region": DEMO.region,
    }
    assert "Retry-After" not in resp.headers
    live = emulator.state()["accounts"][0]["projects"][0]
    assert live["liveUploadId"] == DEMO.upload_id


@pytest.mark.parametrize(
    ("overrides", "drop", "status", "text"),
    [
        ({}, "apiKey", 400, "Missing required field: apiKey"),
        ({}, "userId", 400, "Missing required field: userId"),
        ({}, "projectId", 400, "Missing required field: projectId"),
        ({}, "uploadId", 400, "Missing required field: uploadId"),
        ({"uploadId": ""}, None, 400, "Missing required field: uploadId"),
        ({"userId": "ffffffffffffffffffffffff"}, None, 401, "Invalid User"),
        ({"userId": DEMO.user_id + " "}, None, 401, "Invalid User"),
        ({"apiKey": "wrong-key"}, None, 401, "Unauthorized: Invalid API Key"),
        ({"projectId": DEMO.foreign_project_id}, None, 403, "Access denied"),
        ({"projectId": DEMO.disabled_project_id}, None, 403, "Access denied"),
        ({"projectId": "ffffffffffffffffffffffff"}, None, 404, "Project not found"),
        ({"uploadId": DEMO.foreign_upload_id}, None, 404, "File not found in project"),
        ({"uploadId": "ffffffffffffffffffffffff"}, None, 404, "File not found in project"),
        ({"uploadId": DEMO.processing_upload_id}, None, 400, "File has no URL yet"),
        ({"uploadId": DEMO.rejected_upload_id}, None, 400, "File has no URL yet"),
    ],
)
def test_distribute_errors(
    emulator: Emulator, overrides: dict[str, str], drop: str | None, status: int, text: str
) -> None:
    body = distribute_body(**overrides)
    if drop:
        del body[drop]
    resp = post(emulator, "distribute-file", body)
    assert (resp.status_code, resp.json()) == (status, {"message": text})


def test_non_json_content_type_is_415(emulator: Emulator) -> None:
    resp = requests.post(
        f"{emulator.url}/projects/distribute-file",
        data=json.dumps(distribute_body()),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert resp.status_code == 415
    assert "application/json" in resp.json()["message"]


def test_invalid_json_and_unknown_paths(emulator: Emulator) -> None:
    bad = requests.post(
        f"{emulator.url}/projects/distribute-file",
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert (bad.status_code, bad.json()) == (400, {"message": "Invalid JSON body"})
    unknown = requests.post(f"{emulator.url}/projects/nope", json={}, timeout=10)
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not found"})
    wrong_method = requests.get(f"{emulator.url}/projects/distribute-file", timeout=10)
    assert wrong_method.status_code == 404


def test_any_path_prefix_is_served(emulator: Emulator) -> None:
    resp = requests.post(
        f"{emulator.root}/some/proxy/prefix/projects/distribute-file",
        json=distribute_body(),
        timeout=10,
    )
    assert resp.status_code == 200


# --- rate limit ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "text"),
    [
        (119.9, "Try again in 2 minutes."),
        (61, "Try again in 2 minutes."),
        (60, "Try again in 1 minute."),
        (59.2, "Try again in 60 seconds."),
        (7, "Try again in 7 seconds."),
        (0.01, "Try again in 1 second."),
    ],
)
def test_rate_limit_message_renders_real_remaining_time(remaining: float, text: str) -> None:
    assert rate_limit_message(remaining) == f"Rate limit exceeded. {text}"


def test_rate_limit_window_with_the_emulator_clock(emulator: Emulator) -> None:
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200
    limited = post(emulator, "distribute-file", distribute_body())
    assert limited.status_code == 429
    assert limited.json() == {"message": "Rate limit exceeded. Try again in 2 minutes."}
    assert "Retry-After" not in limited.headers
    emulator.advance(70)  # 50 s left: the message switches to seconds
    again = post(emulator, "distribute-file", distribute_body())
    assert again.status_code == 429
    match = re.fullmatch(
        r"Rate limit exceeded\. Try again in (\d+) seconds\.", again.json()["message"]
    )
    assert match and 1 <= int(match.group(1)) <= 50
    emulator.advance(51)  # the 429s above did not extend the window
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200


def test_rate_limit_is_per_user_and_shared_by_writes(emulator: Emulator) -> None:
    assert post(emulator, "upload-file", upload_body()).status_code == 200
    assert post(emulator, "distribute-file", distribute_body()).status_code == 429
    other = distribute_body(
        apiKey=DEMO.other_api_key,
        userId=DEMO.other_user_id,
        projectId=DEMO.foreign_project_id,
        uploadId=DEMO.foreign_upload_id,
    )
    assert post(emulator, "distribute-file", other).status_code == 200


def test_rate_limit_counts_authenticated_calls_only(emulator: Emulator) -> None:
    # Rejected credentials do not use the window ...
    assert post(emulator, "distribute-file", distribute_body(apiKey="bad")).status_code == 401
    # ... but an authenticated call does, even when it then fails (404).
    missing = distribute_body(uploadId="ffffffffffffffffffffffff")
    assert post(emulator, "distribute-file", missing).status_code == 404
    assert post(emulator, "distribute-file", distribute_body()).status_code == 429
    # test-webhook is not rate-limited
    test_body = {"apiKey": DEMO.api_key, "userId": DEMO.user_id, "projectId": DEMO.project_id}
    assert post(emulator, "test-webhook", test_body).status_code == 404


def test_retry_after_header_can_be_switched_on(emulator: Emulator) -> None:
    emulator.configure(retry_after_header=True)
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200
    limited = post(emulator, "distribute-file", distribute_body())
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 120


def test_short_interval_in_real_time(emulator_factory: Callable[..., Emulator]) -> None:
    emu = emulator_factory(interval=0.5, retry_after_header=True)
    assert post(emu, "distribute-file", distribute_body()).status_code == 200
    limited = post(emu, "distribute-file", distribute_body())
    assert limited.status_code == 429
    assert limited.json() == {"message": "Rate limit exceeded. Try again in 1 second."}
    assert limited.headers["Retry-After"] == "1"
    time.sleep(0.6)
    assert post(emu, "distribute-file", distribute_body()).status_code == 200


# --- upload-file -----------------------------------------------------------------------------


def test_upload_then_distribute_after_processing(emulator: Emulator) -> None:
    emulator.configure(interval=0, processing_seconds=300)
    resp = post(emulator, "upload-file", upload_body(autoRelease=False))
    assert resp.status_code == 200
    upload_id = resp.json()["uploadId"]
    assert resp.json() == {"message": "Build queued for processing", "uploadId": upload_id}
    assert HEX24.match(upload_id)
    not_yet = post(emulator, "distribute-file", distribute_body(uploadId=upload_id))
    assert (not_yet.status_code, not_yet.json()) == (400, {"message": "File has no URL yet"})
    emulator.advance(301)
    done = post(emulator, "distribute-file", distribute_body(uploadId=upload_id))
    assert done.status_code == 200
    assert done.json()["uploadId"] == upload_id


@pytest.mark.parametrize(
    ("overrides", "text"),
    [
        ({"fileUrl": ""}, "Missing required field: fileUrl"),
        ({"fileUrl": "https://drive.google.com/file/d/abc123/view"}, emu_mod.MSG_BAD_FILE_URL),
        ({"fileUrl": "ftp://host/build.zip"}, emu_mod.MSG_BAD_FILE_URL),
        ({"autoRelease": "false"}, emu_mod.MSG_BAD_AUTO_RELEASE),
    ],
)
def test_upload_validation(emulator: Emulator, overrides: dict[str, Any], text: str) -> None:
    resp = post(emulator, "upload-file", upload_body(**overrides))
    assert (resp.status_code, resp.json()) == (400, {"message": text})


# --- faults ----------------------------------------------------------------------------------


def test_fault_status_and_html_body_then_normal(emulator: Emulator) -> None:
    html = "<html><body>502 Bad Gateway</body></html>"
    emulator.fault(path="distribute-file", status=502, body=html, content_type="text/html")
    resp = post(emulator, "distribute-file", distribute_body())
    assert resp.status_code == 502
    assert resp.headers["Content-Type"] == "text/html"
    assert resp.text == html
    # the faulted request was not processed, so the window is still free
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200


def test_fault_times_and_default_body(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", status=503, times=2)
    statuses = [post(emulator, "distribute-file", distribute_body()) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json() == {"message": "Service Unavailable"}


def test_fault_only_matches_its_path(emulator: Emulator) -> None:
    emulator.fault(path="upload-file", status=500)
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200
    assert emulator.control("GET", "faults") == [{"path": "upload-file", "status": 500, "times": 1}]


def test_fault_delay_makes_the_client_time_out(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", delay=0.5)
    with pytest.raises(requests.Timeout):
        post(emulator, "distribute-file", distribute_body(), timeout=0.1)
    # The slow request is still inside the emulator; a reset must keep it out of the next test.
    emulator.reset()
    time.sleep(0.7)
    assert post(emulator, "distribute-file", distribute_body()).status_code == 200


@pytest.mark.parametrize("drop", ["before_read", "before_response"])
def test_fault_drop_closes_without_response(emulator: Emulator, drop: str) -> None:
    emulator.fault(path="distribute-file", drop=drop)
    with pytest.raises(requests.ConnectionError):
        post(emulator, "distribute-file", distribute_body())
    (rec,) = emulator.requests()
    assert rec["dropped"] == drop
    assert rec["status"] is None
    # before_response processed the call (the window is used); before_read did not
    expected = 429 if drop == "before_response" else 200
    assert post(emulator, "distribute-file", distribute_body()).status_code == expected


def test_fault_mid_body_cuts_the_response(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", drop="mid_body", body_size=10_000)
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        post(emulator, "distribute-file", distribute_body())


def test_fault_redirect_location_and_large_body(emulator: Emulator) -> None:
    emulator.fault(
        path="distribute-file",
        status=302,
        body="",
        headers={"Location": "http://other.example/x"},
    )
    redirect = post(emulator, "distribute-file", distribute_body(), allow_redirects=False)
    assert redirect.status_code == 302
    assert redirect.headers["Location"] == "http://other.example/x"
    emulator.fault(path="distribute-file", body_size=1_000_000)
    big = post(emulator, "distribute-file", distribute_body())
    assert big.status_code == 200
    assert len(big.content) == 1_000_000
    assert big.json()["message"] == "Distribution triggered"  # padding keeps it valid JSON


def test_bad_fault_is_rejected_with_a_reason(emulator: Emulator) -> None:
    with pytest.raises(Exception, match=r"fault\.drop must be one of"):
        emulator.fault(drop="sometimes")
    with pytest.raises(Exception, match="unknown field"):
        emulator.fault(stauts=500)


# --- recording -------------------------------------------------------------------------------


def test_requests_are_recorded_without_the_key(emulator: Emulator) -> None:
    emulator.add_account(
        USER, SECRET_KEY, [{"projectId": PROJECT, "uploads": [{"uploadId": UPLOAD}]}]
    )
    body = {"apiKey": SECRET_KEY, "userId": USER, "projectId": PROJECT, "uploadId": UPLOAD}
    assert post(emulator, "distribute-file", body).status_code == 200
    wrong = {**body, "apiKey": "x" + SECRET_KEY}
    assert post(emulator, "distribute-file", wrong).status_code == 401
    requests.get(f"{emulator.url}/projects/userStats/{PROJECT}?apikey={SECRET_KEY}", timeout=10)
    records = emulator.requests()
    assert [r["status"] for r in records] == [200, 401, 404]
    ok, bad, get = records
    assert ok["api_key_ok"] is True and bad["api_key_ok"] is False
    assert (ok["userId"], ok["projectId"], ok["uploadId"]) == (USER, PROJECT, UPLOAD)
    assert ok["method"] == "POST" and ok["path"] == "/pixelStripeApi/projects/distribute-file"
    assert isinstance(ok["time"], float)
    assert get["path"] == f"/pixelStripeApi/projects/userStats/{PROJECT}"
    assert emulator.requests("distribute-file") == [ok, bad]
    for text in (
        json.dumps(emulator.requests()),
        json.dumps(emulator.state()),
        emulator.output(),
    ):
        assert SECRET_KEY not in text


def test_reset_forgets_everything(emulator: Emulator) -> None:
    emulator.add_account(USER, SECRET_KEY, [{"projectId": PROJECT}])
    emulator.fault(status=500)
    emulator.configure(interval=1)
    post(emulator, "distribute-file", distribute_body(userId=USER, apiKey=SECRET_KEY))
    emulator.reset()
    assert emulator.requests() == []
    assert emulator.control("GET", "faults") == []
    assert emulator.configure()["interval"] == 120
    resp = post(emulator, "distribute-file", distribute_body(userId=USER, apiKey=SECRET_KEY))
    assert (resp.status_code, resp.json()) == (401, {"message": "Invalid User"})


def test_control_errors_are_explained(emulator: Emulator) -> None:
    with pytest.raises(Exception, match="projectId is required"):
        emulator.control(
            "POST", "accounts", {"accounts": [{"userId": "u", "apiKey": "k", "projects": [{}]}]}
        )
    with pytest.raises(Exception, match="404"):
        emulator.set_webhook("ffffffffffffffffffffffff", "http://127.0.0.1:1/")


# --- webhooks --------------------------------------------------------------------------------


def _test_webhook_body(**overrides: str) -> dict[str, str]:
    body = {"apiKey": DEMO.api_key, "userId": DEMO.user_id, "projectId": DEMO.project_id}
    body.update(overrides)
    return body


def test_test_webhook_without_url_is_404(emulator: Emulator) -> None:
    resp = post(emulator, "test-webhook", _test_webhook_body())
    assert (resp.status_code, resp.json()) == (404, {"message": "No webhook URL configured"})
    bad = post(emulator, "test-webhook", _test_webhook_body(apiKey="nope"))
    assert (bad.status_code, bad.json()) == (401, {"message": "Unauthorized"})


def test_test_webhook_delivers_the_envelope(
    emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    emulator.set_webhook(DEMO.project_id, webhook_receiver.url)
    resp = post(emulator, "test-webhook", _test_webhook_body())
    assert resp.status_code == 200
    assert resp.json() == {"success": True, "message": "Test webhook delivered", "statusCode": 200}
    (received,) = webhook_receiver.received
    assert received["path"] == "/hooks/secret-token"
    assert received["headers"]["Content-Type"] == "application/json"
    body = received["body"]
    assert set(body) == {
        "event", "projectId", "uploadId", "fileUrl", "status", "objection", "timestamp",
    }  # fmt: skip
    assert (body["event"], body["projectId"]) == ("webhook.test", DEMO.project_id)
    assert body["uploadId"] is None and body["fileUrl"] is None and body["objection"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["timestamp"])
    (delivery,) = emulator.webhooks()
    assert (delivery["event"], delivery["statusCode"]) == ("webhook.test", 200)


def test_test_webhook_reports_receiver_failure(
    emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    webhook_receiver.status = 500
    emulator.set_webhook(DEMO.project_id, webhook_receiver.url)
    resp = post(emulator, "test-webhook", _test_webhook_body())
    assert resp.json() == {
        "success": False,
        "message": "Webhook endpoint returned non-2xx status",
        "statusCode": 500,
    }


def test_webhooks_only_go_to_loopback(emulator: Emulator) -> None:
    emulator.set_webhook(DEMO.project_id, "https://hooks.example.com/streampixel")
    resp = post(emulator, "test-webhook", _test_webhook_body())
    assert resp.json()["statusCode"] == 0 and resp.json()["success"] is False
    (delivery,) = emulator.webhooks()
    assert "loopback" in delivery["error"]


def test_pipeline_events_in_order(emulator: Emulator, webhook_receiver: WebhookReceiver) -> None:
    emulator.configure(interval=0, processing_seconds=0.2)
    emulator.set_webhook(DEMO.project_id, webhook_receiver.url)
    resp = post(emulator, "upload-file", upload_body(autoRelease=False))
    upload_id = resp.json()["uploadId"]
    bodies = webhook_receiver.wait_for(5)
    assert webhook_receiver.events() == [
        "build.uploaded",
        "build.downloading",
        "build.extracting",
        "build.saving",
        "build.approved",
    ]
    assert {b["uploadId"] for b in bodies} == {upload_id}
    assert bodies[0]["status"] == "pending"
    assert bodies[-1]["status"] == "Approved"
    assert post(emulator, "distribute-file", distribute_body(uploadId=upload_id)).status_code == 200
    webhook_receiver.wait_for(6)
    assert webhook_receiver.events()[-1] == "build.distributing"
    # The emulator logs a delivery after the receiver has answered: wait for the log too.
    assert [w["event"] for w in emulator.wait_webhooks(6)] == webhook_receiver.events()


def test_pipeline_auto_release_and_rejection(
    emulator: Emulator, webhook_receiver: WebhookReceiver
) -> None:
    emulator.configure(interval=0, processing_seconds=0)
    emulator.add_account(
        USER,
        SECRET_KEY,
        [
            {"projectId": PROJECT, "webhookUrl": webhook_receiver.url},
            {
                "projectId": "70000000000000000000b002",
                "webhookUrl": webhook_receiver.url,
                "rejectObjection": "Build is not a Windows package",
            },
        ],
    )
    body = upload_body(apiKey=SECRET_KEY, userId=USER, projectId=PROJECT)
    good = post(emulator, "upload-file", body).json()["uploadId"]
    webhook_receiver.wait_for(6)
    assert webhook_receiver.events()[-2:] == ["build.distributing", "build.approved"]
    body["projectId"] = "70000000000000000000b002"
    bad = post(emulator, "upload-file", body).json()["uploadId"]
    bodies = webhook_receiver.wait_for(10)
    rejected = [b for b in bodies if b["uploadId"] == bad]
    assert [b["event"] for b in rejected] == [
        "build.uploaded",
        "build.downloading",
        "build.extracting",
        "build.rejected",
    ]
    assert rejected[-1]["objection"] == "Build is not a Windows package"
    assert rejected[-1]["status"] == "Reject"
    assert all(b["objection"] is None for b in rejected[:-1])
    state = {p["projectId"]: p for p in emulator.state()["accounts"][-1]["projects"]}
    assert state[PROJECT]["liveUploadId"] == good
    refused = post(emulator, "distribute-file", {**body, "uploadId": bad})
    assert refused.json() == {"message": "File has no URL yet"}


# --- process: seed file, banner, TLS, signals --------------------------------------------------


def test_seed_file_and_banner(tmp_path: Path, emulator_factory: Callable[..., Emulator]) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "demo": False,
                "accounts": [
                    {
                        "userId": USER,
                        "apiKey": SECRET_KEY,
                        "projects": [
                            {
                                "projectId": PROJECT,
                                "region": "us-east-1",
                                "uploads": [{"uploadId": UPLOAD, "ready": True}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    emu = emulator_factory(seed=seed, processing_seconds=1)
    body = {"apiKey": SECRET_KEY, "userId": USER, "projectId": PROJECT, "uploadId": UPLOAD}
    resp = post(emu, "distribute-file", body)
    assert (resp.status_code, resp.json()["region"]) == (200, "us-east-1")
    assert post(emu, "distribute-file", distribute_body()).json() == {"message": "Invalid User"}
    banner = emu.output()
    assert emu.url in banner
    assert DEMO.api_key not in banner  # demo disabled: nothing to show
    assert SECRET_KEY not in banner


def test_banner_shows_the_demo_account(emulator: Emulator) -> None:
    banner = emulator.output()
    for value in (
        emulator.url,
        DEMO.user_id,
        DEMO.api_key,
        DEMO.project_id,
        DEMO.upload_id,
        DEMO.processing_upload_id,
    ):
        assert value in banner
    for value in (DEMO.user_id, DEMO.project_id, DEMO.upload_id, DEMO.processing_upload_id):
        assert HEX24.match(value)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("{not json", "not valid JSON"),
        ('{"accounts": [{"userId": "u"}]}', "apiKey is required"),
        ('{"accounts": [], "extra": 1}', "unknown field(s) extra"),
    ],
)
def test_bad_seed_exits_2_with_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, needle: str
) -> None:
    seed = tmp_path / "seed.json"
    seed.write_text(content)
    assert emu_mod.main(["--seed", str(seed), "--port", "0"]) == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_it_cleanly(emulator_factory: Callable[..., Emulator], sig: int) -> None:
    emu = emulator_factory(quiet=True)
    ready = emu.log.parent / "ready.json"
    assert ready.exists()
    assert emu.stop(sig) == 0
    assert not ready.exists()
    assert "Traceback" not in emu.output()


def test_tls(tmp_path: Path, emulator_factory: Callable[..., Emulator]) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    require_binary("openssl", "openssl")
    made = subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        capture_output=True,
        check=False,
    )  # fmt: skip
    if made.returncode != 0:
        missing(f"openssl cannot make a test certificate here: {made.stderr!r}")
    emu = emulator_factory(tls_cert=cert, tls_key=key)
    assert emu.url.startswith("https://")
    with pytest.raises(requests.exceptions.SSLError):
        post(emu, "distribute-file", distribute_body())
    resp = post(emu, "distribute-file", distribute_body(), verify=str(cert))
    assert resp.status_code == 200
