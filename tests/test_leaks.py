"""The secret-leak sweep: every scenario, run with distinctive secrets, searched for every form a
secret can leak in.

`LeakSweep` collects every text a run produced (stdout, stderr, `$GITHUB_OUTPUT`, the step
summary, `--json`, `--dotenv`, `--output-file`, `--summary-file`, the ledger's stored state: the
file ledger JSON, a Redis keyspace dump, a git ledger repository's refs and objects) and fails if
the API key, the GitHub token or a ledger password shows up in plain, URL-encoded or base64 form
(including base64 of `user:secret`, as a Basic-auth header carries it). The `::add-mask::`
commands are the one place a secret is printed on purpose; they are checked separately: they must
come before any other line the process prints.

Scenarios: success, each HTTP error (with a hostile server echoing the key back), network errors,
invalid inputs that carry the secrets in odd shapes, dry run, ledger errors with a token or
password, ledger passwords with an unencoded `/` (no process started, and the git server sees the
credential in the Authorization header only), the github-token offered to a foreign git host, a
git ledger that stores state with a token, and cancellation.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import traceback
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from streampixel_distribute import redact
from streampixel_distribute.api import StreampixelClient
from streampixel_distribute.errors import DistributeError
from streampixel_distribute.ledger import account_key, open_ledger
from support import product
from support.emulator import Emulator
from support.hostile import closed_port, finish_action, recording_server, spawn_action
from support.redis_server import REDIS_PASSWORD, RedisServer
from support.runner import LEAK_KEY, LEAK_TOKEN, ActionRun, base_env, run_action

GIT_PASSWORD = "gitpw-LEAKCHECK-5e8a1f0c3b"
# Passwords with a `/`: a strict URL parser splits them, so each half is searched for as well.
SLASH_REDIS = ("RedisPassw0rd/Slash+Plus", "RedisPassw0rd", "Slash+Plus")
SLASH_GIT = ("Tok3nAbc/Secr3tValue99", "Tok3nAbc", "Secr3tValue99")
# A presigned link is a credential: the link, its query and its signature alone.
FILE_SIGNATURE = "c0ffee5eed1e4fc8b7a6LEAKSIG9d8e7f60a1b2c3"
FILE_QUERY = ("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600"
              f"&X-Amz-Signature={FILE_SIGNATURE}")
FILE_URL = f"https://builds.s3.amazonaws.com/game/Build-77.zip?{FILE_QUERY}"
SECRETS = (LEAK_KEY, LEAK_TOKEN, REDIS_PASSWORD, GIT_PASSWORD, *SLASH_REDIS, *SLASH_GIT,
           FILE_URL, FILE_QUERY, FILE_SIGNATURE)
USER, PROJECT, UPLOAD = "65de00000000000000000e01", "65de00000000000000000e02", \
    "65de00000000000000000e03"
PROCESSING = "65de00000000000000000e04"
MASK_LINE = re.compile(r"::add-mask::")


def leak_forms(secret: str) -> dict[str, str]:
    """Every encoding of `secret` worth searching for, by name."""
    forms = {
        "plain": secret,
        "url-encoded": urllib.parse.quote(secret, safe=""),
        "form-encoded": urllib.parse.quote_plus(secret),
        "base64": base64.b64encode(secret.encode()).decode().rstrip("="),
    }
    for user in ("x-access-token", "ledger-user", ""):
        # The stable middle of base64("user:secret"), whatever the alignment.
        encoded = base64.b64encode(f"{user}:{secret}".encode()).decode()
        forms[f"basic-auth({user})"] = encoded[len(user) + 4: -4]
    return {name: form for name, form in forms.items() if len(form) >= 8}


def echo_forms(secret: str) -> list[str]:
    """Whole encodings of `secret`, as a hostile server or a careless library would emit them."""
    forms = [secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
             base64.b64encode(secret.encode()).decode()]
    forms += [base64.b64encode(f"{user}:{secret}".encode()).decode()
              for user in ("x-access-token", "ledger-user", "")]
    return forms


@dataclass
class LeakSweep:
    """Texts gathered from one scenario; `check()` fails naming the secret, form and place."""

    texts: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        self.texts[where] = self.texts.get(where, "") + text

    def add_run(self, run: ActionRun) -> None:
        self.add("stdout", "\n".join(ln for ln in run.stdout.splitlines()
                                     if not MASK_LINE.match(ln)))
        self.add("stderr", run.stderr)
        self.add("outputs", json.dumps(run.outputs))
        self.add("summary", run.summary)
        for name, text in run.files.items():
            self.add(f"file {name}", text)

    def add_git_repo(self, repo: Path) -> None:
        refs = subprocess.run(["git", "-C", str(repo), "for-each-ref"], capture_output=True,
                              text=True, check=True).stdout
        objects = subprocess.run(
            ["git", "-C", str(repo), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True, check=True).stdout.decode(errors="replace")
        self.add(f"git refs of {repo.name}", refs)
        self.add(f"git objects of {repo.name}", objects)
        for path in repo.rglob("*"):
            if path.is_file() and path.stat().st_size < 1_000_000:
                self.add(f"git file {path.relative_to(repo)}", path.read_bytes().decode(
                    errors="replace"))

    def add_redis(self, client: redis.Redis) -> None:
        for key in client.scan_iter("*"):
            self.add("redis keys", repr(key))
            self.add(f"redis value {key!r}", repr(client.dump(key)))

    def check(self, secrets: tuple[str, ...] = SECRETS) -> None:
        found = []
        for secret in secrets:
            for form_name, form in leak_forms(secret).items():
                for where, text in self.texts.items():
                    if form in text:
                        at = text.index(form)
                        found.append(f"{secret[:6]}… ({form_name}) in {where}: "
                                     f"…{text[max(0, at - 60): at + 60]!r}…")
        assert not found, "secret leaked:\n" + "\n".join(found)


def assert_masks_first(stdout: str, given: Iterable[str]) -> None:
    """Every `::add-mask::` precedes every other line, and every secret `given` is masked."""
    lines = stdout.splitlines()
    first_other = next((i for i, ln in enumerate(lines) if not MASK_LINE.match(ln)), len(lines))
    late = [ln for ln in lines[first_other:] if MASK_LINE.match(ln)]
    assert not late, f"add-mask after output began: {late}"
    masked = [MASK_LINE.sub("", ln) for ln in lines[:first_other]]
    expected = {secret for secret in SECRETS if any(secret in value for value in given)}
    assert expected, "the scenario passed none of the distinctive secrets"
    missing = [s for s in expected if not any(s in mask for mask in masked)]
    assert not missing, f"not masked first: {missing}"


# --- scenario plumbing ---------------------------------------------------------------------------


@dataclass
class Ctx:
    emu: Emulator
    tmp: Path
    request: pytest.FixtureRequest
    runs: int = 0

    def inputs(self, **overrides: str) -> dict[str, str]:
        values = {"api-key": LEAK_KEY, "user-id": USER, "project-id": PROJECT,
                  "upload-id": UPLOAD, "api-url": self.emu.url, "ledger": "none",
                  "github-token": LEAK_TOKEN, "timeout": "1", "retries": "0",
                  "rate-limit-interval": "1", "max-wait": "30"}
        values.update(overrides)
        return values

    def run(self, sweep: LeakSweep, expect: int, *, github: bool = True,
            env: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
            **overrides: str) -> ActionRun:
        overrides.update(inputs or {})
        self.runs += 1
        tmp = self.tmp / f"run{self.runs}"
        args: list[str] = []
        if not github:
            tmp.mkdir(parents=True)
            args = ["--json", "--dotenv", str(tmp / "out.env"), "--summary-file",
                    str(tmp / "summary.md"), "--output-file", str(tmp / "outputs.txt")]
        run = run_action(tmp, self.inputs(**overrides), env=env, args=args, github=github)
        assert run.exit_code == expect, run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr
        if github:
            secret_inputs = ("api-key", "github-token", "ledger", "api-url", "file-url")
            given = self.inputs(**overrides)
            assert_masks_first(run.stdout, [
                *(given.get(name, "") for name in secret_inputs),
                *(v for k, v in (env or {}).items() if k.endswith(("KEY", "TOKEN", "LEDGER")))])
        sweep.add_run(run)
        return run


Scenario = Callable[[Ctx, LeakSweep], None]
SCENARIOS: dict[str, Scenario] = {}


def scenario(name: str) -> Callable[[Scenario], Scenario]:
    def register(fn: Scenario) -> Scenario:
        SCENARIOS[name] = fn
        return fn
    return register


# - success and dry run

@scenario("success, file ledger, GitHub")
def _success(ctx: Ctx, sweep: LeakSweep) -> None:
    ledger = ctx.tmp / "ledger.json"
    run = ctx.run(sweep, 0, ledger=f"file://{ledger}", env={"RUNNER_DEBUG": "1"})
    assert run.outputs["status"] == "triggered"
    sweep.add("file ledger", ledger.read_text())


@scenario("success, plain CI: --json --dotenv --summary-file --output-file")
def _success_plain(ctx: Ctx, sweep: LeakSweep) -> None:
    run = ctx.run(sweep, 0, github=False)
    assert json.loads(run.stdout.strip().splitlines()[-1])["status"] == "triggered"


@scenario("dry run, both faces")
def _dry_run(ctx: Ctx, sweep: LeakSweep) -> None:
    ctx.run(sweep, 0, inputs={"dry-run": "true"})
    ctx.run(sweep, 0, github=False, inputs={"dry-run": "true"})


# - each HTTP error, including a server that echoes the key back

@scenario("HTTP 400/401/403/404 from the emulator")
def _http_errors(ctx: Ctx, sweep: LeakSweep) -> None:
    demo = ctx.emu.demo
    ctx.run(sweep, 4, inputs={"upload-id": PROCESSING})  # 400 no URL yet
    ctx.emu.add_account(USER, "some-other-key-value", [])
    ctx.run(sweep, 3, inputs={"user-id": USER})  # 401: wrong key for this user
    ctx.run(sweep, 3, inputs={"user-id": "65de00000000000000000eff"})  # 401 invalid user
    ctx.emu.add_account(USER, LEAK_KEY, [{"projectId": PROJECT, "uploads": [
        {"uploadId": UPLOAD, "ready": True}, {"uploadId": PROCESSING, "ready": False}]}])
    ctx.run(sweep, 3, inputs={"project-id": demo.project_id})  # 403 someone else's project
    ctx.run(sweep, 4, inputs={"project-id": "65de00000000000000000eee"})  # 404 project
    ctx.run(sweep, 4, inputs={"upload-id": "65de00000000000000000eee"})  # 404 upload


@scenario("hostile server echoing the key in every encoding")
def _echo(ctx: Ctx, sweep: LeakSweep) -> None:
    echoes = " ".join(f"[{form}]" for secret in (LEAK_KEY, LEAK_TOKEN)
                      for form in echo_forms(secret))
    for status, code in ((401, 3), (403, 3), (404, 4), (400, 4), (500, 6), (415, 6), (418, 6)):
        ctx.emu.fault(path="distribute-file", status=status,
                      body=json.dumps({"message": f"bad key {echoes}"}))
        ctx.run(sweep, code)
    ctx.emu.fault(path="distribute-file", status=502, content_type="text/html",
                  body=f"<html><body><pre>apiKey={LEAK_KEY}&t={echoes}</pre></body></html>")
    ctx.run(sweep, 6)
    ctx.emu.fault(path="distribute-file", status=200,
                  body=json.dumps({"message": f"ok {echoes}", "apiKey": LEAK_KEY}))
    ctx.run(sweep, 0, github=False)
    ctx.emu.fault(path="distribute-file", status=302,
                  headers={"Location": f"http://u:{LEAK_KEY}@127.0.0.2:9/?k={LEAK_KEY}"})
    ctx.run(sweep, 6)


@scenario("rate limited until max-wait runs out")
def _rate_limited(ctx: Ctx, sweep: LeakSweep) -> None:
    ctx.emu.configure(interval=600)
    ctx.run(sweep, 0)  # takes the window
    ctx.run(sweep, 5, inputs={"max-wait": "5"})


# - network errors

@scenario("network errors: timeout, refused, reset, cut off")
def _network(ctx: Ctx, sweep: LeakSweep) -> None:
    ctx.emu.fault(path="distribute-file", delay=2.5)
    ctx.run(sweep, 6)
    ctx.run(sweep, 6, inputs={"api-url": f"http://127.0.0.1:{closed_port()}/pixelStripeApi"})
    ctx.emu.fault(path="distribute-file", drop="before_response")
    ctx.run(sweep, 6)
    ctx.emu.fault(path="distribute-file", status=200, drop="mid_body",
                  body=json.dumps({"message": LEAK_KEY * 3}))
    ctx.run(sweep, 6, github=False)


# - invalid inputs carrying the secrets in odd shapes

@scenario("invalid inputs that contain the secrets")
def _invalid(ctx: Ctx, sweep: LeakSweep) -> None:
    shapes = [f"{LEAK_KEY} {LEAK_KEY}", f'"{LEAK_KEY}"', f"{LEAK_KEY}\n{LEAK_KEY}",
              f"{LEAK_KEY}\u200b", f"${{{{ {LEAK_KEY} }}}}", f"<{LEAK_KEY}>"]
    for shape in shapes:
        ctx.run(sweep, 2, inputs={"api-key": shape})
        ctx.run(sweep, 2, github=False, inputs={"api-key": shape, "github-token": shape})
    # Secrets pasted into the wrong input.
    ctx.run(sweep, 2, inputs={"user-id": LEAK_KEY, "project-id": LEAK_TOKEN})
    ctx.run(sweep, 2, inputs={"api-url": f"https://x-access-token:{LEAK_TOKEN}@api.streampixel.io/"})
    ctx.run(sweep, 2, inputs={"ledger": f"redis://:{REDIS_PASSWORD} @127.0.0.1/0"})
    ctx.run(sweep, 2, inputs={"timeout": LEAK_KEY, "retries": LEAK_TOKEN})


# - ledger errors with a token or password

@scenario("ledger errors with credentials")
def _ledger_errors(ctx: Ctx, sweep: LeakSweep) -> None:
    port = closed_port()
    ctx.run(sweep, 7, ledger=f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0")
    ctx.run(sweep, 7, ledger=f"redis://user:{urllib.parse.quote(REDIS_PASSWORD)}@127.0.0.1:"
                             f"{port}/0?socket_timeout=1", github=False)
    server: RedisServer = ctx.request.getfixturevalue("redis_server_auth")
    ctx.run(sweep, 7, ledger=server.url(password=LEAK_TOKEN))  # wrong password
    ctx.run(sweep, 7, ledger=f"git+http://ledger-user:{GIT_PASSWORD}@127.0.0.1:{port}/l.git")
    env = {"GITHUB_REPOSITORY": "octo/game", "GITHUB_SERVER_URL": f"http://127.0.0.1:{port}"}
    ctx.run(sweep, 7, ledger="github", env=env)
    ctx.run(sweep, 0, ledger="auto", env=env)  # degraded to none, with a warning


AUDIT_SITE = """
import os, sys

