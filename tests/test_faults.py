"""The fault matrix: every case runs the real entrypoint (a subprocess under the GitHub runner
contract) against a real loopback server that misbehaves, and checks what a user would see.

Each failing case asserts the exit code, the `error` output, the `::error` annotation (one
paragraph with the fix), the summary's "What went wrong" / "How to fix it", and that the run ended
within `timeout x (retries + 1)` plus the waits it announced plus a fixed slack for interpreter
start-up. That bound is a hang detector, not a speed target: a case that hangs blows through it by
the default 30 s timeout or forever.

Ledger backends' own fault tests live in test_ledger_file.py / test_ledger_redis.py /
test_ledger_git.py; here the ledger faults are driven through the CLI only.
"""

from __future__ import annotations

import json
import re
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streampixel_distribute.ledger import account_key, open_ledger
from support.emulator import Emulator, start_emulator
from support.hostile import (
    EndlessBodyServer,
    RecordingServer,
    closed_port,
    endless_body_server,
    finish_action,
    recording_server,
    spawn_action,
)
from support.redis_server import start_redis
from support.runner import LEAK_KEY, LEAK_TOKEN, ActionRun, run_action
from support.tls import LoopbackCA, make_test_ca
from support.tools import missing

TIMEOUT = 1.0
RETRIES = 1
INTERVAL = 1.0
# Interpreter start-up, imports and a loaded 2-core CI machine; far below any real hang.
SLACK = 10.0

HTML_PAGE = (
    "<!DOCTYPE html><html><head><title>{code} Bad Gateway</title><style>body{{color:red}}</style>"
    "<script>var secret = 1;</script></head><body><h1>{code} Service Unavailable</h1>"
    "<p>The upstream server is <b>temporarily</b> unavailable.</p></body></html>"
)


# --- helpers ---------------------------------------------------------------------------------


def inputs_for(emu: Emulator, **overrides: str) -> dict[str, str]:
    demo = emu.demo
    values = {
        "api-key": demo.api_key,
        "user-id": demo.user_id,
        "project-id": demo.project_id,
        "upload-id": demo.upload_id,
        "api-url": emu.url,
        "ledger": "none",
        "timeout": f"{TIMEOUT:g}",
        "retries": str(RETRIES),
        "rate-limit-interval": f"{INTERVAL:g}",
        "max-wait": "60",
    }
    values.update(overrides)
    return values


LEAK_USER, LEAK_PROJECT, LEAK_UPLOAD = (
    "65de00000000000000000f01", "65de00000000000000000f02", "65de00000000000000000f03")


def use_leak_account(emu: Emulator) -> dict[str, str]:
    """An account whose key is the distinctive `LEAK_KEY`, so a leak cannot hide."""
    emu.add_account(LEAK_USER, LEAK_KEY, [
        {"projectId": LEAK_PROJECT, "uploads": [{"uploadId": LEAK_UPLOAD, "ready": True}]}])
    return inputs_for(emu, **{"api-key": LEAK_KEY, "user-id": LEAK_USER,
                              "project-id": LEAK_PROJECT, "upload-id": LEAK_UPLOAD})


def without_masks(text: str) -> str:
    """Everything but the `::add-mask::` commands, which carry the secrets on purpose."""
    return "\n".join(line for line in text.splitlines()
                     if not line.startswith("::add-mask::"))


def timed(run: Callable[[], ActionRun]) -> tuple[ActionRun, float]:
    start = time.monotonic()
    result = run()
    return result, time.monotonic() - start


def unescape(data: str) -> str:
    return data.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def commands(run: ActionRun, kind: str) -> list[tuple[str, str]]:
    """(title, message) of every `::<kind> title=…::message` workflow command on stdout."""
    found = []
    for line in run.stdout.splitlines():
        match = re.match(rf"::{kind}(?: ([^:]*))?::(.*)$", line)
        if match:
            props = match.group(1) or ""
            title = re.search(r"title=([^,]*)", props)
            found.append((unescape(title.group(1)) if title else "", unescape(match.group(2))))
    return found


def announced_wait(run: ActionRun) -> float:
    """Seconds of waiting the run told the user about (retry pauses, 429 waits)."""
    total = 0.0
    text = run.stdout + run.stderr
    for match in re.finditer(r"(?:in about|asks to wait) (?:(\d+) min )?(\d+) s", text):
        total += int(match.group(1) or 0) * 60 + int(match.group(2))
    return total


