"""The git plumbing of the git ledger, in this process with dulwich: no `git` program runs.

`read(ref)` returns the ref's commit id (None if absent) and the JSON state in it;
`write(ref, old, state, message)` stores a parentless commit and moves the ref to it only if the
ref still holds `old` (the compare-and-swap), raising `Race` otherwise. The CAS loop is in git.py.

Two transports, one format:
- `file://`: the repository is opened with dulwich's `Repo`. The ref moves under git's own lock
  file (`<ref>.lock`, so git and dulwich writers exclude each other), after the checks that
  git-receive-pack makes: the repository's `pre-receive` and `update` hooks and, for branches,
  `receive.denyNonFastForwards`. `post-receive` and `post-update` run afterwards.
- `http(s)://`: git's smart HTTP. A read is ls-refs plus a depth-1 fetch of that one ref
  (protocol v2); a write is dulwich's `send_pack` to receive-pack with the old id we read, so the
  server refuses the update if the ref moved meanwhile.

The HTTP layer under dulwich's client is ours (git_http.py): dulwich never sees a credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, cast

from .. import redact
from ..errors import LedgerError
from .git_http import Failure, Pool
from .git_spec import GitTarget, ledger_error
from .spec import printable

if TYPE_CHECKING:
    from dulwich.client import Urllib3HttpGitClient
    from dulwich.objects import Blob, Commit, ObjectID, ShaFile, Tree
    from dulwich.refs import Ref
    from dulwich.repo import Repo

STATE_FILE = "ledger.json"
FORMAT_VERSION = 1
COMMITTER = b"streampixel-distribute <ledger@streampixel-distribute.invalid>"
ZERO_ID = "0" * 40
#: What a hook may see of our environment: never a token or the API key.
_HOOK_ENV = ("PATH", "TMPDIR", "SYSTEMROOT", "LANG", "LC_ALL")
#: receive-pack's answers that mean "someone else moved the ref first": read again and retry.
#: ("non-fast-forward" is a server policy such as receive.denyNonFastForwards: not a race.)
_LOST_RACE = ("failed to update ref", "failed to lock", "cannot lock ref", "stale info",
              "incorrect old value", "but expected")


class Race(Exception):
    """The ref changed between our read and our write."""


class _Refused(Exception):
    """The repository refused to update `ref` (a hook, a policy); `reason` is shown."""

    def __init__(self, ref: str, reason: str) -> None:
        super().__init__(ref, reason)
        self.ref = ref
        self.reason = reason


# -- the state inside a commit ------------------------------------------------------------------


def _state_blob(get: Callable[[ObjectID], ShaFile], oid: ObjectID) -> bytes | None:
    """The `ledger.json` blob of commit `oid`, or None if `oid` is no ledger commit."""
    from dulwich.objects import Blob, Commit, Tree  # noqa: PLC0415 - dulwich only when used

    try:
        commit = get(oid)
        tree = get(commit.tree) if isinstance(commit, Commit) else None
        if not isinstance(tree, Tree):
            return None
        _mode, blob_id = tree[STATE_FILE.encode()]
        blob = get(blob_id)
    except KeyError:
        return None
    return blob.as_raw_string() if isinstance(blob, Blob) else None


def _state_objects(state: dict[str, Any], message: str) -> tuple[Blob, Tree, Commit]:
    from dulwich.objects import Blob, Commit, Tree  # noqa: PLC0415 - dulwich only when used

    blob = Blob.from_string(json.dumps(state, indent=1, sort_keys=True).encode())
    tree = Tree()
    tree.add(STATE_FILE.encode(), 0o100644, blob.id)
    commit = Commit()
    commit.tree = tree.id
    commit.author = commit.committer = COMMITTER
    commit.author_time = commit.commit_time = int(time.time())
    commit.author_timezone = commit.commit_timezone = 0
    commit.message = message.encode()
    return blob, tree, commit


# -- file:// ------------------------------------------------------------------------------------


class _Local:
    """A repository on this machine's disk, opened with dulwich for each operation (so packed
    refs and objects written by others since are always seen)."""

    def __init__(self, url: str, timeout: float) -> None:
        self.path = urllib.parse.unquote(url.removeprefix("file://"))
        self.timeout = timeout

    @contextlib.contextmanager
    def _repo(self) -> Iterator[Repo]:
        from dulwich.errors import NotGitRepository  # noqa: PLC0415
        from dulwich.repo import Repo  # noqa: PLC0415

        try:
            repo = Repo(self.path)
        except NotGitRepository:
            raise Failure("missing", f"no git repository at {self.path}") from None
        try:
            yield repo
        finally:
            repo.close()

    def read(self, ref: str) -> tuple[str | None, bytes | None]:
        with self._repo() as repo:
            try:
                oid = repo.refs[cast("Ref", ref.encode())]
            except KeyError:
                return None, None
            return oid.decode(), _state_blob(repo.object_store.__getitem__, oid)

    def write(self, ref: str, old: str | None, objects: tuple[Blob, Tree, Commit]) -> None:
        from dulwich.file import FileLocked  # noqa: PLC0415

        name, new = cast("Ref", ref.encode()), objects[-1].id.decode()
        with self._repo() as repo:
            for obj in objects:
                repo.object_store.add_object(obj)
            self._check(repo, ref, old, new)
            try:
                if old is None:
                    moved = repo.refs.add_if_new(name, objects[-1].id)
                else:
                    moved = repo.refs.set_if_equals(name, cast("ObjectID", old.encode()),
                                                   objects[-1].id)
            except FileLocked:
                raise Race from None
            if not moved:
                raise Race
            line = f"{old or ZERO_ID} {new} {ref}\n"
            self._hook(repo, "post-receive", [], line)  # what they say changes nothing now
            self._hook(repo, "post-update", [ref], "")

    def _check(self, repo: Repo, ref: str, old: str | None, new: str) -> None:
        """What git-receive-pack checks before it moves a ref."""
        line = f"{old or ZERO_ID} {new} {ref}\n"
        said = self._hook(repo, "pre-receive", [], line)
        if said is not None:
            raise _Refused(ref, f"pre-receive hook declined {said}")
        config = repo.get_config()
        if (old is not None and ref.startswith("refs/heads/")
                and config.get_boolean((b"receive",), b"denyNonFastForwards", False)):
            raise _Refused(ref, "non-fast-forward (receive.denyNonFastForwards)")
        said = self._hook(repo, "update", [ref, old or ZERO_ID, new], "")
        if said is not None:
            raise _Refused(ref, f"hook declined {said}")

    def _hook(self, repo: Repo, name: str, args: list[str], stdin: str) -> str | None:
        """Run hook `name` if the repository has it, as git would; what it said if it refused."""
        path = os.path.join(repo.controldir(), "hooks", name)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return None
        env = {key: os.environ[key] for key in _HOOK_ENV if os.environ.get(key)}
        env["GIT_DIR"] = repo.controldir()
        try:
            done = subprocess.run([path, *args], input=stdin.encode(), capture_output=True,
                                  env=env, cwd=repo.controldir(), timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise Failure("timeout", f"the {name} hook ran too long") from None
        except OSError as error:
            raise Failure("local", f"cannot run the {name} hook: {error.strerror}") from None
        if done.returncode == 0:
            return None
        return (done.stdout + done.stderr).decode(errors="replace").strip()[:300]

    def close(self) -> None:
        pass


class _Http:
    """A smart-HTTP git server, through dulwich's client and our pool."""

    def __init__(self, target: GitTarget) -> None:
        from dulwich.client import Urllib3HttpGitClient  # noqa: PLC0415

        self.pool = Pool(target)
        self.timeout = target.timeout
        self.client: Urllib3HttpGitClient = Urllib3HttpGitClient(
            target.url, pool_manager=self.pool, thin_packs=False, quiet=True)  # type: ignore[arg-type]
        self.messages: list[str] = []

    @contextlib.contextmanager
    def _operation(self) -> Iterator[None]:
        self.pool.deadline = time.monotonic() + self.timeout
        self.pool.received = 0
        self.messages = []
        try:
            yield
        finally:
            self.pool.deadline = float("inf")

    def _progress(self, data: bytes) -> None:
        """What the server says on the side band (hook output): kept for refusal messages."""
        text = data.decode(errors="replace").strip()
        if text and len(self.messages) < 20:
            self.messages.append(text)

    def read(self, ref: str) -> tuple[str | None, bytes | None]:
        from dulwich.repo import MemoryRepo  # noqa: PLC0415

        wanted = ref.encode()

        def determine_wants(refs: Mapping[bytes, bytes], **_options: Any) -> list[bytes]:
            return [refs[wanted]] if refs.get(wanted) else []

        store = MemoryRepo()
        with self._operation():
            result = self.client.fetch("", store, determine_wants=determine_wants,  # type: ignore[arg-type]
                                       depth=1, ref_prefix=[wanted], protocol_version=2)
        oid = result.refs.get(wanted)  # type: ignore[call-overload]
        if not oid:
            return None, None
        return oid.decode(), _state_blob(store.object_store.__getitem__, oid)

    def write(self, ref: str, old: str | None, objects: tuple[Blob, Tree, Commit]) -> None:
        from dulwich.pack import pack_objects_to_data  # noqa: PLC0415

        wanted, new = ref.encode(), objects[-1].id

        def update_refs(refs: dict[bytes, bytes]) -> dict[bytes, bytes]:
            current = refs.get(wanted)
            if (current.decode() if current else None) != old:
                raise Race  # moved since we read it: nothing is sent
            return {wanted: new}

        def generate_pack_data(*_wants: Any, **_options: Any) -> Any:
            return pack_objects_to_data(list(objects))  # exactly the three new objects

        with self._operation():
            result = self.client.send_pack("", update_refs, generate_pack_data,  # type: ignore[arg-type]
                                           progress=self._progress)
        reason = (result.ref_status or {}).get(wanted)
        if reason is None:
            return
        if any(word in reason for word in _LOST_RACE):
            raise Race
        raise _Refused(ref, " ".join([reason, *self.messages]))

    def close(self) -> None:
        self.pool.clear()