_LOG = os.environ.get("SPD_AUDIT_LOG")
_EVENTS = ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.forkpty",
           "os.system", "os.spawn", "pty.spawn")


def _audit(event, args):
    if _LOG and event in _EVENTS:
        with open(_LOG, "a") as log:
            log.write(f"{event} {args!r}\\n")


sys.addaudithook(_audit)
"""


def process_auditor(directory: Path) -> dict[str, str]:
    """Environment for a run whose interpreter reports every process it starts (an audit hook
    installed by `sitecustomize` before the program runs) to `directory/processes.log`."""
    directory.mkdir()
    (directory / "sitecustomize.py").write_text(AUDIT_SITE)
    return {"PYTHONPATH": str(directory),
            "SPD_AUDIT_LOG": str(directory / "processes.log")}


@scenario("ledger passwords with an unencoded `/`; no process, the credential only in a header")
def _unencoded(ctx: Ctx, sweep: LeakSweep) -> None:
    from support.git_server import start_git_http_server

    server = start_git_http_server(ctx.tmp / "git", username="ci-bot", password=SLASH_GIT[0],
                                   log=True)
    # A `git` first on PATH that only records that it ran: the ledger must never run one.
    shim, ran = ctx.tmp / "shim", ctx.tmp / "git-ran.log"
    shim.mkdir()
    (shim / "git").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> "{ran}"\nexit 1\n')
    (shim / "git").chmod(0o755)
    env = {"PATH": f"{shim}:{os.environ['PATH']}", **process_auditor(ctx.tmp / "audit")}
    try:
        for spec in (f"redis://:{SLASH_REDIS[0]}@127.0.0.1:{closed_port()}/0",
                     f"git+http://ci-bot:{SLASH_GIT[0]}@127.0.0.1:{server.port}/ledger.git"):
            for github in (True, False):
                run = ctx.run(sweep, 2, ledger=spec, github=github, env=env)
                assert "not percent-encoded" in run.stdout + run.stderr
        assert server.requests() == []  # the unencoded URL was refused before any request
        run = ctx.run(sweep, 0, ledger=server.spec(), env=env)  # percent-encoded: it works
        assert run.outputs["ledger"].startswith("git+http://127.0.0.1:"), run.outputs
    finally:
        server.stop()
    assert not ran.exists(), ran.read_text()
    processes = ctx.tmp / "audit" / "processes.log"
    assert not processes.exists(), processes.read_text()
    received = server.requests()
    assert {str(r["path"]).rsplit("/", 1)[1] for r in received} >= {
        "git-upload-pack", "git-receive-pack"}, "the run never pushed"
    expected = "Basic " + base64.b64encode(f"ci-bot:{SLASH_GIT[0]}".encode()).decode()
    for request in received:
        headers = dict(request["headers"])  # type: ignore[call-overload]
        assert headers.pop("Authorization") == expected
        sweep.add("git server requests, all but the Authorization header", json.dumps(
            [request["method"], request["path"], headers]) + base64.b64decode(
            str(request["body"])).decode(errors="replace"))
    sweep.add_git_repo(server.repo_path())


@scenario("github-token offered to a git host named in the ledger")
def _foreign_git_host(ctx: Ctx, sweep: LeakSweep) -> None:
    with contextlib.contextmanager(recording_server)() as server:
        for ledger in (f"git+http://ci-bot@127.0.0.1:{server.port}/ledger.git",
                       f"git+http://127.0.0.1:{server.port}/ledger.git"):
            run = run_action(ctx.tmp / f"foreign{ctx.runs}", ctx.inputs(ledger=ledger),
                             env={"GITHUB_SERVER_URL": f"https://127.0.0.1:{server.port}"})
            ctx.runs += 1
            assert "Traceback" not in run.stdout + run.stderr
            sweep.add_run(run)
        received = server.snapshot()[1]
    assert received, "git never reached the capture server"
    for request in received:
        for name, value in request.headers.items():
            decoded = value
            if value.lower().startswith("basic "):
                decoded = base64.b64decode(value.split()[1]).decode(errors="replace")
            sweep.add(f"capture server {name}", f"{value} {decoded}\n")


@scenario("redis ledger with a password stores no secret")
def _redis_state(ctx: Ctx, sweep: LeakSweep) -> None:
    server: RedisServer = ctx.request.getfixturevalue("redis_server_auth")
    run = ctx.run(sweep, 0, ledger=server.url(db=3))
    assert run.outputs["ledger"].startswith("redis://"), run.outputs
    client = redis.Redis(host=server.host, port=server.port, db=3, password=server.password)
    assert list(client.scan_iter("*")), "the ledger stored nothing"
    sweep.add_redis(client)


@scenario("git ledgers with a token and a password store no secret")
def _git_state(ctx: Ctx, sweep: LeakSweep) -> None:
    from support.git_server import start_git_http_server

    # `github` talks to GITHUB_SERVER_URL with the token as the Basic-auth password.
    gh = start_git_http_server(ctx.tmp / "gh", username="x-access-token", password=LEAK_TOKEN,
                               repos=("octo/game.git",))
    plain = start_git_http_server(ctx.tmp / "git", password=GIT_PASSWORD)
    refused = start_git_http_server(ctx.tmp / "ro", password=GIT_PASSWORD, refuse_push=True)
    try:
        env = {"GITHUB_REPOSITORY": "octo/game", "GITHUB_SERVER_URL": gh.base_url}
        for ledger in ("github", "auto"):
            run = ctx.run(sweep, 0, ledger=ledger, env=env)
            assert run.outputs["ledger"].startswith("github"), run.outputs
        run = ctx.run(sweep, 0, ledger=plain.spec())
        assert run.outputs["ledger"].startswith("git+http"), run.outputs
        ctx.run(sweep, 7, ledger=refused.spec())
        ctx.run(sweep, 7, ledger=plain.spec(password="wrong-" + GIT_PASSWORD))
    finally:
        for server in (gh, plain, refused):
            server.stop()
    for repo in (gh.repo_path("octo/game.git"), plain.repo_path()):
        refs = subprocess.run(["git", "-C", str(repo), "for-each-ref"], capture_output=True,
                              text=True, check=True).stdout
        assert refs.strip(), f"no ledger ref in {repo}"
        sweep.add_git_repo(repo)


@scenario("upload with a presigned file URL, and reserve")
def _upload(ctx: Ctx, sweep: LeakSweep) -> None:
    upload = {"command": "upload", "file-url": FILE_URL, "upload-id": ""}
    ledger = ctx.tmp / "upload-ledger.json"
    run = ctx.run(sweep, 0, inputs=upload | {"ledger": f"file://{ledger}"},
                  env={"RUNNER_DEBUG": "1"})
    assert run.outputs["status"] == "uploaded" and run.outputs["upload-id"]
    ctx.run(sweep, 0, github=False, inputs=upload | {"auto-release": "false"})
    ctx.run(sweep, 0, inputs=upload | {"dry-run": "true"})
    sweep.add("file ledger", ledger.read_text())
    # A server that quotes the link back, in every encoding, on every kind of answer.
    echoes = " ".join(f"[{form}]" for secret in (FILE_URL, FILE_QUERY, FILE_SIGNATURE)
                      for form in echo_forms(secret))
    for status, code in ((400, 2), (401, 3), (404, 4), (500, 6), (200, 0)):
        ctx.emu.fault(path="upload-file", status=status,
                      body=json.dumps({"message": f"fileUrl {echoes}", "fileUrl": FILE_URL}))
        ctx.run(sweep, code, inputs=upload, github=status != 200)
    # Refused before any call: a sharing page, and a link pasted with its signature twice.
    ctx.run(sweep, 2, inputs=upload | {"file-url": f"https://drive.google.com/x?{FILE_QUERY}"})
    ctx.run(sweep, 2, inputs=upload | {"file-url": f"{FILE_URL} {FILE_SIGNATURE}"})
    ctx.run(sweep, 2, github=False, inputs=upload | {"file-url": f"ftp://h/b.zip?{FILE_QUERY}"})
    ctx.run(sweep, 0, inputs={"command": "reserve", "upload-id": "", "project-id": ""})


@scenario("cancelled by SIGTERM while waiting")
def _cancelled(ctx: Ctx, sweep: LeakSweep) -> None:
    path = ctx.tmp / "ledger.json"
    held = open_ledger(f"file://{path}")
    held.reserve(account_key(ctx.emu.url, USER), 60)
    live = spawn_action(ctx.tmp / "cancel", ctx.inputs(**{
        "ledger": f"file://{path}", "rate-limit-interval": "60", "max-wait": "600"}))
    live.wait_for("Waiting for the account's rate-limit slot")
    live.process.send_signal(signal.SIGTERM)
    run = finish_action(live, timeout=30)
    assert run.exit_code == 143
    assert_masks_first(run.stdout, [LEAK_KEY])
    sweep.add_run(run)
    sweep.add("file ledger", path.read_text())


@pytest.fixture
def ctx(emulator: Emulator, tmp_path: Path, request: pytest.FixtureRequest) -> Ctx:
    emulator.configure(interval=0)
    emulator.add_account(USER, LEAK_KEY, [{"projectId": PROJECT, "uploads": [
        {"uploadId": UPLOAD, "ready": True}, {"uploadId": PROCESSING, "ready": False}]}])
    return Ctx(emulator, tmp_path, request)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_no_secret_leaks(ctx: Ctx, name: str) -> None:
    sweep = LeakSweep()
    SCENARIOS[name](ctx, sweep)
    assert sweep.texts
    sweep.check()


# --- the sweep itself must catch leaks ---------------------------------------------------------


@pytest.mark.parametrize("form", list(leak_forms(LEAK_KEY)))
def test_sweep_catches_every_form(form: str) -> None:
    sweep = LeakSweep()
    sweep.add("stderr", f"some text {leak_forms(LEAK_KEY)[form]} more text")
    with pytest.raises(AssertionError, match="secret leaked"):
        sweep.check()


def test_sweep_catches_basic_auth_of_the_token() -> None:
    header = base64.b64encode(f"x-access-token:{LEAK_TOKEN}".encode()).decode()
    sweep = LeakSweep()
    sweep.add("stdout", f"Authorization: Basic {header}")
    with pytest.raises(AssertionError, match="secret leaked"):
        sweep.check()


# --- exception text (in-process) -------------------------------------------------------------


def test_a_secret_with_a_lone_surrogate_is_masked_in_every_form() -> None:
    """A value decoded from a JSON escape (`\\ud800`) can hold a surrogate that surrogateescape
    cannot turn back into a byte; its other encodings are masked all the same."""
    secret = "sk-\ud800-from-a-json-escape"
    redact.register(secret)
    raw = secret.encode("utf-8", "surrogatepass")
    for form in (secret, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw),
                 base64.b64encode(raw).decode()):
        assert redact.scrub(f"[{form}]") == "[***]", form


@pytest.fixture
def _registered() -> None:
    for secret in SECRETS:
        redact.register(secret)


@pytest.mark.usefixtures("_registered")
def test_exception_text_of_client_errors_carries_no_secret(ctx: Ctx) -> None:
    echoes = " ".join(echo_forms(LEAK_KEY))
    client = StreampixelClient(ctx.emu.url, timeout=1)
    sweep = LeakSweep()
    for fault in ({"status": 401, "body": json.dumps({"message": echoes})},
                  {"status": 500, "body": f"<p>{echoes}</p>", "content_type": "text/html"},
                  {"status": 429, "body": json.dumps({"message": f"{echoes} Try again in 1s"})},
                  {"drop": "before_response"}, {"delay": 2}):
        ctx.emu.fault(path="distribute-file", **fault)
        with pytest.raises(DistributeError) as info:
            client.distribute(api_key=LEAK_KEY, user_id=USER, project_id=PROJECT,
                              upload_id=UPLOAD)
        exc = info.value
        sweep.add(f"exception {fault}", "\n".join([
            str(exc), repr(exc), exc.detail, exc.title, exc.hint, exc.server_message or "",
            "".join(traceback.format_exception(exc)),
        ]))
    sweep.check()


def test_masks_come_first_even_with_stderr_merged(emulator: Emulator, tmp_path: Path) -> None:
    """With stdout and stderr on one pipe (as the runner reads them), masks still come first."""
    env = base_env(tmp_path)
    env.update({"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": str(tmp_path / "o"),
                "GITHUB_STEP_SUMMARY": str(tmp_path / "s"), "INPUT_API-KEY": f" {LEAK_KEY}\n",
                "INPUT_GITHUB-TOKEN": LEAK_TOKEN, "INPUT_USER-ID": "not-an-id",
                "INPUT_LEDGER": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{closed_port()}/0",
                "RUNNER_DEBUG": "1"})
    done = subprocess.run(product.command(), env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stdout
    assert_masks_first(done.stdout, [LEAK_KEY, LEAK_TOKEN, REDIS_PASSWORD])
    sweep = LeakSweep()
    sweep.add("merged output", "\n".join(ln for ln in done.stdout.splitlines()
                                         if not MASK_LINE.match(ln)))
    sweep.check()


def test_listener_log_never_shows_an_unencoded_ledger_password(tmp_path: Path) -> None:
    """The listener validates the ledger like the action: refused (exit 2) with nothing of the
    password in its JSON log. (It used to fail later, in redis-py, quoting both halves.)"""
    from support.listener import listener_env

    env = listener_env({"STREAMPIXEL_API_KEY": LEAK_KEY, "STREAMPIXEL_USER_ID": USER,
                        "STREAMPIXEL_LEDGER": f"redis://:{SLASH_REDIS[0]}@127.0.0.1:"
                                              f"{closed_port()}/0"})
    done = subprocess.run(
        product.command("listen", "--port", "0", "--queue", str(tmp_path / "q.sqlite3")),
        env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    sweep = LeakSweep()
    sweep.add("listener log", done.stdout + done.stderr)
    sweep.check()
    assert done.returncode == 2, done.stdout + done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines() + done.stderr.splitlines()
               if line.startswith("{")]
    assert any("percent-encoded" in json.dumps(r) for r in records), records