def assert_bounded(run: ActionRun, elapsed: float, *, timeout: float = TIMEOUT,
                   retries: int = RETRIES, extra: float = 0.0) -> None:
    bound = timeout * (retries + 1) + announced_wait(run) + extra + SLACK
    assert elapsed <= bound, f"took {elapsed:.1f} s, bound {bound:.1f} s\n{run.stdout}"


def assert_failed(run: ActionRun, *, code: int, kind: str, detail: str, fix: str) -> None:
    """The documented failure: exit code, outputs, one annotation with the fix, the summary."""
    assert run.exit_code == code, run.stdout + run.stderr
    assert run.outputs["status"] == "failed"
    assert run.outputs["error"] == kind
    assert "Traceback" not in run.stdout + run.stderr
    errors = commands(run, "error")
    assert len(errors) == 1, run.stdout
    title, message = errors[0]
    assert title
    assert re.search(detail, message, re.IGNORECASE), message
    assert "Fix: " in message and re.search(fix, message.split("Fix: ", 1)[1], re.IGNORECASE)
    summary = run.summary
    assert "### What went wrong" in summary and "### How to fix it" in summary, summary
    wrong = summary.split("### What went wrong", 1)[1].split("### How to fix it", 1)[0]
    assert re.search(detail, wrong, re.IGNORECASE), summary
    assert re.search(fix, summary.split("### How to fix it", 1)[1], re.IGNORECASE), summary


def distribute_calls(emu: Emulator) -> list[dict[str, Any]]:
    return emu.requests("distribute-file")


@pytest.fixture
def emu(emulator: Emulator) -> Emulator:
    emulator.configure(interval=INTERVAL)
    return emulator


# This machine (like many CI images) may export CA variables globally; each TLS case sets exactly
# the one it is about and blanks the rest (empty counts as unset for requests and for us).
CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR")
NO_CA_ENV = dict.fromkeys(CA_VARIABLES, "")


def ca_env(**values: str) -> dict[str, str]:
    return {**NO_CA_ENV, **values}


@pytest.fixture(scope="module")
def loopback_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


class TrustingEmulator(Emulator):
    """The emulator served over https: its control calls trust the test CA."""

    ca_file: str = ""

    def control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.root}/_emulator/{path.lstrip('/')}", data=data,
                                     method=method,
                                     headers={"Content-Type": "application/json"})
        context = ssl.create_default_context(cafile=self.ca_file)
        with urllib.request.urlopen(req, timeout=10, context=context) as resp:
            return json.loads(resp.read() or b"null")


@pytest.fixture(scope="module")
def tls_emulator(tmp_path_factory: pytest.TempPathFactory,
                 loopback_ca: LoopbackCA) -> Iterator[Emulator]:
    plain = start_emulator(tmp_path_factory.mktemp("tls-emulator"), interval=INTERVAL,
                           quiet=True, tls_cert=loopback_ca.cert, tls_key=loopback_ca.key)
    emu = TrustingEmulator(plain.process, {"url": plain.url, "port": plain.port}, plain.log)
    emu.ca_file = str(loopback_ca.ca_cert)
    yield emu
    emu.stop()


@pytest.fixture
def tls_emu(tls_emulator: Emulator) -> Emulator:
    tls_emulator.reset()
    tls_emulator.configure(interval=INTERVAL)
    return tls_emulator


@pytest.fixture
def other_host() -> Iterator[RecordingServer]:
    """Another host on loopback (127.0.0.2: Linux routes all of 127/8 to lo)."""
    yield from recording_server("127.0.0.2")


@pytest.fixture
def same_host() -> Iterator[RecordingServer]:
    yield from recording_server("127.0.0.1")


@pytest.fixture
def endless() -> Iterator[EndlessBodyServer]:
    yield from endless_body_server()


# --- HTTP faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", [500, 502, 503])
def test_5xx_with_html_body_is_retried_then_reported_with_a_short_excerpt(
    emu: Emulator, tmp_path: Path, code: int
) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, status=code,
              body=HTML_PAGE.format(code=code), content_type="text/html")
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="server-error", detail=rf"HTTP {code}",
                  fix=r"retried.*support@streampixel\.io")
    assert run.outputs["http-status"] == str(code)
    assert run.outputs["attempts"] == str(RETRIES + 1)
    excerpt = run.outputs["message"]
    assert "Service Unavailable" in excerpt
    assert len(excerpt) <= 200 and not re.search(r"[<>]", excerpt)
    assert "var secret" not in run.stdout and "color:red" not in run.stdout
    assert len(distribute_calls(emu)) == RETRIES + 1
    assert_bounded(run, elapsed)


