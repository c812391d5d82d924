"""`github`, `github://owner/repo`, `git+file://…`, `git+http(s)://…`: the slot ledger in a git ref.

Per account key one ref (default `refs/notes/streampixel-distribute/<key>`) points at a single
parentless commit whose tree holds `ledger.json`. A reservation reads that commit, writes a new
orphan commit with the new `next_free`, and pushes it with `--force-with-lease=<ref>:<old id>`:
receive-pack updates the ref only if it still holds the id we read, which is the compare-and-swap.
A lost race is re-read and retried with full-jitter backoff. Orphan commits keep the ref's history
at exactly one commit however many reservations are made. docs/ledgers.md explains the ref
namespace and why this drives the `git` program rather than dulwich.

Secrets: the token reaches git only through environment variables (`GIT_CONFIG_*` carrying an
`http.<url>.extraHeader`), never argv, and every text git prints is scrubbed before it is shown.
Credentials in the URL are found permissively (`find_userinfo`) and a URL that a strict parser would
misread is refused before anything is parsed, so no piece of a password can end up in the URL git
is given. The `github-token` goes only to the `github` ledgers, that is to `GITHUB_SERVER_URL`
(which must be https, loopback aside), never to a host named in a `git+http(s)` URL.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import weakref
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import redact
from ..errors import LedgerError
from . import (
    Ledger,
    LedgerContext,
    Userinfo,
    find_userinfo,
    printable,
    validate_spec,
    without_userinfo,
)

DEFAULT_REF_PREFIX = "refs/notes/streampixel-distribute"
STATE_FILE = "ledger.json"
FORMAT_VERSION = 1
GITHUB_USERNAME = "x-access-token"  # what GitHub expects as the Basic-auth user for a token
DEFAULT_TIMEOUT = 60.0  # seconds for one git command, so a black-holed host cannot hang a job
MAX_ATTEMPTS = 30
BACKOFF_FLOOR = 0.05  # seconds: the smallest backoff unit
BACKOFF_CAP = 10.0
#: GIT_CONFIG_COUNT (2.31) and GIT_CONFIG_GLOBAL (2.32) carry the token and shut out user config:
#: an older git would silently ignore both.
MIN_GIT = (2, 32)
COMMITTER = "streampixel-distribute <ledger@streampixel-distribute.invalid>"

# What git may take from our environment: the program path, proxies and CA bundles. Nothing
# else (GIT_TRACE_*, GIT_ASKPASS, GIT_DIR, user config) may change what it does or prints.
_PASSTHROUGH = (
    "PATH", "TMPDIR", "SYSTEMROOT",
    "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO", "GIT_SSL_CAPATH",
)  # fmt: skip

# Rejections that mean "someone else updated the ref first": read again and retry. (With a lease
# the client never refuses a non-fast-forward itself, so "non-fast-forward" can only be a server
# policy such as receive.denyNonFastForwards on refs/heads: not a race, and not retried.)
_LOST_RACE = (
    "stale info",
    "failed to update ref",
    "failed to lock",
    "cannot lock ref",
    "incorrect old value",
    "but expected",
)

_BAD_REF = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//|/\.|\.lock(/|$)|^@$")
_SAFE_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class GitTarget:
    """Where the ledger lives, parsed from the spec. `url` never carries credentials."""

    url: str
    display: str
    username: str
    password: str
    ref: str | None  # one exact ref for every key (the JSON then holds several keys)
    ref_prefix: str  # otherwise one ref per key: <prefix>/<key>
    timeout: float


def _ledger_error(detail: str, hint: str) -> LedgerError:
    return LedgerError(redact.scrub(detail), hint=redact.scrub(hint))


def _valid_ref(ref: str) -> bool:
    return (
        ref.startswith("refs/")
        and not ref.endswith(("/", "."))
        and _BAD_REF.search(ref) is None
        and len(ref) <= 200
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _github_server(environ: Mapping[str, str]) -> str:
    """`GITHUB_SERVER_URL`, the one place the token may go: https only (plain http on loopback)."""
    server = (environ.get("GITHUB_SERVER_URL") or "https://github.com").rstrip("/")
    shown = printable(without_userinfo(server), 100)
    try:
        parts = urllib.parse.urlsplit(server)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    scheme = parts.scheme.lower() if parts else ""
    if (find_userinfo(server) is not None or not host or parts is None or parts.query
            or not (scheme == "https" or (scheme == "http" and _is_loopback(host)))):
        raise _ledger_error(
            f"GITHUB_SERVER_URL ({shown}) is not a plain https:// server URL, and the github "
            "ledger sends `github-token` there",
            "Run the job where GITHUB_SERVER_URL is the https:// URL of the GitHub server "
            "(GitHub sets it), or use a `git+https://user:token@host/…` or redis:// ledger.",
        )
    return server


def parse_spec(spec: str, context: LedgerContext) -> GitTarget:
    """Turn a ledger spec into a target; raise `LedgerError` (no secret in it) if it is unusable."""
    display = ""
    if spec == "github":
        repository = context.environ.get("GITHUB_REPOSITORY", "")
        if not repository:
            raise _ledger_error(
                "ledger `github` needs GITHUB_REPOSITORY, which is only set inside GitHub Actions",
                "Outside GitHub Actions use `github://owner/repo` or `git+https://host/repo.git`.",
            )
        spec = f"github://{repository}"
        display = f"github ({printable(repository, 100)})"
    validate_spec(spec)  # credentials percent-encoded, no control characters: now parse
    info = find_userinfo(spec)
    parts = urllib.parse.urlsplit(without_userinfo(spec))
    scheme = parts.scheme.lower()
    if scheme == "github":
        url, display, username, password = _github_location(parts, display, context)
    elif scheme in ("git+file", "git+http", "git+https"):
        url, username, password = _url_location(parts, info)
        display = printable(f"git+{url}", 300)
    else:
        raise _ledger_error(
            f"`{printable(scheme, 20)}` is not a git ledger",
            "Use `github`, `github://owner/repo`, `git+https://…` or `git+file:///…`.",
        )
    ref, prefix, timeout = _options(parts.query)
    return GitTarget(url, display, username, password, ref, prefix, timeout)


def _github_location(
    parts: urllib.parse.SplitResult, display: str, context: LedgerContext
) -> tuple[str, str, str, str]:
    owner_repo = f"{parts.netloc}{parts.path}".strip("/").removesuffix(".git")
    if owner_repo.count("/") != 1 or not all(owner_repo.split("/")):
        raise _ledger_error(
            f"`github://{printable(owner_repo, 100)}` does not name a repository",
            "Write the shared ledger repository as `github://owner/repo`.",
        )
    url = f"{_github_server(context.environ)}/{owner_repo}.git"
    display = display or printable(f"github://{owner_repo}", 200)
    if not context.github_token:
        raise _ledger_error(
            f"ledger `{display}` needs a token and none was given",
            "Pass `github-token` (the default `${{ github.token }}` works for this repository "
            "with `permissions: contents: write`; a shared repository needs a PAT or GitHub "
            "App token with write access to it).",
        )
    return url, display, GITHUB_USERNAME, context.github_token


def _url_location(
    parts: urllib.parse.SplitResult, info: Userinfo | None
) -> tuple[str, str, str]:
    """The URL git is given (never with credentials) and the URL's own user and password.

    The `github-token` is never used here, whatever the host: a `git+http(s)` URL may name any
    server, and the token belongs to the `github` ledgers only.
    """
    transport = parts.scheme.lower().removeprefix("git+")
    if transport == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise _ledger_error(
                f"`{printable(f'git+file://{parts.netloc}{parts.path}', 200)}` is not an absolute "
                "file URL",
                "Write it as `git+file:///absolute/path/repo.git` (three slashes).",
            )
        return f"file://{parts.path}", "", ""
    url = urllib.parse.urlunsplit((transport, parts.netloc, parts.path, "", ""))
    if not parts.netloc:
        raise _ledger_error(
            f"`{printable(f'git+{url}', 200)}` has no host",
            "Write it as `git+https://host/owner/repo.git`.",
        )
    if info is None:
        return url, "", ""
    return url, urllib.parse.unquote(info.username), urllib.parse.unquote(info.password or "")


def _options(query: str) -> tuple[str | None, str, float]:
    options = _parse_query(query)
    ref = options.get("ref")
    prefix = options.get("ref-prefix", DEFAULT_REF_PREFIX).rstrip("/")
    for name, value in (("ref", ref), ("ref-prefix", prefix)):
        if value is not None and not _valid_ref(value):
            raise _ledger_error(
                f"`{name}={value}` is not a usable git ref name",
                "Give a full ref name such as `refs/notes/streampixel-distribute` "
                "(no spaces, `..`, `~^:?*[\\`).",
            )
    try:
        timeout = float(options.get("timeout", DEFAULT_TIMEOUT))
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= 3600:
        raise _ledger_error(
            f"`timeout={options.get('timeout')}` is not a number of seconds",
            "Give `timeout` as seconds between 1 and 3600, e.g. `?timeout=60`.",
        )
    return ref, prefix, timeout


def _parse_query(query: str) -> dict[str, str]:
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"ref", "ref-prefix", "timeout"})
    if unknown:
        raise _ledger_error(
            f"unknown git ledger option(s): {', '.join(unknown)}",
            "The git ledger takes `?ref=refs/…` (one ref for all keys), `?ref-prefix=refs/…` "
            "(one ref per key under it) and `?timeout=SECONDS`.",
        )
    return options


def git_env(target: GitTarget, home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The complete environment for one git command: isolated, non-interactive, bounded.

    Credentials travel as an `http.<url>.extraHeader` config value in the environment (scoped to
    the ledger's URL so a redirect elsewhere never receives it), never as an argument.
    """
    source = os.environ if base is None else base
    env = {name: source[name] for name in _PASSTHROUGH if source.get(name)}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_ASKPASS="",  # empty, not unset: git then asks nobody (no SSH_ASKPASS fallback)
        LC_ALL="C",  # error classification reads git's English messages
        LANGUAGE="C",
    )
    config = [
        ("credential.helper", ""),  # no stored credentials from any helper
        ("core.askPass", ""),
        ("http.lowSpeedLimit", "1"),
        ("http.lowSpeedTime", str(int(max(1.0, target.timeout)))),
        ("protocol.version", "2"),
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("advice.pushUpdateRejected", "false"),
    ]
    if target.username or target.password:
        config.append((f"http.{target.url}.extraHeader", _auth_header(target)))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _auth_header(target: GitTarget) -> str:
    raw = f"{target.username}:{target.password}".encode()
    return "Authorization: Basic " + base64.b64encode(raw).decode()


