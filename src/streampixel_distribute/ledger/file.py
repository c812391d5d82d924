"""`file:///abs/path/ledger.json`: a JSON file shared by the jobs of one host.

Format: `{"version": 1, "accounts": {key: {"next_free": float, "updated": float}}}`. Times are epoch
seconds of the host clock, which every job on the host shares, so no conversion is needed.

Atomicity: every read-modify-write happens under `fcntl.flock` on a sidecar `<name>.lock` file.
The lock cannot live on the data file itself because the data file is replaced by rename (a lock on
the old inode would not exclude a process that opened the new one). The write is a temporary file
in the same directory, fsynced, renamed over the old one, then the directory is fsynced: a crash
leaves either the old or the new ledger, never a torn one. The kernel drops a flock when its holder
dies, so a killed job cannot wedge the others.

A file that does not parse as a ledger is NOT rebuilt. Our own writes cannot tear it, so a bad file
means something else wrote there, possibly because the ledger URL points at a file that belongs to
another program; overwriting it could destroy that file. The error says to delete it, which is safe
for a real ledger: the next job starts afresh, and at worst one call meets a 429 that the
coordinator handles anyway.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import secrets
import stat
import sys
import urllib.parse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import LedgerError
from . import Ledger, LedgerContext

if sys.platform != "win32":
    import fcntl

FORMAT_VERSION = 1
#: An entry whose next_free passed this long ago has no effect any more and is dropped.
PRUNE_AFTER = 24 * 3600.0

GITHUB_HOSTED_WARNING = (
    "The file ledger coordinates only jobs on one machine, and on GitHub-hosted runners every job "
    "gets a fresh machine: it coordinates nothing here. Use `ledger: github` or a redis:// URL "
    "to space out calls across jobs."
)

_FORM = "file:///absolute/path/ledger.json"


def is_github_hosted(environ: Mapping[str, str]) -> bool:
    """True on GitHub's own runners, where each job runs on a separate, fresh machine."""
    return environ.get("RUNNER_ENVIRONMENT", "").strip().lower() == "github-hosted"


def parse_path(spec: str) -> Path:
    """The absolute path named by a `file:` ledger URL, or a LedgerError saying how to write it."""
    parts = urllib.parse.urlsplit(spec)
    if parts.scheme.lower() != "file":
        raise LedgerError(f"not a file ledger URL: {spec!r}", hint=f"Use {_FORM}.")
    if parts.netloc not in ("", "localhost"):
        # `file://ledger.json` or `file://tmp/x.json`: the first segment became a host name.
        guess = "/" + parts.netloc + parts.path
        raise LedgerError(
            f"the file ledger URL {spec!r} names a host ({parts.netloc!r}), not an absolute path",
            title="Invalid ledger",
            hint=f"Use three slashes and an absolute path: {_FORM} (perhaps file://{guess}).",
        )
    raw = urllib.parse.unquote(parts.path)
    if not raw:
        raise LedgerError(f"the file ledger URL {spec!r} has no path", title="Invalid ledger",
                          hint=f"Use {_FORM}.")
    path = Path(raw)
    if not path.is_absolute():
        # Relative paths would silently split jobs whose working directories differ.
        raise LedgerError(
            f"the file ledger path {raw!r} is relative",
            title="Invalid ledger",
            hint=f"Use an absolute path, e.g. file://{Path.cwd() / raw}. Every job on the host "
            "must name the same file.",
        )
    if raw.endswith("/"):
        raise LedgerError(f"the file ledger path {raw!r} names a directory",
                          title="Invalid ledger", hint=f"Add a file name: file://{raw}ledger.json.")
    return path