def test_503_once_then_success_on_the_retry(emu: Emulator, tmp_path: Path) -> None:
    emu.fault(path="distribute-file", status=503, body=HTML_PAGE.format(code=503),
              content_type="text/html")
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered" and run.outputs["error"] == ""
    assert run.outputs["attempts"] == "2" and run.outputs["http-status"] == "200"
    assert any(t == "Transient failure" for t, _ in commands(run, "warning"))
    calls = distribute_calls(emu)
    # The 503 reached the server, so the retry waited a full interval: no 429 in between.
    assert [c["status"] for c in calls] == [503, 200]
    assert calls[1]["time"] - calls[0]["time"] >= INTERVAL * 0.9
    assert_bounded(run, elapsed)


def test_504_after_a_delay(emu: Emulator, tmp_path: Path) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, status=504, delay=0.5,
              body=HTML_PAGE.format(code=504), content_type="text/html")
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="server-error", detail=r"HTTP 504", fix=r"retried")
    assert run.outputs["http-status"] == "504"
    assert_bounded(run, elapsed)


def test_response_slower_than_timeout(emu: Emulator, tmp_path: Path) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, delay=TIMEOUT + 2)
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="network-error", detail=rf"no response .* within {TIMEOUT:g} s",
                  fix=r"proxy|network")
    assert run.outputs["attempts"] == str(RETRIES + 1)
    assert run.outputs["http-status"] == ""
    assert_bounded(run, elapsed)


def test_connection_refused_before_anything_is_sent(emu: Emulator, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/pixelStripeApi"
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu, **{"api-url": url})))
    assert_failed(run, code=6, kind="network-error", detail="connection refused",
                  fix=r"api-url")
    assert run.outputs["attempts"] == str(RETRIES + 1)
    assert_bounded(run, elapsed)


@pytest.mark.parametrize(
    ("drop", "processed"),
    [("before_read", False), ("before_response", True)],
    ids=["reset-before-request-read", "reset-after-request-processed"],
)
def test_connection_reset(emu: Emulator, tmp_path: Path, drop: str, processed: bool) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, drop=drop)
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="network-error",
                  detail=r"closed the connection|reset|cut off", fix=r"network")
    calls = distribute_calls(emu)
    assert len(calls) == RETRIES + 1
    # The emulator really did process the request in the "after" case (the window was used).
    assert all((c["api_key_ok"] is True) is processed for c in calls), calls
    assert_bounded(run, elapsed)


def test_truncated_200_is_a_network_error(emu: Emulator, tmp_path: Path) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, status=200, drop="mid_body",
              body=json.dumps({"message": "Distribution triggered", "pad": "x" * 200}))
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="network-error", detail="cut off", fix=r"network")
    assert_bounded(run, elapsed)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ("OK", "text/plain", "OK"),
        ('{"message": "Distri', "application/json", '{"message": "Distri'),
        ("<html><body>Accepted</body></html>", "text/html", "Accepted"),
    ],
    ids=["plain-text", "json-cut-short", "html"],
)
def test_200_that_is_not_json_counts_as_triggered_with_a_warning(
    emu: Emulator, tmp_path: Path, body: str, content_type: str, message: str
) -> None:
    emu.fault(path="distribute-file", status=200, body=body, content_type=content_type)
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert run.outputs["message"] == message
    assert "### Warnings" in run.summary and "not JSON" in run.summary
    assert "<" not in run.outputs["message"].replace('{"', "")
    assert_bounded(run, elapsed)


def test_200_without_message_uses_a_default(emu: Emulator, tmp_path: Path) -> None:
    emu.fault(path="distribute-file", status=200, body=json.dumps({"success": True}))
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert run.outputs["message"] == "Distribution triggered"
    assert_bounded(run, elapsed)


