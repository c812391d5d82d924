"""`file:///abs/path/ledger.json`: a JSON file shared by the jobs of one host.

Format: `{"version": 1, "accounts": {key: {"next_free": float, "updated": float, "queue": {…}}}}`,
where the queue (its own format, queue.py) says who holds which slot; a release that reads only
`next_free` keeps working with it. Times are epoch seconds of the host clock, which every job on
the host shares, so no conversion is needed.

Atomicity: every read-modify-write happens under `fcntl.flock` on a sidecar `<name>.lock` file.
The lock cannot live on the data file itself because the data file is replaced by rename (a lock on
the old inode would not exclude a process that opened the new one). The write is a temporary file
in the same directory, fsynced, renamed over the old one, then the directory is fsynced: a crash
leaves either the old or the new ledger, never a torn one. The kernel drops a flock when its holder
dies, so a killed job cannot wedge the others.

Only regular files are ledgers. The data file and the lock are opened with `O_NOFOLLOW` and
`O_NONBLOCK` and checked with `fstat`: a symbolic link is refused (it could make a job create or
replace a file elsewhere, and the rename would replace the link anyway), and so is a FIFO, a
device or a socket (a FIFO would block the job forever, `/dev/zero` would never end). Every read is
bounded. New files are created 0600: the ledger is nobody else's business unless an admin decides
otherwise, and a mode the admin set on an existing ledger is kept on every rewrite. A missing
directory is still refused, not created (see `_check_place`), so modes only concern files.

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
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ..errors import LedgerError
from . import Ledger, LedgerContext, queue
from .queue import Holder, Slot
from .spec import printable, validate_spec

if sys.platform != "win32":
    import fcntl

FORMAT_VERSION = 1
T = TypeVar("T")
#: A larger file is not one of ours: entries are pruned after a day, so even thousands of accounts
#: stay far below this. The cap bounds memory whatever the path names.
MAX_BYTES = 8 * 1024 * 1024
#: Mode of a ledger or lock file this program creates (an existing file keeps its own).
NEW_FILE_MODE = 0o600
# Not on Windows, where the file ledger is refused anyway.
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
#: An entry whose next_free passed this long ago has no effect any more and is dropped.
PRUNE_AFTER = 24 * 3600.0

GITHUB_HOSTED_WARNING = (
    "The file ledger coordinates only jobs on one machine, and on GitHub-hosted runners every job "
    "gets a fresh machine: it coordinates nothing here. Use `ledger: github` or a redis:// URL "
    "to space out calls across jobs."
)

_FORM = "file:///absolute/path/ledger.json"
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a directory"))


def is_github_hosted(environ: Mapping[str, str]) -> bool:
    """True on GitHub's own runners, where each job runs on a separate, fresh machine."""
    return environ.get("RUNNER_ENVIRONMENT", "").strip().lower() == "github-hosted"