class FileLedger(Ledger):
    def __init__(self, spec: str, context: LedgerContext) -> None:
        self._context = context
        self.path = parse_path(spec)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.description = f"file://{self.path}"
        self.warning: str | None = (
            GITHUB_HOSTED_WARNING if is_github_hosted(context.environ) else None
        )
        if sys.platform == "win32":
            raise LedgerError(
                "the file ledger needs POSIX file locks, which Windows does not have",
                hint="On Windows use a redis:// ledger or `github`.",
            )
        self._check_place()

    def _check_place(self) -> None:
        directory = self.path.parent
        try:
            mode: int | None = self.path.stat().st_mode
        except FileNotFoundError:
            mode = None
        except NotADirectoryError:  # some "parent directory" is a file
            mode, directory_missing = None, True
        except OSError as exc:  # e.g. a parent directory the job may not search
            raise self._refused("reach", self.path, exc) from None
        if mode is not None:
            if stat.S_ISDIR(mode):
                raise LedgerError(
                    f"the file ledger path {self.path} is a directory",
                    hint=f"Name a file inside it: file://{self.path / 'ledger.json'}.")
            return
        try:
            directory_missing = not stat.S_ISDIR(directory.stat().st_mode)
        except OSError:
            directory_missing = True
        if directory_missing:
            # Not created for the user: a typo would give each job its own private ledger.
            raise LedgerError(
                f"the directory of the file ledger, {directory}, does not exist",
                hint=f"Create it first (mkdir -p {directory}) on this host, or point the ledger "
                "at an existing directory; every job must name the same file.",
            )

    def reserve(self, key: str, interval: float, not_before: float = 0.0) -> float:
        with self._locked(exclusive=True):
            now = self._context.now()
            data = self._read()
            accounts: dict[str, Any] = data["accounts"]
            slot = max(now, not_before, self._next_free(accounts, key))
            accounts[key] = {"next_free": slot + interval, "updated": now}
            for stale in [k for k, v in accounts.items() if v["next_free"] < now - PRUNE_AFTER]:
                del accounts[stale]
            self._write(data)
            return slot

    def peek(self, key: str, interval: float) -> float:
        with self._locked(exclusive=False):
            now = self._context.now()
            return max(now, self._next_free(self._read()["accounts"], key))

    @staticmethod
    def _next_free(accounts: Mapping[str, Any], key: str) -> float:
        entry = accounts.get(key)
        return float(entry["next_free"]) if entry is not None else -math.inf

    # -- storage -------------------------------------------------------------------------------

    def _refused(self, what: str, target: Path, exc: OSError) -> LedgerError:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM,
                                                             errno.EROFS):
            hint = (f"Make {self.path.parent} (and the files in it) writable, and its parent "
                    f"directories searchable, by the user running the job (uid {os.getuid()}); "
                    "or point the ledger at a directory that user can write.")
        elif isinstance(exc, FileNotFoundError):
            hint = f"Create {target.parent} (mkdir -p) or point the ledger at an existing one."
        else:
            hint = f"Check the file system holding {target} (space, mount, permissions)."
        return LedgerError(f"cannot {what} {target}: {reason}", title="Rate-limit ledger refused",
                           hint=hint)

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        try:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise self._refused("open the lock file", self.lock_path, exc) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _corrupt(self, why: str) -> LedgerError:
        return LedgerError(
            f"{self.path} is not a readable streampixel-distribute ledger: {why}",
            title="Rate-limit ledger corrupt",
            hint=f"If nothing else uses {self.path}, delete it: the next job starts a fresh "
            "ledger (at worst one call gets a 429, which is retried). If the file belongs to "
            "another program, point the ledger at a different file.",
        )

    def _read(self) -> dict[str, Any]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {"version": FORMAT_VERSION, "accounts": {}}
        except OSError as exc:
            raise self._refused("read", self.path, exc) from None
        if not raw.strip():  # `touch ledger.json` is a fine way to create one
            return {"version": FORMAT_VERSION, "accounts": {}}
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise self._corrupt(f"invalid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise self._corrupt("the top level is not an object")
        version = data.get("version")
        if type(version) is not int or version < 1:
            raise self._corrupt(f"missing or invalid version {version!r}")
        if version > FORMAT_VERSION:
            raise LedgerError(
                f"{self.path} has format version {version}, written by a newer "
                f"streampixel-distribute (this one reads version {FORMAT_VERSION})",
                title="Rate-limit ledger too new",
                hint="Upgrade streampixel-distribute on every job that shares this ledger.",
            )
        accounts = data.get("accounts")
        if not isinstance(accounts, dict):
            raise self._corrupt("`accounts` is not an object")
        for key, entry in accounts.items():
            next_free = entry.get("next_free") if isinstance(entry, dict) else None
            if (isinstance(next_free, bool) or not isinstance(next_free, int | float)
                    or not math.isfinite(next_free)):
                raise self._corrupt(f"account {key!r} has no numeric next_free")
        return data

    def _write(self, data: dict[str, Any]) -> None:
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        body = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise self._refused("write to", directory, exc) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                with contextlib.suppress(FileNotFoundError):
                    # Keep a mode the admin chose (e.g. group-writable for several runner users).
                    os.fchmod(handle.fileno(), stat.S_IMODE(self.path.stat().st_mode))
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._refused("write", self.path, exc) from None
        # Make the rename itself durable; some file systems cannot fsync a directory.
        with contextlib.suppress(OSError):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