@pytest.mark.parametrize("code", [200, 500])
def test_one_megabyte_body(emu: Emulator, tmp_path: Path, code: int) -> None:
    # JSON padded with whitespace to 1 MB: only the first 64 KB are read, which still parse.
    body = json.dumps({"message": "Distribution triggered" if code == 200 else "Overloaded"})
    emu.fault(path="distribute-file", times=RETRIES + 1, status=code, body=body,
              content_type="application/json", body_size=1_000_000)
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    if code == 200:
        assert run.exit_code == 0, run.stdout
        assert run.outputs["message"] == "Distribution triggered"
    else:
        assert_failed(run, code=6, kind="server-error", detail="HTTP 500: Overloaded",
                      fix="retried")
    assert len(run.stdout) < 20_000
    assert_bounded(run, elapsed)


def test_endless_body_is_read_no_further_than_the_cap(
    endless: EndlessBodyServer, emu: Emulator, tmp_path: Path
) -> None:
    run, elapsed = timed(lambda: run_action(
        tmp_path, inputs_for(emu, **{"api-url": endless.api_url}), timeout=60))
    assert_failed(run, code=6, kind="server-error", detail="HTTP 500", fix="retried")
    assert len(run.outputs["message"]) <= 200
    sent = endless.total_sent()
    assert len(sent) == RETRIES + 1
    # The server stops at 64 MB on its own; the client hung up long before (socket buffers
    # let a few MB through after the client stopped reading).
    assert all(n < 16 * 1024 * 1024 for n in sent), sent
    assert_bounded(run, elapsed)


# --- redirects -------------------------------------------------------------------------------

REDIRECTS = [301, 302, 307, 308]


@pytest.mark.parametrize("code", REDIRECTS)
@pytest.mark.parametrize("target", ["other-host", "plain-http"])
def test_redirect_is_never_followed_and_the_key_never_leaves(
    request: pytest.FixtureRequest, other_host: RecordingServer, tmp_path: Path,
    loopback_ca: LoopbackCA, code: int, target: str,
) -> None:
    if target == "plain-http":
        # https API -> http://127.0.0.1:<port>: a downgrade to plain text.
        emu: Emulator = request.getfixturevalue("tls_emu")
        sink: RecordingServer = request.getfixturevalue("same_host")
        env = ca_env(REQUESTS_CA_BUNDLE=str(loopback_ca.ca_cert))
    else:
        emu = request.getfixturevalue("emu")
        sink = other_host
        env = {}
    inputs = use_leak_account(emu)
    emu.fault(path="distribute-file", times=RETRIES + 1, status=code,
              headers={"Location": sink.url("http")})
    run, elapsed = timed(lambda: run_action(tmp_path, inputs, env=env))
    connections, received = sink.snapshot()
    assert connections == 0 and received == [], received
    assert run.exit_code == 6, run.stdout
    assert run.outputs["status"] == "failed"
    assert LEAK_KEY not in without_masks(run.everything())
    assert_bounded(run, elapsed)


@pytest.mark.parametrize("code", [302, 307])
def test_redirect_is_reported_as_a_redirect_and_not_retried(
    emu: Emulator, other_host: RecordingServer, tmp_path: Path, code: int
) -> None:
    emu.fault(path="distribute-file", times=RETRIES + 1, status=code,
              headers={"Location": other_host.url("http")})
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu)))
    assert_failed(run, code=6, kind="server-error", detail=r"redirect to 127\.0\.0\.2",
                  fix="api-url")
    assert run.outputs["http-status"] == str(code)
    assert run.outputs["attempts"] == "1"
    assert_bounded(run, elapsed)


# --- TLS -------------------------------------------------------------------------------------


def test_tls_self_signed_is_refused_with_a_fix(tls_emu: Emulator, tmp_path: Path) -> None:
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(tls_emu), env=ca_env()))
    assert_failed(run, code=6, kind="network-error", detail="certificate verify failed",
                  fix="REQUESTS_CA_BUNDLE")
    assert run.outputs["attempts"] == "1"  # never retried: retrying cannot fix trust
    # The handshake failed before any request: the emulator recorded none.
    assert distribute_calls(tls_emu) == []
    assert_bounded(run, elapsed)


def test_tls_accepted_with_requests_ca_bundle(tls_emu: Emulator, tmp_path: Path,
                                              loopback_ca: LoopbackCA) -> None:
    run = run_action(tmp_path, inputs_for(tls_emu),
                     env=ca_env(REQUESTS_CA_BUNDLE=str(loopback_ca.ca_cert)))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert [c["status"] for c in distribute_calls(tls_emu)] == [200]


