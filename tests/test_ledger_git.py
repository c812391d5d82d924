"""The git ledger against real git servers: a bare repository over file:// and `git http-backend`
behind Basic auth (tests/support/git_server.py). Backend-neutral semantics are in the contract
suite (test_ledger_contract.py, test_ledger_race.py); this file covers what is git-specific:
spec parsing, credentials, refusals, the ref's shape and history, TLS, proxies and redirects,
that no process is ever started, and a 50-process storm.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streampixel_distribute import redact
from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger import LedgerContext, open_ledger
from streampixel_distribute.ledger.git import GitLedger
from streampixel_distribute.ledger.git_http import MAX_RESPONSE_BYTES
from streampixel_distribute.ledger.git_spec import DEFAULT_REF_PREFIX, GITHUB_USERNAME, parse_spec
from support.git_server import GitHTTPServer
from support.git_server import git_env as server_git_env
from support.hostile import RecordingServer, closed_port, recording_server
from support.httpserver import QuietHandler, serving
from support.proxy import tunnel_proxy
from support.tls import LoopbackCA, make_test_ca
from support.tools import missing

INTERVAL = 120.0
KEY = "sp-0123456789abcdef0123456789abcdef"
TOKEN = "ghs_TESTtoken_5f1d9c2b7a4e8f30"


class Clock:
    """A settable `now` so every expected slot is exact."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.value = start

    def __call__(self) -> float:
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    yield
    redact.clear()


@pytest.fixture(params=["file", "http"])
def served(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """A ledger spec on each kind of real server, and the bare repository behind it."""
    if request.param == "file":
        repo: Path = request.getfixturevalue("bare_git_repo")
        return f"git+file://{repo}", repo
    server: GitHTTPServer = request.getfixturevalue("git_http_server")
    return server.spec(), server.repo_path()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", f"--git-dir={repo}", *args],
        capture_output=True, text=True, check=True, env=server_git_env(),
    )  # fmt: skip
    return done.stdout.strip()


def reserve_once(spec: str, context: LedgerContext) -> float:
    ledger = GitLedger(spec, context)
    try:
        return ledger.reserve(KEY, INTERVAL)
    finally:
        ledger.close()


def all_text(error: LedgerError) -> str:
    return " ".join([str(error), error.detail, error.hint, error.title, repr(error.args)])


# -- spec parsing -------------------------------------------------------------------------------


def test_github_spec_is_this_repository_with_the_job_token() -> None:
    context = LedgerContext(
        environ={"GITHUB_SERVER_URL": "https://github.example.com", "GITHUB_REPOSITORY": "o/r"},
        github_token=TOKEN,
    )
    target = parse_spec("github", context)
    assert target.url == "https://github.example.com/o/r.git"
    assert (target.username, target.password) == (GITHUB_USERNAME, TOKEN)
    assert target.ref is None
    assert target.ref_prefix == DEFAULT_REF_PREFIX
    assert TOKEN not in target.display


def test_github_url_spec_names_a_shared_repository_on_github_by_default() -> None:
    target = parse_spec(
        "github://acme/ledger?ref-prefix=refs/notes/rate", LedgerContext(github_token=TOKEN)
    )
    assert target.url == "https://github.com/acme/ledger.git"
    assert target.ref_prefix == "refs/notes/rate"
    assert target.display == "github://acme/ledger"


def test_generic_url_takes_credentials_from_userinfo_and_strips_them() -> None:
    target = parse_spec(
        "git+https://bot:s3cr%40t-value@git.example.org/team/ledger.git?ref=refs/notes/one",
        LedgerContext(github_token=TOKEN),
    )
    assert target.url == "https://git.example.org/team/ledger.git"
    assert (target.username, target.password) == ("bot", "s3cr@t-value")
    assert target.ref == "refs/notes/one"
    assert "s3cr" not in target.display


def test_github_token_goes_only_to_the_github_ledgers() -> None:
    """Not to a `git+https` URL, even one on the GitHub server: only `github`/`github://` use it."""
    context = LedgerContext(
        environ={"GITHUB_SERVER_URL": "https://github.com"}, github_token=TOKEN
    )
    for spec in ("git+https://github.com/acme/ledger.git",
                 "git+https://gitlab.example.org/acme/ledger.git"):
        target = parse_spec(spec, context)
        assert (target.username, target.password) == ("", "")
    named = parse_spec("git+https://ci-bot@gitlab.example.org/acme/ledger.git", context)
    assert (named.username, named.password) == ("ci-bot", "")
    assert parse_spec("github://acme/ledger", context).password == TOKEN


@pytest.mark.parametrize("server", [
    "http://github.example.com", "ftp://github.example.com", "https://u:pw-in-url@github.com",
    "https://", "https://github.example.com?x=1",
])
def test_the_github_ledger_needs_an_https_github_server(server: str) -> None:
    context = LedgerContext(environ={"GITHUB_SERVER_URL": server, "GITHUB_REPOSITORY": "o/r"},
                            github_token=TOKEN)
    for spec in ("github", "github://acme/ledger"):
        with pytest.raises(LedgerError) as caught:
            GitLedger(spec, context)
        assert "GITHUB_SERVER_URL" in caught.value.detail
        assert "https://" in caught.value.hint
        assert "pw-in-url" not in all_text(caught.value)


@pytest.mark.parametrize(
    ("spec", "environ", "token", "fix"),
    [
        ("github", {}, TOKEN, "github://owner/repo"),
        ("github", {"GITHUB_REPOSITORY": "o/r"}, "", "contents: write"),
        ("github://only-owner", {}, TOKEN, "github://owner/repo"),
        ("git+file://relative/path.git", {}, "", "three slashes"),
        ("git+https:///no-host.git", {}, "", "git+https://host"),
        ("git+file:///r.git?ref=refs/notes/a..b", {}, "", "full ref name"),
        ("git+file:///r.git?ref=heads/main", {}, "", "full ref name"),
        ("git+file:///r.git?timeout=soon", {}, "", "seconds"),
        ("git+file:///r.git?branch=x", {}, "", "?ref=refs/"),
    ],
)
def test_unusable_specs_are_refused_with_a_fix(
    spec: str, environ: dict[str, str], token: str, fix: str
) -> None:
    with pytest.raises(LedgerError) as caught:
        GitLedger(spec, LedgerContext(environ=environ, github_token=token))
    assert fix in caught.value.hint