def _ref_component(key: str) -> str:
    """A key usable as one ref path component; unusual keys are hashed (the JSON keeps them)."""
    if _SAFE_KEY.fullmatch(key) and not key.endswith((".", ".lock")) and ".." not in key:
        return key
    return "k-" + hashlib.sha256(key.encode()).hexdigest()[:40]


class _Race(Exception):
    """The ref changed between our read and our push."""


class GitLedger(Ledger):
    def __init__(self, spec: str, context: LedgerContext | None = None) -> None:
        self._context = context or LedgerContext()
        info = find_userinfo(spec)
        for secret in info.secrets() if info is not None else ():
            redact.register(secret)  # before parsing: even a refused URL's error is scrubbed
        self._target = parse_spec(spec, self._context)
        redact.register(self._target.password)
        if self._target.password:
            redact.register(_auth_header(self._target).split(" ", 2)[2])
        ref_desc = self._target.ref or f"{self._target.ref_prefix}/<key>"
        self.description = printable(redact.scrub(f"{self._target.display} ({ref_desc})"), 500)
        self._lock = threading.Lock()
        self._dir: Path | None = None
        self._env: dict[str, str] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._identity = self._who()
        self.max_attempts = MAX_ATTEMPTS
        self.sleep: Callable[[float], None] = time.sleep  # backoff between lost races only
        self.attempts = 0  # CAS attempts made by the last reserve (for logs and tests)

    # -- Ledger interface --------------------------------------------------------------------

    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        ref = self.ref_for(key)
        with self._lock:
            for attempt in range(1, self.max_attempts + 1):
                self.attempts = attempt
                started = time.monotonic()
                old, state = self._read(ref)
                now = self._context.now()
                slots = state.setdefault("slots", {})
                entry = slots.get(key) or {}
                slot = max(now, not_before, float(entry.get("next_free", 0.0)))
                slots[key] = {
                    "next_free": slot + interval,
                    "updated": now,
                    "by": self._identity,
                    "nonce": secrets.token_hex(8),  # two identical commits would both "win"
                }
                state["version"] = FORMAT_VERSION
                commit = self._write_commit(state, key, slot, slot + interval)
                try:
                    self._push(ref, old, commit)
                except _Race:
                    # Full-jitter exponential backoff in units of this server's own round trip
                    # (milliseconds on loopback, most of a second to a far host): the losers
                    # spread out over about (contenders x round trip), so each later round has
                    # few contenders, and a loaded server slows its own retries down.
                    unit = max(BACKOFF_FLOOR, time.monotonic() - started)
                    ceiling = min(BACKOFF_CAP, unit * 2 ** (attempt + 1))
                    self.sleep(random.uniform(0, ceiling))  # noqa: S311
                    continue
                return slot
        raise _ledger_error(
            f"gave up on {self.description} after {self.max_attempts} attempts: every update "
            "lost a race with another job",
            "Too many jobs are reserving at the same instant; retry the job, or use a Redis "
            "ledger for very large matrices.",
        )

    def peek(self, key: str, interval: float) -> float:
        with self._lock:
            _old, state = self._read(self.ref_for(key))
        entry = state.get("slots", {}).get(key) or {}
        return max(self._context.now(), float(entry.get("next_free", 0.0)))

    def close(self) -> None:
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._dir = None
            self._finalizer = None

    # -- helpers -----------------------------------------------------------------------------

    def ref_for(self, key: str) -> str:
        return self._target.ref or f"{self._target.ref_prefix}/{_ref_component(key)}"

    def argv(self, *args: str) -> list[str]:
        """The full argv for a git command; public so tests can prove it holds no secret."""
        return ["git", f"--git-dir={self._repo()}", *args]

    def _who(self) -> str:
        env = self._context.environ
        if env.get("GITHUB_RUN_ID"):
            return (
                f"{env.get('GITHUB_REPOSITORY', '?')} run {env['GITHUB_RUN_ID']} attempt "
                f"{env.get('GITHUB_RUN_ATTEMPT', '1')} job {env.get('GITHUB_JOB', '?')}"
            )
        return f"pid {os.getpid()}"

    def _repo(self) -> Path:
        """A private bare repository for this instance: objects we fetch and commits we make."""
        if self._dir is None:
            if shutil.which("git") is None:
                raise _ledger_error(
                    "the git ledger needs the `git` program, which is not installed",
                    "Install git (e.g. `apt-get install --no-install-recommends git`) or use a "
                    "`file://` or `redis://` ledger.",
                )
            path = Path(tempfile.mkdtemp(prefix="spd-git-ledger-"))
            self._finalizer = weakref.finalize(self, shutil.rmtree, path, True)
            self._dir = path
            self._env = git_env(self._target, path)
            self._check_version()
            self._run(["git", "init", "--quiet", "--bare", str(path / "repo.git")], "prepare")
        return self._dir / "repo.git"

    def _check_version(self) -> None:
        out = self._run(["git", "--version"], "prepare").stdout.decode(errors="replace")
        found = re.search(r"(\d+)\.(\d+)", out)
        version = (int(found[1]), int(found[2])) if found else (0, 0)
        if version < MIN_GIT:
            raise _ledger_error(
                f"the git ledger needs git >= {MIN_GIT[0]}.{MIN_GIT[1]}, found "
                f"{out.strip() or 'an unknown version'}",
                "Install a newer git, or use a `file://` or `redis://` ledger.",
            )

    def _run(
        self, argv: list[str], action: str, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run(
                argv,
                input=stdin,
                capture_output=True,
                env=self._env,
                timeout=self._target.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise _ledger_error(
                f"{self.description} did not answer within {self._target.timeout:g} s ({action})",
                "Check that the git server is reachable from this runner (proxy, firewall), or "
                "raise `?timeout=`.",
            ) from None
        except OSError as error:
            raise _ledger_error(
                f"could not run git ({action}): {error.strerror}",
                "Install git or use a `file://` or `redis://` ledger.",
            ) from None

    def _read(self, ref: str) -> tuple[str | None, dict[str, Any]]:
        """The current commit id of `ref` (None if absent) and the state it holds."""
        local = "refs/seen/" + ref.removeprefix("refs/")
        repo = self._repo()
        done = self._run(
            self.argv(
                "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--depth=1",
                self._target.url, f"+{ref}:{local}",
            ),
            "read",
        )  # fmt: skip
        if done.returncode != 0:
            stderr = done.stderr.decode(errors="replace")
            if "couldn't find remote ref" in stderr:
                return None, {}
            raise self._failure(stderr, "read")
        show = self._run(
            ["git", f"--git-dir={repo}", "cat-file", "--batch"],
            "read",
            stdin=f"{local}^{{commit}}\n{local}:{STATE_FILE}\n".encode(),
        )
        # --batch answers "<oid> <type> <size>\n<content>\n" per line asked, or "<name> missing".
        found: list[tuple[str, bytes, bytes]] = []
        out = show.stdout
        while out:
            header, _, out = out.partition(b"\n")
            fields = header.split(b" ")
            if len(fields) != 3:
                found.append(("", b"missing", b""))
                continue
            size = int(fields[2])
            found.append((fields[0].decode(), fields[1], out[:size]))
            out = out[size + 1 :]
        if len(found) != 2 or found[0][1] != b"commit" or found[1][1] != b"blob":
            raise _ledger_error(
                f"the ref {ref} in {self.description} exists but is not a streampixel-distribute "
                f"ledger (no {STATE_FILE})",
                "Point the ledger at another ref with `?ref=refs/…` or `?ref-prefix=refs/…`; it "
                "will not overwrite a ref it did not create.",
            )
        oid, body = found[0][0], found[1][2]
        try:
            state = json.loads(body)
            version = int(state.get("version", 0))
        except (ValueError, TypeError, AttributeError):
            raise _ledger_error(
                f"{STATE_FILE} in {ref} of {self.description} is not valid ledger JSON",
                f"Delete the ref (`git push <repo> :{ref}`); the next job recreates it.",
            ) from None
        if version > FORMAT_VERSION:
            raise _ledger_error(
                f"{ref} in {self.description} was written by a newer streampixel-distribute "
                f"(format {version})",
                "Use the same (or a newer) version of streampixel-distribute in every job.",
            )
        return oid, state

    def _write_object(self, kind: str, body: bytes) -> str:
        """Store one loose object in our own repository (no process spawn: storms are CPU-bound)."""
        data = f"{kind} {len(body)}\0".encode() + body
        oid = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        path = self._repo() / "objects" / oid[:2] / oid[2:]
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            tmp = path.with_name(f".tmp-{secrets.token_hex(6)}")
            tmp.write_bytes(zlib.compress(data))
            os.replace(tmp, path)
        return oid

    def _write_commit(self, state: dict[str, Any], key: str, slot: float, next_free: float) -> str:
        blob = self._write_object("blob", json.dumps(state, indent=1, sort_keys=True).encode())
        tree = self._write_object("tree", f"100644 {STATE_FILE}\0".encode() + bytes.fromhex(blob))
        stamp = f"{int(time.time())} +0000"
        message = (
            f"reserve {key}: slot {_iso(slot)}, next free {_iso(next_free)}\n\n"
            f"by {self._identity}\n"
        )
        body = (
            f"tree {tree}\nauthor {COMMITTER} {stamp}\ncommitter {COMMITTER} {stamp}\n\n{message}"
        )
        return self._write_object("commit", body.encode())

    def _push(self, ref: str, old: str | None, commit: str) -> None:
        done = self._run(
            self.argv(
                "push", "--porcelain", "--no-verify",
                f"--force-with-lease={ref}:{old or ''}",  # empty: the ref must not exist yet
                self._target.url, f"{commit}:{ref}",
            ),
            "update",
        )  # fmt: skip
        out = done.stdout.decode(errors="replace")
        stderr = done.stderr.decode(errors="replace")
        for line in out.splitlines():
            flag, _, rest = line.partition("\t")
            if not rest.endswith(ref) and f":{ref}\t" not in rest:
                continue
            if flag in ("*", "+", " "):
                return
            reason = rest.rpartition("\t")[2]
            if flag == "=" or any(word in reason + stderr for word in _LOST_RACE):
                raise _Race
            raise _ledger_error(
                f"{self.description} refused the update of {ref}: {reason.strip()}",
                "Allow this ref to be updated (and force-updated) by the token: no protection, "
                "hook or ruleset may block it; or choose another ref with `?ref-prefix=refs/…`.",
            )
        if any(word in stderr for word in _LOST_RACE):
            raise _Race
        raise self._failure(stderr, "update")

    def _failure(self, stderr: str, action: str) -> LedgerError:
        """Turn git's complaint into an error with a fix. `stderr` is scrubbed before use."""
        text = redact.scrub(stderr)
        message = " ".join(
            line.removeprefix("fatal: ").removeprefix("remote: ").strip()
            for line in text.splitlines()
            if line.strip() and not line.startswith("hint:")
        )[:500]
        lower = text.lower()
        detail = "git could not {action} {where}: {message}"
        hint = "Check the `ledger` value and that the git server accepts pushes from this token."
        for actions, needles, cause, fix in _FAILURES:
            if (not actions or action in actions) and any(n in lower for n in needles):
                detail, hint = cause, fix
                break
        return _ledger_error(
            detail.format(action=action, where=self.description, message=message or "no details"),
            hint,
        )


# How git's complaints map to a cause and its fix, first match wins (git runs with LC_ALL=C).
_FAILURES: tuple[tuple[tuple[str, ...], tuple[str, ...], str, str], ...] = (
    (
        (),
        ("could not resolve host", "name or service not known"),
        "cannot resolve the host of {where}: {message}",
        "Check the host name in the `ledger` value and the runner's DNS/proxy settings.",
    ),
    (
        (),
        (
            "failed to connect", "connection refused", "couldn't connect", "timed out",
            "could not connect", "network is unreachable", "no route to host",
        ),
        "cannot reach {where}: {message}",
        "Check that the git server is up and reachable from the runner (firewall, proxy: set "
        "https_proxy), or use another ledger.",
    ),
    (
        (),
        ("ssl", "certificate"),
        "TLS failed talking to {where}: {message}",
        "Give the runner the server's CA (SSL_CERT_FILE / GIT_SSL_CAINFO).",
    ),
    (
        ("update",),
        ("error: 403", "error: 401", "permission to", "write access", "denied"),
        "the token cannot push to {where}: {message}",
        "Give the job `permissions: contents: write`, or use a token with write access to the "
        "ledger repository.",
    ),
    (
        (),
        (
            "error: 401", "authentication failed", "could not read username",
            "could not read password",
        ),
        "{where} rejected the credentials: {message}",
        "Check the token: the `github` and `github://owner/repo` ledgers use `github-token` (a "
        "valid, unexpired token); every other git URL needs its own `user:token@` (percent-"
        "encoded) in the ledger URL, since `github-token` is never sent to it.",
    ),
    (
        (),
        ("error: 403", "denied"),
        "the token may not read {where}: {message}",
        "Give the token read and write access to the ledger repository (`permissions: contents: "
        "write`, or a PAT / App token for a shared repository).",
    ),
    (
        (),
        ("not found", "does not appear to be a git repository", "error: 404"),
        "the ledger repository {where} does not exist or is not visible to the token: {message}",
        "Create the repository (an empty one is enough) and check its name; for a private "
        "repository the token needs access to it.",
    ),
)  # fmt: skip


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