def test_tls_accepted_with_ssl_cert_file(tls_emu: Emulator, tmp_path: Path,
                                         loopback_ca: LoopbackCA) -> None:
    run = run_action(tmp_path, inputs_for(tls_emu),
                     env=ca_env(SSL_CERT_FILE=str(loopback_ca.ca_cert)))
    assert run.exit_code == 0, run.stdout
    assert [c["status"] for c in distribute_calls(tls_emu)] == [200]


# --- DNS -------------------------------------------------------------------------------------


def _unshare_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, check=False)
    return done.returncode == 0


def test_dns_failure_in_an_isolated_network_namespace(emu: Emulator, tmp_path: Path) -> None:
    # A network namespace with no interfaces: resolution fails locally, no packet leaves.
    if not _unshare_available():
        missing("`unshare --net` is unavailable (needs root or user namespaces)")
    url = "https://api.streampixel.invalid/pixelStripeApi"
    start = time.monotonic()
    live = spawn_action(tmp_path, inputs_for(emu, **{"api-url": url}),
                        prefix=["unshare", "--net", "--"])
    run = finish_action(live, timeout=60)
    elapsed = time.monotonic() - start
    assert_failed(run, code=6, kind="network-error", detail="DNS lookup failed",
                  fix=r"network|proxy")
    assert run.outputs["attempts"] == str(RETRIES + 1)
    assert_bounded(run, elapsed)


# --- the rate limit hit from outside the ledger ----------------------------------------------