def parse_path(spec: str) -> Path:
    """The absolute path named by a `file:` ledger URL, or a LedgerError saying how to write it."""
    validate_spec(spec)  # no credentials, no encoded control characters: safe to quote below
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
        self.description = printable(f"file://{self.path}", 1000)
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
        directory_missing = False
        for path in (self.path, self.lock_path):
            try:
                mode: int | None = os.lstat(path).st_mode
            except FileNotFoundError:
                mode = None
            except NotADirectoryError:  # some "parent directory" is a file
                mode, directory_missing = None, True
            except OSError as exc:  # e.g. a parent directory the job may not search
                raise self._refused("reach", path, exc) from None
            if mode is None:
                continue
            if stat.S_ISDIR(mode) and path == self.path:
                raise LedgerError(
                    f"the file ledger path {self.path} is a directory",
                    hint=f"Name a file inside it: file://{self.path / 'ledger.json'}.")
            if not stat.S_ISREG(mode):
                raise self._not_regular(path, mode)
        if self.path.exists():
            return
        if not directory_missing:
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

    def reserve(self, key: str, interval: float, not_before: float = 0.0,
                holder: Holder | None = None) -> float:
        with self._locked(exclusive=True):
            now = self._context.now()
            data, mode = self._read()
            accounts: dict[str, Any] = data["accounts"]
            slots, next_free, slot = queue.take(
                self._slots(accounts, key), self._next_free(accounts, key), now=now,
                earliest=max(now, not_before), duration=interval, holder=holder)
            accounts[key] = {"next_free": next_free, "updated": now,
                             "queue": queue.encode(slots)}
            for stale in [k for k, v in accounts.items() if v["next_free"] < now - PRUNE_AFTER]:
                del accounts[stale]
            self._write(data, mode)
            return slot

    def peek(self, key: str, interval: float) -> float:
        with self._locked(exclusive=False):
            now = self._context.now()
            return max(now, self._next_free(self._read()[0]["accounts"], key))

    def queue(self, key: str, interval: float) -> list[Slot]:
        with self._locked(exclusive=False):
            accounts = self._read()[0]["accounts"]
        return queue.shown(self._slots(accounts, key), self._next_free(accounts, key), interval,
                           now=self._context.now())

    def give_back(self, key: str, holder_id: str) -> str:
        def change(slots: list[Slot], next_free: float,
                   now: float) -> tuple[list[Slot], float, str, bool]:
            slots, next_free, outcome = queue.give_back(slots, next_free, holder_id, now=now)
            return slots, next_free, outcome, outcome != "absent"

        return self._change(key, change)

    def advance(self, key: str, holder_id: str, earliest: float) -> float | None:
        def change(slots: list[Slot], next_free: float,
                   now: float) -> tuple[list[Slot], float, float | None, bool]:
            slots, next_free, moved = queue.advance(slots, next_free, holder_id, now=now,
                                                    earliest=earliest)
            return slots, next_free, moved, moved is not None

        return self._change(key, change)

    def stretch(self, key: str, holder_id: str, until: float) -> bool:
        def change(slots: list[Slot], next_free: float,
                   _now: float) -> tuple[list[Slot], float, bool, bool]:
            slots, next_free, changed = queue.stretch(slots, next_free, holder_id, until=until)
            return slots, next_free, changed, changed

        return self._change(key, change)

    def _change(self, key: str, change: Callable[[list[Slot], float, float],
                                                 tuple[list[Slot], float, T, bool]]) -> T:
        """Change an account's queue under the lock; `change` says whether to write."""
        with self._locked(exclusive=True):
            now = self._context.now()
            data, mode = self._read()
            accounts: dict[str, Any] = data["accounts"]
            slots, next_free, result, write = change(
                self._slots(accounts, key), self._next_free(accounts, key), now)
            if write:
                accounts[key] = {"next_free": next_free, "updated": now,
                                 "queue": queue.encode(slots)}
                self._write(data, mode)
            return result

    @staticmethod
    def _next_free(accounts: Mapping[str, Any], key: str) -> float:
        entry = accounts.get(key)
        return float(entry["next_free"]) if entry is not None else -math.inf

    @staticmethod
    def _slots(accounts: Mapping[str, Any], key: str) -> list[Slot]:
        entry = accounts.get(key)
        return queue.decode(entry.get("queue")) if entry is not None else []

    # -- storage -------------------------------------------------------------------------------

    def _refused(self, what: str, target: Path, exc: OSError) -> LedgerError:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link (or a loop of them)
            with contextlib.suppress(OSError):
                return self._not_regular(target, os.lstat(target).st_mode)
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM,
                                                             errno.EROFS):
            hint = (f"Make {self.path.parent} (and the files in it) writable, and its parent "
                    f"directories searchable, by the user running the job (uid {os.getuid()}); "
                    "or point the ledger at a directory that user can write. New ledger files "
                    "are private to the user who creates them (mode 0600): to share one between "
                    f"several users, create {self.path.name} and {self.lock_path.name} first "
                    "with group read and write (chmod 660) in a group-owned directory; their "
                    "mode is kept.")
        elif isinstance(exc, FileNotFoundError):
            hint = f"Create {target.parent} (mkdir -p) or point the ledger at an existing one."
        else:
            hint = f"Check the file system holding {target} (space, mount, permissions)."
        return LedgerError(f"cannot {what} {target}: {reason}", title="Rate-limit ledger refused",
                           hint=hint)

    def _not_regular(self, target: Path, mode: int) -> LedgerError:
        kind = next((name for test, name in _KINDS if test(mode)), "a special file")
        if stat.S_ISLNK(mode):
            hint = ("Point the ledger URL at the file itself, not at a link: a link is never "
                    f"followed (every write replaces the file), or remove {target}.")
        else:
            hint = (f"Remove {target} (the ledger creates it as a plain file) or point the "
                    "ledger at a file of its own.")
        return LedgerError(
            f"{target} is {kind}; the file ledger and its lock must be regular files",
            title="Rate-limit ledger refused",
            hint=hint,
        )

    def _open_lock(self) -> int:
        """The lock file, opened without following a link; created 0600 or with the ledger's
        mode (so a ledger the admin shared with a group gets a lock that group can open too)."""
        flags = os.O_RDWR | os.O_CLOEXEC | _NOFOLLOW | _NONBLOCK
        for _ in range(3):  # the lock may vanish between the two opens (someone deleted it)
            try:
                fd = os.open(self.lock_path, flags | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)
            except FileExistsError:
                try:
                    fd = os.open(self.lock_path, flags)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise self._refused("open the lock file", self.lock_path, exc) from None
                created = False
            except OSError as exc:
                raise self._refused("open the lock file", self.lock_path, exc) from None
            else:
                created = True
            try:
                self._check_lock(fd, created)
            except BaseException:
                os.close(fd)
                raise
            return fd
        raise LedgerError(f"the lock file {self.lock_path} keeps disappearing",
                          title="Rate-limit ledger refused",
                          hint="Something deletes it while jobs run; stop that, the lock file "
                          "must stay.")

    def _check_lock(self, fd: int, created: bool) -> None:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise self._not_regular(self.lock_path, mode)
        if created:  # set the mode outright: a umask must not lock out the next job
            wanted = NEW_FILE_MODE
            with contextlib.suppress(OSError):
                ledger = os.lstat(self.path).st_mode
                if stat.S_ISREG(ledger):
                    wanted = stat.S_IMODE(ledger) & 0o666
            with contextlib.suppress(OSError):
                os.fchmod(fd, wanted)

    @contextlib.contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        fd = self._open_lock()
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

    def _read_bytes(self) -> tuple[bytes, int] | None:
        """The file's content and mode (None: no file yet); only a regular file, read bounded."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW | _NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._refused("read", self.path, exc) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self._not_regular(self.path, info.st_mode)
            chunks: list[bytes] = []
            size = 0
            while size <= MAX_BYTES:  # bounded whatever st_size claims
                chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except OSError as exc:
            raise self._refused("read", self.path, exc) from None
        finally:
            os.close(fd)
        if size > MAX_BYTES:
            raise self._corrupt(f"it is larger than {MAX_BYTES} bytes, far more than a ledger")
        return b"".join(chunks), stat.S_IMODE(info.st_mode)

    def _read(self) -> tuple[dict[str, Any], int | None]:
        """The ledger and the file's mode (None: no file yet)."""
        found = self._read_bytes()
        fresh: dict[str, Any] = {"version": FORMAT_VERSION, "accounts": {}}
        if found is None:
            return fresh, None
        raw, mode = found
        if not raw.strip():  # `touch ledger.json` is a fine way to create one
            return fresh, mode
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
        return data, mode

    def _write(self, data: dict[str, Any], mode: int | None) -> None:
        """Replace the ledger atomically; `mode` is the old file's (None: a new, private file)."""
        directory = self.path.parent
        tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        body = json.dumps(data, indent=1, sort_keys=True).encode() + b"\n"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW,
                         NEW_FILE_MODE)
        except OSError as exc:
            raise self._refused("write to", directory, exc) from None
        try:
            with os.fdopen(fd, "wb") as handle:
                # Keep a mode the admin chose (e.g. group-writable for several runner users).
                os.fchmod(handle.fileno(), NEW_FILE_MODE if mode is None else mode)
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
            dir_fd = os.open(directory, os.O_RDONLY | _DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