# -- reservations on real servers ---------------------------------------------------------------


def test_reserve_and_peek(served: tuple[str, Path], clock: Clock) -> None:
    spec, _repo = served
    ledger = open_ledger(spec, LedgerContext(now=clock))
    try:
        assert ledger.peek(KEY, INTERVAL) == clock.value  # empty ledger: free now
        first = ledger.reserve(KEY, INTERVAL)
        assert first == clock.value
        assert ledger.peek(KEY, INTERVAL) == first + INTERVAL
        assert ledger.peek(KEY, INTERVAL) == first + INTERVAL  # peeking takes nothing
        assert ledger.reserve(KEY, INTERVAL) == first + INTERVAL
        late = first + 10 * INTERVAL
        assert ledger.reserve(KEY, INTERVAL, not_before=late) == late
        clock.value = late + 5 * INTERVAL  # long idle: the next slot is simply now
        assert ledger.reserve(KEY, INTERVAL) == clock.value
        assert ledger.peek("sp-other-key", INTERVAL) == clock.value
    finally:
        ledger.close()


def test_state_is_one_parentless_commit_in_a_notes_ref(
    served: tuple[str, Path], clock: Clock
) -> None:
    spec, repo = served
    ledger = GitLedger(spec, LedgerContext(now=clock))
    for _ in range(25):
        ledger.reserve(KEY, INTERVAL)
        clock.value += 1
    ledger.close()
    ref = f"{DEFAULT_REF_PREFIX}/{KEY}"
    assert git(repo, "for-each-ref", "--format=%(refname)") == ref  # no branch, no tag
    assert git(repo, "rev-list", "--count", ref) == "1"  # history never grows
    state = json.loads(git(repo, "show", f"{ref}:ledger.json"))
    assert state["version"] == 1
    assert state["slots"][KEY]["next_free"] == 1_800_000_000.0 + 25 * INTERVAL
    assert "reserve " + KEY in git(repo, "log", "-1", "--format=%s", ref)


def test_one_exact_ref_can_hold_several_keys(bare_git_repo: Path, clock: Clock) -> None:
    spec = f"git+file://{bare_git_repo}?ref=refs/notes/ci/rate"
    ledger = GitLedger(spec, LedgerContext(now=clock))
    assert ledger.reserve("a", INTERVAL) == clock.value
    assert ledger.reserve("b", 30.0) == clock.value
    assert ledger.reserve("a", INTERVAL) == clock.value + INTERVAL
    ledger.close()
    assert git(bare_git_repo, "for-each-ref", "--format=%(refname)") == "refs/notes/ci/rate"
    state = json.loads(git(bare_git_repo, "show", "refs/notes/ci/rate:ledger.json"))
    assert set(state["slots"]) == {"a", "b"}


def test_unusual_keys_get_a_hashed_ref_name(bare_git_repo: Path, clock: Clock) -> None:
    ledger = GitLedger(f"git+file://{bare_git_repo}", LedgerContext(now=clock))
    assert ledger.reserve("weird key/../x", INTERVAL) == clock.value
    assert ledger.peek("weird key/../x", INTERVAL) == clock.value + INTERVAL
    ledger.close()
    ref = git(bare_git_repo, "for-each-ref", "--format=%(refname)")
    assert ref.startswith(DEFAULT_REF_PREFIX + "/k-")


def test_a_lost_race_is_read_again_and_retried(bare_git_repo: Path, clock: Clock) -> None:
    """Another job updates the ref between our read and our push: our push must fail the lease,
    and the retry must build on the other job's reservation instead of overwriting it."""
    spec = f"git+file://{bare_git_repo}"
    rival = GitLedger(spec, LedgerContext(now=clock))
    rival_slots: list[float] = []

    ledger = GitLedger(spec, LedgerContext(now=clock))
    write = ledger._store.write

    def interrupted(*args: Any) -> None:
        if not rival_slots:
            rival_slots.append(rival.reserve(KEY, INTERVAL))
        write(*args)

    ledger._store.write = interrupted  # type: ignore[method-assign,assignment]
    slept: list[float] = []
    ledger.sleep = slept.append
    slot = ledger.reserve(KEY, INTERVAL)
    assert rival_slots == [clock.value]
    assert slot == clock.value + INTERVAL
    assert ledger.attempts == 2
    assert len(slept) == 1  # one backoff between the two attempts
    assert ledger.peek(KEY, INTERVAL) == clock.value + 2 * INTERVAL
    ledger.close()
    rival.close()


def test_endless_lost_races_end_in_a_ledger_error(bare_git_repo: Path, clock: Clock) -> None:
    spec = f"git+file://{bare_git_repo}"
    rival = GitLedger(spec, LedgerContext(now=clock))

    ledger = GitLedger(spec, LedgerContext(now=clock))
    write = ledger._store.write

    def always_late(*args: Any) -> None:
        rival.reserve(KEY, INTERVAL)
        write(*args)

    ledger._store.write = always_late  # type: ignore[method-assign,assignment]
    ledger.max_attempts = 3
    slept: list[float] = []
    ledger.sleep = slept.append
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "3 attempts" in caught.value.detail
    assert caught.value.hint
    assert len(slept) == 3 and all(s >= 0 for s in slept)
    # The rival's three reservations all stand; ours took nothing.
    assert rival.peek(KEY, INTERVAL) == clock.value + 3 * INTERVAL
    ledger.close()
    rival.close()


