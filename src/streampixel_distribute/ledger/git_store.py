"""The git plumbing of the git ledger: a private bare repository and the `git` program.

`read(ref)` fetches one ref (depth 1) and returns its commit id and the JSON state in it;
`write(ref, old, state, message)` writes a parentless commit and pushes it with
`--force-with-lease=<ref>:<old>`, so receive-pack updates the ref only if it still holds `old`
(the compare-and-swap); a lost race raises `Race`. The CAS loop is in git.py.

Secrets: credentials reach git only through environment variables (`GIT_CONFIG_*` carrying an
`http.<url>.extraHeader`), never argv, and every text git prints is scrubbed before it is shown.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import weakref
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import redact
from ..errors import LedgerError
from .git_spec import GitTarget, ledger_error

STATE_FILE = "ledger.json"
FORMAT_VERSION = 1
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


class Race(Exception):
    """The ref changed between our read and our push."""


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
        config.append((f"http.{target.url}.extraHeader", auth_header(target)))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def auth_header(target: GitTarget) -> str:
    raw = f"{target.username}:{target.password}".encode()
    return "Authorization: Basic " + base64.b64encode(raw).decode()



class GitStore:
    """One private bare repository (objects we fetch and commits we make) and a remote."""

    def __init__(self, target: GitTarget, description: str) -> None:
        self._target = target
        self.description = description
        self._dir: Path | None = None
        self._env: dict[str, str] = {}
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._dir = None
        self._finalizer = None

    def read(self, ref: str) -> tuple[str | None, dict[str, Any]]:
        """The current commit id of `ref` (None if absent) and the state it holds."""
        return self._read(ref)

    def write(self, ref: str, old: str | None, state: dict[str, Any], message: str) -> None:
        """Replace `ref` by a parentless commit of `state`, if it still holds `old`."""
        self._push(ref, old, self._write_commit(state, message))

    def argv(self, *args: str) -> list[str]:
        """The full argv for a git command; public so tests can prove it holds no secret."""
        return ["git", f"--git-dir={self._repo()}", *args]
    def _repo(self) -> Path:
        """A private bare repository for this instance: objects we fetch and commits we make."""
        if self._dir is None:
            if shutil.which("git") is None:
                raise ledger_error(
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
            raise ledger_error(
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
            raise ledger_error(
                f"{self.description} did not answer within {self._target.timeout:g} s ({action})",
                "Check that the git server is reachable from this runner (proxy, firewall), or "
                "raise `?timeout=`.",
            ) from None
        except OSError as error:
            raise ledger_error(
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
            raise ledger_error(
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
            raise ledger_error(
                f"{STATE_FILE} in {ref} of {self.description} is not valid ledger JSON",
                f"Delete the ref (`git push <repo> :{ref}`); the next job recreates it.",
            ) from None
        if version > FORMAT_VERSION:
            raise ledger_error(
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
    def _write_commit(self, state: dict[str, Any], message: str) -> str:
        blob = self._write_object("blob", json.dumps(state, indent=1, sort_keys=True).encode())
        tree = self._write_object("tree", f"100644 {STATE_FILE}\0".encode() + bytes.fromhex(blob))
        stamp = f"{int(time.time())} +0000"
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
                raise Race
            raise ledger_error(
                f"{self.description} refused the update of {ref}: {reason.strip()}",
                "Allow this ref to be updated (and force-updated) by the token: no protection, "
                "hook or ruleset may block it; or choose another ref with `?ref-prefix=refs/…`.",
            )
        if any(word in stderr for word in _LOST_RACE):
            raise Race
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
        return ledger_error(
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