# -- the store ----------------------------------------------------------------------------------


class GitStore:
    """Reads and compare-and-swaps one ref at a time in the ledger's repository."""

    def __init__(self, target: GitTarget, description: str) -> None:
        self._target = target
        self.description = description
        self._transport: _Local | _Http | None = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None

    def read(self, ref: str) -> tuple[str | None, dict[str, Any]]:
        """The current commit id of `ref` (None if absent) and the state it holds."""
        oid, body = self._guarded("read", lambda transport: transport.read(ref))
        if oid is None:
            return None, {}
        if body is None:
            raise ledger_error(
                f"the ref {ref} in {self.description} exists but is not a streampixel-distribute "
                f"ledger (no {STATE_FILE})",
                "Point the ledger at another ref with `?ref=refs/…` or `?ref-prefix=refs/…`; it "
                "will not overwrite a ref it did not create.",
            )
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

    def write(self, ref: str, old: str | None, state: dict[str, Any], message: str) -> None:
        """Replace `ref` by a parentless commit of `state`, if it still holds `old`."""
        objects = _state_objects(state, message)
        self._guarded("update", lambda transport: transport.write(ref, old, objects))

    def _transport_for(self) -> _Local | _Http:
        if self._transport is None:
            try:
                import dulwich  # noqa: F401, PLC0415 - the check alone
            except ImportError:
                raise ledger_error(
                    "the git ledger needs the Python package dulwich, which is not installed",
                    "Reinstall streampixel-distribute (it depends on dulwich), or `pip install "
                    "dulwich`; or use a `file://` or `redis://` ledger.",
                ) from None
            if self._target.url.startswith("file://"):
                self._transport = _Local(self._target.url, self._target.timeout)
            else:
                self._transport = _Http(self._target)
        return self._transport

    def _guarded(self, action: str, operation: Callable[[Any], Any]) -> Any:
        """Run one transport operation; every failure becomes a LedgerError with its fix."""
        try:
            return operation(self._transport_for())
        except (Race, LedgerError):
            raise
        except _Refused as refused:
            raise ledger_error(
                f"{self.description} refused the update of {refused.ref}: "
                f"{printable(redact.scrub(refused.reason), 400)}",
                "Allow this ref to be updated (and force-updated) by the token: no protection, "
                "hook or ruleset may block it; or choose another ref with `?ref-prefix=refs/…`.",
            ) from None
        except Failure as failure:
            self._fail(failure.kind, failure.message, action)
        except Exception as error:  # noqa: BLE001 - dulwich raises many types; none may escape
            self._fail("local" if isinstance(error, OSError) else "protocol",
                       printable(str(error) or type(error).__name__, 300), action)

    def _fail(self, kind: str, message: str, action: str) -> NoReturn:
        detail, hint = _FAILURES.get((kind, action)) or _FAILURES.get((kind, "")) \
            or _FAILURES[("protocol", "")]
        raise ledger_error(
            detail.format(action=action, where=self.description, timeout=self._target.timeout,
                          message=redact.scrub(message) or "no details"),
            hint,
        )