@pytest.mark.parametrize("points_at", ["commit", "blob"])
def test_a_foreign_ref_is_never_overwritten(bare_git_repo: Path, tmp_path: Path,
                                            points_at: str) -> None:
    """A commit without ledger.json, or a ref to a bare blob (as `git notes` tools can leave)."""
    work = tmp_path / "work"
    subprocess.run(["git", "init", "-q", str(work)], check=True, env=server_git_env())
    env = dict(server_git_env(), GIT_AUTHOR_NAME="u", GIT_AUTHOR_EMAIL="u@example.org",
               GIT_COMMITTER_NAME="u", GIT_COMMITTER_EMAIL="u@example.org")
    subprocess.run(["git", "-C", str(work), "commit", "-q", "--allow-empty", "-m", "mine"],
                   check=True, env=env)
    subprocess.run(["git", "-C", str(work), "push", "-q", str(bare_git_repo),
                    "HEAD:refs/notes/mine"], check=True, env=env)
    if points_at == "blob":
        blob = store_object(bare_git_repo, "blob", b'{"version": 1}')
        git(bare_git_repo, "update-ref", "refs/notes/mine", blob)
    before = git(bare_git_repo, "rev-parse", "refs/notes/mine")
    ledger = GitLedger(f"git+file://{bare_git_repo}?ref=refs/notes/mine", LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "not a streampixel-distribute ledger" in caught.value.detail
    assert git(bare_git_repo, "rev-parse", "refs/notes/mine") == before
    ledger.close()


def store_object(repo: Path, kind: str, data: bytes) -> str:
    """Write one object into `repo` with git itself; its id."""
    done = subprocess.run(["git", f"--git-dir={repo}", "hash-object", "-w", "-t", kind,
                           "--stdin", "--literally"],
                          input=data, capture_output=True, check=True, env=server_git_env())
    return done.stdout.decode().strip()


def commit_state(repo: Path, ref: str, data: bytes) -> None:
    """Point `ref` at a parentless commit whose ledger.json holds `data`, as git would."""
    blob = store_object(repo, "blob", data)
    tree = subprocess.run(["git", f"--git-dir={repo}", "mktree"],
                          input=f"100644 blob {blob}\tledger.json\n", text=True,
                          capture_output=True, check=True, env=server_git_env()).stdout.strip()
    env = dict(server_git_env(), GIT_AUTHOR_NAME="u", GIT_AUTHOR_EMAIL="u@example.org",
               GIT_COMMITTER_NAME="u", GIT_COMMITTER_EMAIL="u@example.org")
    commit = subprocess.run(["git", f"--git-dir={repo}", "commit-tree", tree, "-m", "damaged"],
                            capture_output=True, text=True, check=True, env=env).stdout.strip()
    git(repo, "update-ref", ref, commit)


@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b'{"version": "two"}'],
                         ids=["not-json", "not-an-object", "bad-version"])