def _call_directly(emu: Emulator) -> int:
    demo = emu.demo
    body = json.dumps({"apiKey": demo.api_key, "userId": demo.user_id,
                       "projectId": demo.project_id, "uploadId": demo.upload_id}).encode()
    req = urllib.request.Request(emu.url + "/projects/distribute-file", data=body,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return int(resp.status)


@pytest.mark.parametrize("retry_after_header", [False, True], ids=["message", "Retry-After"])
def test_rate_limit_hit_from_outside_waits_the_announced_time_then_succeeds(
    emu: Emulator, tmp_path: Path, retry_after_header: bool
) -> None:
    window = 3.0
    emu.configure(interval=window, retry_after_header=retry_after_header)
    ledger = f"file://{tmp_path / 'ledger.json'}"
    assert _call_directly(emu) == 200  # someone else (another tool, a person) used the window
    run, elapsed = timed(lambda: run_action(tmp_path / "run", inputs_for(emu, ledger=ledger)))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert run.outputs["attempts"] == "2" and run.outputs["http-status"] == "200"
    assert any(t == "Rate limited" for t, _ in commands(run, "warning")), run.stdout
    source = "Retry-After header" if retry_after_header else "server message"
    assert source in run.stdout
    calls = distribute_calls(emu)
    assert [c["status"] for c in calls] == [200, 429, 200]
    assert calls[2]["time"] - calls[0]["time"] >= window
    # The later slot was reserved in the ledger, so parallel jobs queue behind it.
    state = json.loads((tmp_path / "ledger.json").read_text())
    (entry,) = state["accounts"].values()
    assert entry["next_free"] >= time.time() - elapsed + window
    assert_bounded(run, elapsed)


# --- ledger faults through the CLI -----------------------------------------------------------


def test_explicit_redis_ledger_down_exits_7_and_sends_nothing(emu: Emulator,
                                                              tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    run, elapsed = timed(lambda: run_action(tmp_path, inputs_for(emu, ledger=url)))
    assert_failed(run, code=7, kind="ledger-error", detail=r"127\.0\.0\.1",
                  fix=r"redis|ledger")
    assert distribute_calls(emu) == []
    assert_bounded(run, elapsed)


def test_auto_ledger_unreachable_on_github_degrades_to_none(emu: Emulator,
                                                            tmp_path: Path) -> None:
    env = {"GITHUB_REPOSITORY": "octo/game", "GITHUB_SERVER_URL":
           f"http://127.0.0.1:{closed_port()}"}
    inputs = inputs_for(emu, ledger="auto", **{"github-token": LEAK_TOKEN})
    run, elapsed = timed(lambda: run_action(tmp_path, inputs, env=env))
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert run.outputs["ledger"].startswith("none")
    warnings = commands(run, "warning")
    assert any(t == "Ledger unavailable" and "contents: write" in m for t, m in warnings), warnings
    assert LEAK_TOKEN not in without_masks(run.everything())
    assert_bounded(run, elapsed)


def test_auto_ledger_that_cannot_open_github_degrades_to_none(emu: Emulator,
                                                              tmp_path: Path) -> None:
    """The `github` ledger refuses to start at all (GITHUB_SERVER_URL is plain http on a public
    host: the token must not travel there): `auto` runs uncoordinated, with a warning that
    names the cause, instead of failing the job."""
    env = {"GITHUB_REPOSITORY": "octo/game", "GITHUB_SERVER_URL": "http://github.example.com"}
    inputs = inputs_for(emu, ledger="auto", **{"github-token": LEAK_TOKEN})
    run = run_action(tmp_path, inputs, env=env)
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    assert run.outputs["ledger"] == "none"
    assert len(distribute_calls(emu)) == 1
    warnings = commands(run, "warning")
    degraded = [m for t, m in warnings if t == "Ledger unavailable"]
    assert len(degraded) == 1, warnings
    assert degraded[0].startswith("Coordination disabled: Rate-limit ledger unavailable: "
                                  "GITHUB_SERVER_URL "
                                  "(http://github.example.com) is not a plain https:// server URL")
    assert "Falling back to `ledger: none`" in degraded[0]
    assert LEAK_TOKEN not in without_masks(run.everything())


@pytest.mark.parametrize(
    ("content", "detail", "fix"),
    [
        ("this is not json {", "not a readable", "delete it"),
        ('{"version": 1, "accounts": {"sp-x": {"next_free": 17', "not a readable",
         "delete it"),
        ('{"version": 1, "accounts": {"sp-x": {"next_free": "soon"}}}', "next_free",
         "delete it"),
        ("[1, 2, 3]", "not an object", "delete it"),
        ('{"version": 99, "accounts": {}}', "newer", "Upgrade"),
    ],
    ids=["garbage", "truncated", "wrong-type", "not-an-object", "newer-version"],
)
def test_bad_file_ledger_exits_7_and_is_left_alone(
    emu: Emulator, tmp_path: Path, content: str, detail: str, fix: str
) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(content)
    run, elapsed = timed(lambda: run_action(tmp_path / "run",
                                            inputs_for(emu, ledger=f"file://{path}")))
    assert_failed(run, code=7, kind="ledger-error", detail=detail, fix=fix)
    assert path.read_text() == content  # not "repaired": it might belong to someone else
    assert distribute_calls(emu) == []
    assert_bounded(run, elapsed)


def test_redis_going_down_mid_wait_keeps_the_reserved_slot(emu: Emulator,
                                                           tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    try:
        url = server.url()
        hold = 3.0
        ledger = open_ledger(url)
        try:
            # Another job holds the next `hold` seconds.
            ledger.reserve(account_key(emu.url, emu.demo.user_id), hold)
        finally:
            ledger.close()
        inputs = inputs_for(emu, ledger=url, **{"rate-limit-interval": f"{hold:g}"})
        start = time.monotonic()
        live = spawn_action(tmp_path / "run", inputs)
        live.wait_for("Reserved slot")
        server.stop()  # the ledger vanishes while the job waits for its slot
        run = finish_action(live, timeout=60)
        elapsed = time.monotonic() - start
    finally:
        server.stop()
    # The slot was already ours: nothing more is asked of the ledger, the call goes out on time.
    assert run.exit_code == 0, run.stdout
    assert run.outputs["status"] == "triggered"
    calls = distribute_calls(emu)
    assert [c["status"] for c in calls] == [200]
    assert_bounded(run, elapsed, extra=hold)


def test_explicit_git_ledger_push_refused_exits_7(emu: Emulator, tmp_path: Path) -> None:
    from support.git_server import start_git_http_server

    server = start_git_http_server(tmp_path / "git", refuse_push=True)
    try:
        run, elapsed = timed(lambda: run_action(tmp_path / "run",
                                                inputs_for(emu, ledger=server.spec())))
    finally:
        server.stop()
    assert_failed(run, code=7, kind="ledger-error", detail=r"git|push|refused|denied|403",
                  fix=r"write|permission|token")
    assert server.password not in without_masks(run.everything())
    assert distribute_calls(emu) == []
    assert_bounded(run, elapsed)