_REACH = ("Check that the git server is up and reachable from the runner (firewall, proxy: set "
          "https_proxy), or use another ledger.")

# What went wrong, by (kind, action) or (kind, "") for any action: the message and its fix.
_FAILURES: dict[tuple[str, str], tuple[str, str]] = {
    ("dns", ""): (
        "cannot resolve the host of {where}: {message}",
        "Check the host name in the `ledger` value and the runner's DNS/proxy settings.",
    ),
    ("unreachable", ""): ("cannot reach {where}: {message}", _REACH),
    ("timeout", ""): (
        "{where} did not answer within {timeout:g} s ({action}): {message}",
        "Check that the git server is reachable from this runner (proxy, firewall), or raise "
        "`?timeout=`.",
    ),
    ("proxy", ""): (
        "cannot reach {where} through the proxy {message}",
        "Check the proxy in https_proxy / http_proxy / all_proxy, or list the git host in "
        "no_proxy to reach it directly.",
    ),
    ("proxy-scheme", ""): (
        "cannot reach {where}: {message}, which the git ledger does not support",
        "Use an http:// or https:// proxy in https_proxy / http_proxy / all_proxy, or list the "
        "git host in no_proxy.",
    ),
    ("407", ""): (
        "the proxy refused to forward the request to {where} without credentials: proxy "
        "{message}",
        "Put the proxy's user and password in the proxy URL (https_proxy=http://user:password@"
        "proxy:port, percent-encoded): the git ledger speaks Basic proxy authentication only.",
    ),
    ("tls", ""): (
        "TLS failed talking to {where}: {message}",
        "Give the runner the server's CA (SSL_CERT_FILE / GIT_SSL_CAINFO).",
    ),
    ("403", "update"): (
        "the token cannot push to {where}: {message}",
        "Give the job `permissions: contents: write`, or use a token with write access to the "
        "ledger repository.",
    ),
    ("401", ""): (
        "{where} rejected the credentials: {message}",
        "Check the token: the `github` and `github://owner/repo` ledgers use `github-token` (a "
        "valid, unexpired token); every other git URL needs its own `user:token@` (percent-"
        "encoded) in the ledger URL, since `github-token` is never sent to it.",
    ),
    ("403", ""): (
        "the token may not read {where}: {message}",
        "Give the token read and write access to the ledger repository (`permissions: contents: "
        "write`, or a PAT / App token for a shared repository).",
    ),
    ("404", ""): (
        "the ledger repository {where} does not exist or is not visible to the token: {message}",
        "Create the repository (an empty one is enough) and check its name; for a private "
        "repository the token needs access to it.",
    ),
    ("missing", ""): (
        "the ledger repository {where} does not exist or is not visible to the token: {message}",
        "Create the repository (`git init --bare <path>`) and check the path.",
    ),
    ("redirect", ""): (
        "{where} answered with a redirect to another host, which the git ledger does not follow "
        "(credentials never go there): {message}",
        "Put the repository's final URL in the `ledger` value.",
    ),
    ("not-git", ""): (
        "{where} is not a git smart-HTTP server: {message}",
        "Check the `ledger` value: it must be the repository's clone URL (…/repo.git); a proxy "
        "or login page in between answers with a web page instead.",
    ),
    ("too-large", ""): (
        "the ref read from {where} is far too large to be a ledger: {message}",
        "Point the ledger at its own ref with `?ref-prefix=refs/…` (the default is under "
        "refs/notes/), not at a branch.",
    ),
    ("local", ""): (
        "git could not {action} {where}: {message}",
        "Check that this runner may read and write the repository directory and its files.",
    ),
    ("protocol", ""): (
        "git could not {action} {where}: {message}",
        "Check the `ledger` value and that the git server accepts pushes from this token.",
    ),
}
_FAILURES[("http", "")] = _FAILURES[("protocol", "")]