def test_a_damaged_ledger_file_gets_the_delete_the_ref_fix(
        served: tuple[str, Path], clock: Clock, damage: bytes) -> None:
    """Someone edited ledger.json by hand: the job says which ref to delete, and changes nothing."""
    spec, repo = served
    ref = f"{DEFAULT_REF_PREFIX}/{KEY}"
    commit_state(repo, ref, damage)
    before = git(repo, "rev-parse", ref)
    ledger = GitLedger(spec, LedgerContext(now=clock))
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    ledger.close()
    assert f"ledger.json in {ref}" in caught.value.detail
    assert "not valid ledger JSON" in caught.value.detail
    assert f"git push <repo> :{ref}" in caught.value.hint
    assert git(repo, "rev-parse", ref) == before
    git(repo, "update-ref", "-d", ref)  # the fix works: the next job starts afresh
    ledger = GitLedger(spec, LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    ledger.close()


def test_a_newer_format_is_refused(bare_git_repo: Path, clock: Clock) -> None:
    ledger = GitLedger(f"git+file://{bare_git_repo}", LedgerContext(now=clock))
    ledger.reserve(KEY, INTERVAL)
    # Write a version-2 state the way a future release would, through the same CAS.
    ref = ledger.ref_for(KEY)
    old, state = ledger._store.read(ref)
    state["version"] = 2
    ledger._store.write(ref, old, state, "a future release\n")
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "newer" in caught.value.detail
    ledger.close()


def test_close_leaves_nothing_behind_and_the_ledger_can_be_reused(
    served: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No private repository and no temporary file: what a read fetches stays in memory."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ledger = GitLedger(served[0], LedgerContext())
    first = ledger.reserve(KEY, INTERVAL)
    assert ledger.peek(KEY, INTERVAL) == first + INTERVAL
    ledger.close()
    ledger.close()  # twice is fine
    assert ledger.peek(KEY, INTERVAL) == first + INTERVAL  # and it can be used again
    ledger.close()
    assert list(scratch.iterdir()) == []


# -- GitHub forms, against a server that answers like GitHub (x-access-token + token) -----------


@pytest.fixture
def github_like(git_http_server_factory: Callable[..., GitHTTPServer]) -> GitHTTPServer:
    return git_http_server_factory(
        username=GITHUB_USERNAME, password=TOKEN, repos=("acme/app.git", "acme/shared-ledger.git")
    )


def test_github_spec_uses_this_repository_and_the_job_token(
    github_like: GitHTTPServer, clock: Clock
) -> None:
    environ = {"GITHUB_SERVER_URL": github_like.base_url, "GITHUB_REPOSITORY": "acme/app"}
    ledger = open_ledger("github", LedgerContext(environ=environ, github_token=TOKEN, now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    assert ledger.description == "github (acme/app) (refs/notes/streampixel-distribute/<key>)"
    ledger.close()
    assert git(github_like.repo_path("acme/app.git"), "rev-list", "--count",
               f"{DEFAULT_REF_PREFIX}/{KEY}") == "1"


def test_github_url_spec_uses_the_shared_repository(
    github_like: GitHTTPServer, clock: Clock
) -> None:
    environ = {"GITHUB_SERVER_URL": github_like.base_url, "GITHUB_REPOSITORY": "acme/app"}
    context = LedgerContext(environ=environ, github_token=TOKEN, now=clock)
    ledger = open_ledger("github://acme/shared-ledger", context)
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    assert ledger.reserve(KEY, INTERVAL) == clock.value + INTERVAL
    ledger.close()
    assert git(github_like.repo_path("acme/shared-ledger.git"), "for-each-ref",
               "--format=%(refname)") == f"{DEFAULT_REF_PREFIX}/{KEY}"
    assert git(github_like.repo_path("acme/app.git"), "for-each-ref") == ""


def test_a_git_url_on_the_github_server_gets_no_token_and_a_fix(
    github_like: GitHTTPServer, clock: Clock
) -> None:
    environ = {"GITHUB_SERVER_URL": github_like.base_url}
    spec = f"git+{github_like.repo_url('acme/shared-ledger.git')}"
    ledger = open_ledger(spec, LedgerContext(environ=environ, github_token=TOKEN, now=clock))
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "rejected the credentials" in caught.value.detail
    assert "github://owner/repo" in caught.value.hint
    ledger.close()


# -- the github-token goes to GITHUB_SERVER_URL over https and nowhere else ---------------------


@pytest.fixture
def capture() -> Iterator[RecordingServer]:
    """A loopback HTTP server that records every request's headers (and answers nonsense)."""
    yield from recording_server()


def token_sent(server: RecordingServer, token: str) -> list[str]:
    """The headers (decoded if Basic auth) of every request that carried `token`."""
    found = []
    for request in server.snapshot()[1]:
        for name, value in request.headers.items():
            text = value
            if value.lower().startswith("basic "):
                text = base64.b64decode(value.split()[1]).decode(errors="replace")
            if token in text:
                found.append(f"{request.path}: {name}: {text}")
    return found


def test_the_github_token_is_not_filled_in_for_a_user_name(capture: RecordingServer) -> None:
    """A ledger URL with a user and no password once got the job token as the password, so any
    git host named in the ledger received the workflow's token."""
    spec = f"git+http://ci-bot@127.0.0.1:{capture.port}/ledger.git"
    ledger = GitLedger(spec, LedgerContext(github_token=TOKEN))
    with contextlib.suppress(LedgerError):  # the capture server is no git server
        ledger.peek(KEY, INTERVAL)
    ledger.close()
    assert capture.snapshot()[1], "git never reached the capture server"
    assert token_sent(capture, TOKEN) == []


@pytest.mark.parametrize(("spec", "server"), [
    # A plain-http git URL on the GitHub server's host and port once got the token unencrypted.
    ("git+http://127.0.0.1:{port}/acme/ledger.git", "https://127.0.0.1:{port}"),
    # The same with real host names, through the capture server as the HTTP proxy.
    ("git+http://github.example.com/acme/ledger.git", "https://github.example.com"),
    # The `github` ledger itself, on a plain-http GitHub server URL.
    ("github", "http://github.example.com"),
])
def test_the_github_token_never_travels_over_plain_http(
    capture: RecordingServer, monkeypatch: pytest.MonkeyPatch, spec: str, server: str
) -> None:
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{capture.port}")
    environ = {"GITHUB_SERVER_URL": server.format(port=capture.port),
               "GITHUB_REPOSITORY": "acme/app"}
    with contextlib.suppress(LedgerError):  # refused, or the capture server is no git server
        reserve_once(spec.format(port=capture.port),
                     LedgerContext(environ=environ, github_token=TOKEN))
    assert token_sent(capture, TOKEN) == []


# -- failures: each a LedgerError with a fix, never a secret -----------------------------------


def test_wrong_password_is_refused_without_showing_it(git_http_server: GitHTTPServer) -> None:
    wrong = "wrong-pw-9d3e1b77c0"
    ledger = GitLedger(git_http_server.spec(password=wrong), LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    text = all_text(caught.value) + ledger.description
    assert "rejected the credentials" in caught.value.detail
    assert "token" in caught.value.hint
    assert wrong not in text
    assert git_http_server.password not in text
    assert redact.scrub(f"x {wrong} y") == "x *** y"  # registered, so logs are scrubbed too
    ledger.close()


def test_missing_credentials_are_refused(git_http_server: GitHTTPServer) -> None:
    ledger = GitLedger(f"git+{git_http_server.repo_url()}", LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.peek(KEY, INTERVAL)
    assert "rejected the credentials" in caught.value.detail
    ledger.close()


def test_a_token_that_cannot_push_gets_the_permissions_fix(
    git_http_server_readonly: GitHTTPServer, clock: Clock
) -> None:
    server = git_http_server_readonly
    ledger = GitLedger(server.spec(), LedgerContext(now=clock))
    assert ledger.peek(KEY, INTERVAL) == clock.value  # reading is allowed
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "cannot push" in caught.value.detail
    assert "permissions: contents: write" in caught.value.hint
    assert server.password not in all_text(caught.value)
    ledger.close()
    assert git(server.repo_path(), "for-each-ref") == ""


@pytest.mark.timeout(60)
def test_unreachable_server_fails_at_once(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ledger = GitLedger(f"git+http://u:pw-unreachable-77@127.0.0.1:{port}/ledger.git?timeout=20",
                       LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "cannot reach" in caught.value.detail
    assert "reachable" in caught.value.hint
    assert "pw-unreachable-77" not in all_text(caught.value)
    ledger.close()


DNS_PROBE = r"""
import json, os
from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger import LedgerContext, open_ledger
try:
    open_ledger(os.environ["SPD_SPEC"], LedgerContext()).reserve("sp-dns", 120.0)
except LedgerError as error:
    print(json.dumps([error.detail, error.hint]))
"""


def test_an_unresolvable_host_gets_the_dns_fix(tmp_path: Path) -> None:
    """In a network namespace with no interfaces: resolution fails locally, no packet leaves."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--net", "--", "true"], capture_output=True, check=False).returncode:
        missing("`unshare --net` is unavailable (needs root or user namespaces)")
    env = dict(os.environ, SPD_SPEC="git+https://u:pw-dns-4417@git.nonexistent.invalid/l.git")
    done = subprocess.run(["unshare", "--net", "--", sys.executable, "-c", DNS_PROBE], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    detail, hint = json.loads(done.stdout)
    assert "cannot resolve the host" in detail
    assert "DNS" in hint
    assert "pw-dns-4417" not in done.stdout + done.stderr


def test_missing_repository_gets_the_create_fix(
    git_http_server: GitHTTPServer, tmp_path: Path
) -> None:
    for spec in (git_http_server.spec("absent.git"), f"git+file://{tmp_path}/absent.git"):
        ledger = GitLedger(spec, LedgerContext())
        with pytest.raises(LedgerError) as caught:
            ledger.reserve(KEY, INTERVAL)
        assert "does not exist" in caught.value.detail, spec
        assert "Create the repository" in caught.value.hint
        ledger.close()


@pytest.mark.parametrize("hook_name", ["pre-receive", "update"])
def test_a_server_refusing_the_ref_update_is_reported(served: tuple[str, Path],
                                                      hook_name: str) -> None:
    """A pre-receive or update hook that says no: run by `git http-backend` over HTTP, and for
    file:// by the ledger itself, as git-receive-pack would; its words reach the message."""
    spec, repo = served
    hook = repo / "hooks" / hook_name
    hook.write_text("#!/bin/sh\necho 'notes are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    ledger = GitLedger(spec, LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "refused the update" in caught.value.detail
    assert "notes are frozen" in caught.value.detail
    assert "ref-prefix" in caught.value.hint
    assert ledger.attempts == 1
    ledger.close()
    assert git(repo, "for-each-ref") == ""


def test_a_hook_gets_no_secret_from_the_environment(
    bare_git_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """git+file runs the repository's hooks in this process's stead: they see PATH and GIT_DIR,
    never the job's API key or token."""
    monkeypatch.setenv("INPUT_API-KEY", "sk-hook-must-not-see-9c1d")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    seen = tmp_path / "hook-env"
    for name in ("pre-receive", "update", "post-receive"):
        hook = bare_git_repo / "hooks" / name
        hook.write_text(f"#!/bin/sh\necho {name} \"$@\" >> '{seen}'\nenv >> '{seen}'\n")
        hook.chmod(0o755)
    ledger = GitLedger(f"git+file://{bare_git_repo}", LedgerContext())
    ledger.reserve(KEY, INTERVAL)
    ledger.close()
    text = seen.read_text()
    assert "pre-receive" in text and f"update {DEFAULT_REF_PREFIX}/{KEY}" in text
    assert "post-receive" in text
    assert "GIT_DIR=" in text
    assert "sk-hook-must-not-see" not in text and TOKEN not in text


@pytest.mark.parametrize(
    ("hook_text", "detail", "hint"),
    [
        ("#!/bin/sh\nexec sleep 60\n", "did not answer within 0.5 s (update): the pre-receive "
         "hook ran too long", "raise `?timeout=`"),
        ("#!/nonexistent/interpreter\nexit 0\n", "git could not update", "read and write the "
         "repository"),
    ],
    ids=["hangs", "cannot-run"],
)
def test_a_hook_that_hangs_or_cannot_run_fails_the_update_with_a_fix(
        bare_git_repo: Path, hook_text: str, detail: str, hint: str) -> None:
    """git+file runs the repository's hooks itself: a hook that never ends is stopped at the
    ledger's timeout, and one that cannot start is named; the ref is left alone either way."""
    hook = bare_git_repo / "hooks" / "pre-receive"
    hook.write_text(hook_text)
    hook.chmod(0o755)
    ledger = GitLedger(f"git+file://{bare_git_repo}?timeout=0.5", LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    ledger.close()
    assert detail in caught.value.detail
    assert "pre-receive hook" in caught.value.detail
    assert hint in caught.value.hint
    assert git(bare_git_repo, "for-each-ref") == ""


def test_a_no_force_push_policy_is_reported_not_retried(served: tuple[str, Path]) -> None:
    """receive.denyNonFastForwards guards branches: a ledger under refs/heads fails at once with a
    fix, while the default notes namespace works on the very same server."""
    spec, repo = served
    git(repo, "config", "receive.denyNonFastForwards", "true")
    sep = "&" if "?" in spec else "?"
    branchy = GitLedger(f"{spec}{sep}ref-prefix=refs/heads/ledger", LedgerContext())
    branchy.reserve(KEY, INTERVAL)  # creating the ref is allowed
    with pytest.raises(LedgerError) as caught:
        branchy.reserve(KEY, INTERVAL)
    assert "non-fast-forward" in caught.value.detail
    assert branchy.attempts == 1
    branchy.close()
    notes = GitLedger(spec, LedgerContext())
    first = notes.reserve(KEY, INTERVAL)
    assert notes.reserve(KEY, INTERVAL) == first + INTERVAL
    notes.close()


# -- no git program, no process, and the credential only in the Authorization header -----------

PROBE = r"""
import json, os, sys
spawned = []
PROCESS_EVENTS = ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.forkpty",
                  "os.system", "os.spawn", "pty.spawn")


def audit(event, args):
    if event in PROCESS_EVENTS:
        spawned.append(f"{event} {args!r}"[:300])


sys.addaudithook(audit)  # from here on, every way Python can start a process is reported
from streampixel_distribute.ledger import LedgerContext, open_ledger

for spec in json.loads(os.environ["SPD_SPECS"]):
    ledger = open_ledger(spec, LedgerContext())
    slot = ledger.reserve("sp-probe", 120.0)
    assert ledger.peek("sp-probe", 120.0) == slot + 120.0
    ledger.close()
print(json.dumps(spawned))
"""


def secret_forms(user: str, secret: str) -> list[str]:
    """The ways a credential can travel: plain, URL-encoded, base64, and as Basic auth."""
    return [secret, urllib.parse.quote(secret, safe=""), base64.b64encode(secret.encode()).decode(),
            base64.b64encode(f"{user}:{secret}".encode()).decode()]


def assert_only_in_the_header(server: GitHTTPServer) -> None:
    """Every request carried the credential as its Authorization header, and nowhere else."""
    received = server.requests()
    assert received, "the server saw no request"
    expected = "Basic " + base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
    for request in received:
        headers = dict(request["headers"])  # type: ignore[call-overload]
        assert headers.pop("Authorization") == expected, request["path"]
        rest = json.dumps([request["method"], request["path"], headers]) + base64.b64decode(
            str(request["body"])).decode(errors="replace")
        for form in secret_forms(server.username, server.password):
            assert form not in rest, f"credential outside the header of {request['path']}"


def test_no_process_is_started_and_the_credential_travels_only_in_a_header(
    git_http_server_factory: Callable[..., GitHTTPServer], bare_git_repo: Path, tmp_path: Path,
) -> None:
    """The ledger used to run `git` with the credential in its environment (argv and environment
    of a process are readable through /proc). Now nothing is started at all: an audit hook in the
    reserving process reports every process creation, over HTTP and file:// alike, with no git
    on PATH; and the server received the credential only as the Authorization header."""
    server = git_http_server_factory(log=True)
    empty = tmp_path / "no-git-here"
    empty.mkdir()
    env = dict(os.environ, PATH=str(empty),
               SPD_SPECS=json.dumps([server.spec(), f"git+file://{bare_git_repo}"]))
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
    services = {str(r["path"]).partition("?")[2] or str(r["path"]).rsplit("/", 1)[1]
                for r in server.requests()}
    assert {"service=git-upload-pack", "git-upload-pack", "service=git-receive-pack",
            "git-receive-pack"} <= services  # the real work, over the wire
    assert_only_in_the_header(server)
    for name in ("ledger.git", bare_git_repo.name):
        assert server.password not in done.stdout + done.stderr, name


def git_tripwire(directory: Path) -> tuple[Path, Path]:
    """A `git` first on PATH that only records that it ran: the ledger must never run it."""
    directory.mkdir()
    log = directory / "ran.log"
    shim = directory / "git"
    shim.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" "" >> "{log}"\nexit 1\n')
    shim.chmod(0o755)
    return directory, log


def test_no_credential_with_special_characters_ever_leaves_the_header(
    git_http_server_factory: Callable[..., GitHTTPServer], tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, clock: Clock,
) -> None:
    """A password with an unencoded `/` was cut by the URL parser and handed to git, credential
    and all, as the URL argument. Now that URL is refused before any request, and the encoded
    one works with the credential in the Authorization header only (and no git process)."""
    password = "Tok3nAbc/Secr3tValue99"
    server = git_http_server_factory(username="ci-bot", password=password, log=True)
    shim_dir, ran = git_tripwire(tmp_path / "shim")
    monkeypatch.setenv("PATH", f"{shim_dir}:{os.environ['PATH']}")
    unencoded = f"git+http://ci-bot:{password}@127.0.0.1:{server.port}/ledger.git"
    with pytest.raises(LedgerError) as caught:
        reserve_once(unencoded, LedgerContext(now=clock))
    secrets = (password, "Tok3nAbc", "Secr3tValue99", "Tok3nAbc%2FSecr3tValue99", "ci-bot")
    for secret in secrets:
        assert secret not in all_text(caught.value)
    assert "`/` as `%2F`" in caught.value.hint
    assert server.requests() == []  # refused before anything was sent
    encoded = server.spec()  # the same credentials, percent-encoded
    assert "Tok3nAbc%2FSecr3tValue99" in encoded
    ledger = GitLedger(encoded, LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    for secret in secrets:
        assert secret not in ledger.description
    ledger.close()
    assert_only_in_the_header(server)
    assert not ran.exists(), ran.read_text()


def test_no_git_program_is_needed(served: tuple[str, Path], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, clock: Clock) -> None:
    """The image ships no git: the ledger works with nothing named git anywhere on PATH."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    ledger = GitLedger(served[0], LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    assert ledger.peek(KEY, INTERVAL) == clock.value + INTERVAL
    ledger.close()


def test_without_dulwich_the_fix_says_so(git_file_spec: str,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "dulwich", None)  # what a missing package looks like
    ledger = GitLedger(git_file_spec, LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.peek(KEY, INTERVAL)
    assert "dulwich" in caught.value.detail
    assert "file://" in caught.value.hint
    ledger.close()


def test_user_git_config_helpers_and_trace_cannot_interfere(
    git_http_server_factory: Callable[..., GitHTTPServer], capture: RecordingServer,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """Nothing of the user's git setup is read: no config file (global, XDG or through
    GIT_CONFIG_*), no credential helper, no askpass, no URL rewriting, no configured proxy, and
    GIT_TRACE prints nothing."""
    server = git_http_server_factory(log=True)
    home = tmp_path / "home"
    (home / ".config" / "git").mkdir(parents=True)
    marker = tmp_path / "helper-ran"
    helper = tmp_path / "helper"
    helper.write_text(f"#!/bin/sh\ntouch '{marker}'\necho username=evil\necho password=evil\n")
    helper.chmod(0o755)
    config = (f"[http]\n\textraHeader = X-Evil: user-config\n"
              f"\tproxy = http://127.0.0.1:{capture.port}\n"
              f"[credential]\n\thelper = !{helper}\n"
              f'[url "http://127.0.0.1:{capture.port}/"]\n\tinsteadOf = {server.base_url}/\n')
    for path in (home / ".gitconfig", home / ".config" / "git" / "config"):
        path.write_text(config)
    for name, value in {
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"), "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "http.extraHeader", "GIT_CONFIG_VALUE_0": "X-Evil: environment",
        "GIT_ASKPASS": str(helper), "SSH_ASKPASS": str(helper), "GIT_TRACE": "1",
        "GIT_TRACE_PACKET": "1", "GIT_CURL_VERBOSE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    ledger = GitLedger(server.spec(), LedgerContext())
    ledger.reserve(KEY, INTERVAL)
    ledger.close()
    assert not marker.exists()
    assert capture.snapshot()[1] == []
    assert all("X-Evil" not in r["headers"] for r in server.requests())  # type: ignore[operator]
    assert capfd.readouterr() == ("", "")


# -- TLS, proxies and redirects -----------------------------------------------------------------

CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH",
                "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY",
                   "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(scope="module")
def loopback_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_server(git_http_server_factory: Callable[..., GitHTTPServer], loopback_ca: LoopbackCA,
               monkeypatch: pytest.MonkeyPatch) -> GitHTTPServer:
    """A smart-HTTP server on https://localhost, its certificate signed by a private CA; no CA
    or proxy variable of this machine is left set."""
    for name in CA_VARIABLES + PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return git_http_server_factory(tls=(loopback_ca.cert, loopback_ca.key), log=True)


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "GIT_SSL_CAINFO"])
def test_a_private_ca_is_trusted_through_the_environment(
    tls_server: GitHTTPServer, loopback_ca: LoopbackCA, monkeypatch: pytest.MonkeyPatch,
    clock: Clock, variable: str,
) -> None:
    monkeypatch.setenv(variable, str(loopback_ca.ca_cert))
    ledger = GitLedger(tls_server.spec(), LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    assert ledger.reserve(KEY, INTERVAL) == clock.value + INTERVAL
    ledger.close()


def test_an_unknown_ca_is_refused_with_the_fix(tls_server: GitHTTPServer) -> None:
    ledger = GitLedger(tls_server.spec(), LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    assert "TLS failed" in caught.value.detail
    assert "SSL_CERT_FILE" in caught.value.hint and "GIT_SSL_CAINFO" in caught.value.hint
    assert tls_server.password not in all_text(caught.value)
    assert tls_server.requests() == []  # nothing was sent over an unverified connection
    ledger.close()


@pytest.mark.parametrize("variable", ["https_proxy", "HTTPS_PROXY", "all_proxy"])
def test_https_goes_through_the_proxy_of_the_environment(
    tls_server: GitHTTPServer, loopback_ca: LoopbackCA, monkeypatch: pytest.MonkeyPatch,
    clock: Clock, variable: str,
) -> None:
    """The proxy gets a CONNECT to the git host and nothing else: the credential travels inside
    the TLS tunnel."""
    monkeypatch.setenv("GIT_SSL_CAINFO", str(loopback_ca.ca_cert))
    with tunnel_proxy() as proxy:
        monkeypatch.setenv(variable, proxy.url)
        ledger = GitLedger(tls_server.spec(), LedgerContext(now=clock))
        assert ledger.reserve(KEY, INTERVAL) == clock.value
        ledger.close()
        seen = proxy.requests()
    assert seen
    assert all(line.startswith(f"CONNECT localhost:{tls_server.port} ") for line, _ in seen), seen
    assert all("Authorization" not in headers for _line, headers in seen)
    assert_only_in_the_header(tls_server)


def test_proxy_credentials_come_from_the_proxy_url(
    tls_server: GitHTTPServer, loopback_ca: LoopbackCA, monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    secret = "px-Secr3t/77"
    monkeypatch.setenv("GIT_SSL_CAINFO", str(loopback_ca.ca_cert))
    with tunnel_proxy(credentials=f"proxy-user:{secret}") as proxy:
        quoted = urllib.parse.quote(secret, safe="")
        monkeypatch.setenv("https_proxy", f"http://proxy-user:{quoted}@127.0.0.1:{proxy.port}")
        ledger = GitLedger(tls_server.spec(), LedgerContext(now=clock))
        assert ledger.reserve(KEY, INTERVAL) == clock.value
        ledger.close()
        monkeypatch.setenv("https_proxy", proxy.url)  # no credentials: the proxy says 407
        ledger = GitLedger(tls_server.spec(), LedgerContext(now=clock))
        with pytest.raises(LedgerError) as caught:
            ledger.reserve(KEY, INTERVAL)
        ledger.close()
    assert "proxy" in caught.value.detail
    assert "https_proxy=http://user:password@" in caught.value.hint
    assert secret not in all_text(caught.value) and quoted not in all_text(caught.value)


@pytest.mark.parametrize("variable", ["no_proxy", "NO_PROXY"])
def test_no_proxy_hosts_are_reached_directly(
    tls_server: GitHTTPServer, loopback_ca: LoopbackCA, monkeypatch: pytest.MonkeyPatch,
    clock: Clock, variable: str,
) -> None:
    monkeypatch.setenv("GIT_SSL_CAINFO", str(loopback_ca.ca_cert))
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")  # would fail
    monkeypatch.setenv(variable, "example.org, .localhost")
    ledger = GitLedger(tls_server.spec(), LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    ledger.close()


def test_no_proxy_addresses_and_ranges_are_reached_directly(
    git_http_server: GitHTTPServer, monkeypatch: pytest.MonkeyPatch, clock: Clock,
) -> None:
    """The server is 127.0.0.1: `*`, its address or a CIDR range around it bypass the proxy; an
    unparsable range is skipped, not fatal; a range that does not hold it changes nothing."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port()}")  # would fail
    for no_proxy in ("*", "10.0.0.0/8, 300.1.0.0/16, 127.0.0.0/8", "[::1], 127.0.0.1"):
        monkeypatch.setenv("no_proxy", no_proxy)
        ledger = GitLedger(git_http_server.spec(), LedgerContext(now=clock))
        assert ledger.peek(KEY, INTERVAL) == clock.value, no_proxy
        ledger.close()
    monkeypatch.setenv("no_proxy", "10.0.0.0/8, 127.0.0.2/32")
    ledger = GitLedger(git_http_server.spec(), LedgerContext(now=clock))
    with pytest.raises(LedgerError) as caught:
        ledger.peek(KEY, INTERVAL)
    ledger.close()
    assert "through the proxy" in caught.value.detail
    assert git_http_server.password not in all_text(caught.value)


@pytest.mark.parametrize("variable", ["http_proxy", "all_proxy"])
def test_a_socks_proxy_is_refused_with_the_fix(
    git_http_server: GitHTTPServer, monkeypatch: pytest.MonkeyPatch, variable: str,
) -> None:
    """urllib3 speaks SOCKS only with an extra package: the job says so instead of failing
    obscurely, and the proxy's password is never shown."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, f"socks5://proxy-user:px-socks-8d2e@127.0.0.1:{closed_port()}")
    ledger = GitLedger(git_http_server.spec(), LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    ledger.close()
    assert "is a socks5 proxy, which the git ledger does not support" in caught.value.detail
    assert "http:// or https:// proxy" in caught.value.hint
    assert "px-socks-8d2e" not in all_text(caught.value)
    assert git_http_server.password not in all_text(caught.value)


def test_a_renamed_repository_is_followed_on_the_same_server(
    git_http_server_factory: Callable[..., GitHTTPServer], clock: Clock,
) -> None:
    server = git_http_server_factory(moved={"old-name.git": "ledger.git"}, log=True)
    ledger = GitLedger(server.spec("old-name.git"), LedgerContext(now=clock))
    assert ledger.reserve(KEY, INTERVAL) == clock.value
    assert ledger.reserve(KEY, INTERVAL) == clock.value + INTERVAL
    ledger.close()
    assert git(server.repo_path(), "rev-list", "--count", f"{DEFAULT_REF_PREFIX}/{KEY}") == "1"


def test_a_redirect_to_another_server_is_not_followed(capture: RecordingServer) -> None:
    """The credential belongs to the ledger's server: a redirect elsewhere (another host or port)
    is reported, and the other server receives nothing at all."""
    target = f"http://127.0.0.1:{capture.port}"

    class Redirect(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(301)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with serving(Redirect) as base:
        ledger = GitLedger(f"git+{base}/ledger.git".replace("://", "://u:pw-redirect-5531@", 1),
                           LedgerContext())
        with pytest.raises(LedgerError) as caught:
            ledger.reserve(KEY, INTERVAL)
        ledger.close()
    assert "redirect" in caught.value.detail
    assert "final URL" in caught.value.hint
    assert "pw-redirect-5531" not in all_text(caught.value)
    assert capture.snapshot() == (0, [])


def test_a_redirect_loop_ends_with_the_final_url_fix(
    git_http_server_factory: Callable[..., GitHTTPServer],
) -> None:
    server = git_http_server_factory(moved={"a.git": "b.git", "b.git": "a.git"}, log=True)
    ledger = GitLedger(server.spec("a.git"), LedgerContext())
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(KEY, INTERVAL)
    ledger.close()
    assert "too many redirects" in caught.value.detail
    assert "final URL" in caught.value.hint
    assert len(server.requests()) == 6  # the first request and five redirects, no more
    assert server.password not in all_text(caught.value)


# -- servers that misbehave: bounded in time and size, and never a traceback -------------------

ADVERTISEMENT = "application/x-git-upload-pack-advertisement"
ZERO = "0" * 40


def pkt(text: str) -> bytes:
    return f"{len(text) + 4:04x}{text}".encode()


def misbehaving(kind: str) -> type[QuietHandler]:
    """A server that answers the first git request (the ref advertisement) in one bad way."""

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.connection.settimeout(30)  # a bound on this thread, should a client linger
            if kind == "garbage":
                self.reply(200, b"<html>Sign in to continue</html>\n", ADVERTISEMENT)
                return
            if kind == "error-cut-short":  # an error page announced, then the connection drops
                self.send_response(502)
                self.send_header("Content-Length", "1000")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ADVERTISEMENT)
            if kind in ("stalls", "cut-short"):
                self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(pkt("# service=git-upload-pack\n") + b"0000")
            self.wfile.flush()
            with contextlib.suppress(OSError):
                if kind == "stalls":
                    self.rfile.read(1)  # until the client hangs up
                elif kind == "trickle":  # every line in time, the whole never
                    for number in range(100):
                        self.wfile.write(pkt(f"{ZERO} refs/notes/x{number}\n"))
                        self.wfile.flush()
                        threading.Event().wait(0.05)  # a tenth of the read timeout
                elif kind == "flood":  # a ref advertisement without end, in the longest lines
                    long_name = "x" * 65_000
                    for number in range(MAX_RESPONSE_BYTES // 65_000 + 10):
                        self.wfile.write(pkt(f"{ZERO} refs/notes/{long_name}{number}\n"))

    return Handler


@pytest.mark.parametrize(
    ("kind", "detail", "hint"),
    [
        ("garbage", "git could not read", "Check the `ledger` value"),
        ("error-cut-short", "<key>): HTTP 502", "accepts pushes"),
        ("stalls", "did not answer within 0.5 s (read)", "raise `?timeout=`"),
        ("trickle", "did not answer within 0.5 s (read): the operation ran out of time",
         "raise `?timeout=`"),
        ("cut-short", "cannot reach", "reachable from the runner"),
        ("flood", "far too large to be a ledger", "?ref-prefix=refs/"),
    ],
)
def test_a_misbehaving_server_fails_in_bounded_time_with_a_fix(
        kind: str, detail: str, hint: str) -> None:
    with serving(misbehaving(kind)) as base:
        # Seconds only for a server that sends at full speed: a slow one must trip the timeout.
        timeout = 60 if kind == "flood" else 0.5
        spec = f"git+{base}/ledger.git?timeout={timeout}".replace("://", "://u:pw-hostile-3b9a@",
                                                                     1)
        ledger = GitLedger(spec, LedgerContext())
        with pytest.raises(LedgerError) as caught:
            ledger.reserve(KEY, INTERVAL)
        ledger.close()
    assert detail in caught.value.detail
    assert hint in caught.value.hint
    assert "pw-hostile-3b9a" not in all_text(caught.value)


# -- a storm: 50 jobs at the same instant, each its own process ---------------------------------

STORM = 50
WORKER = r"""
import json, os, sys
from streampixel_distribute.ledger import LedgerContext, open_ledger
ledger = open_ledger(os.environ["SPD_LEDGER_SPEC"], LedgerContext())
ledger.peek("warm-up", 1.0)
print("ready", flush=True)
sys.stdin.readline()
slot = ledger.reserve(os.environ["SPD_KEY"], float(os.environ["SPD_INTERVAL"]))
print(json.dumps({"slot": slot, "attempts": ledger.attempts}), flush=True)
ledger.close()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_fifty_concurrent_reservers_over_http_all_get_distinct_spaced_slots(
    git_http_server: GitHTTPServer,
) -> None:
    # The spec (with its password) goes through the environment, never argv.
    env = dict(os.environ, SPD_LEDGER_SPEC=git_http_server.spec(), SPD_KEY=KEY,
               SPD_INTERVAL=str(INTERVAL))
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for _ in range(STORM)
    ]  # fmt: skip
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        for worker in workers:  # all ready: release them together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        results = []
        for worker in workers:
            out, err = worker.communicate(timeout=150)
            assert worker.returncode == 0, err
            assert git_http_server.password not in out + err
            results.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    slots = sorted(r["slot"] for r in results)
    assert len(set(slots)) == STORM  # all distinct
    # Exactly one interval apart: none closer (no lost update), no gap (no lost reservation).
    assert [b - a for a, b in itertools.pairwise(slots)] == pytest.approx(
        [INTERVAL] * (STORM - 1), abs=1e-6
    )
    assert any(r["attempts"] > 1 for r in results)  # there really was contention
    ledger = GitLedger(git_http_server.spec(), LedgerContext())
    assert ledger.peek(KEY, INTERVAL) == pytest.approx(slots[-1] + INTERVAL, abs=1e-6)
    ledger.close()
    assert git(git_http_server.repo_path(), "rev-list", "--count",
               f"{DEFAULT_REF_PREFIX}/{KEY}") == "1"
