"""The `file:` ledger: format, failure modes and the GitHub-hosted warning (contract: elsewhere)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import resource
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger import LedgerContext, open_ledger
from streampixel_distribute.ledger.file import (
    FORMAT_VERSION,
    GITHUB_HOSTED_WARNING,
    MAX_BYTES,
    PRUNE_AFTER,
    FileLedger,
    is_github_hosted,
    parse_path,
)
from streampixel_distribute.ledger.queue import Holder, Slot
from support.hostile import finish_action, spawn_action
from support.runner import ActionRun, run_action
from support.tools import missing

T0 = 1_700_000_000.0


class Tick:
    """A caller clock the test moves by hand: the file ledger uses the caller's clock as is."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ledger_at(path: Path, clock: Tick | None = None, **environ: str) -> FileLedger:
    ledger = open_ledger(path.as_uri(), LedgerContext(environ=environ, now=clock or Tick()))
    assert isinstance(ledger, FileLedger)
    return ledger


def test_exact_gcra_on_the_callers_clock(tmp_path: Path) -> None:
    clock = Tick()
    ledger = ledger_at(tmp_path / "ledger.json", clock)
    assert ledger.reserve("a", 120) == T0
    assert ledger.reserve("a", 120) == T0 + 120
    clock.now = T0 + 100
    assert ledger.peek("a", 120) == T0 + 240
    assert ledger.reserve("a", 120, not_before=T0 + 1000) == T0 + 1000
    clock.now = T0 + 5000  # long after next_free: the slot is now again
    assert ledger.reserve("a", 120) == T0 + 5000


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.floats(0.5, 600), st.floats(0, 900),
                          st.floats(0, 2000)), max_size=12))
def test_matches_the_model_exactly(ops: list[tuple[bool, float, float, float]]) -> None:
    """With a hand-moved clock the expected slot is a number, not a window."""
    with tempfile.TemporaryDirectory() as tmp:
        clock = Tick()
        ledger = ledger_at(Path(tmp) / "ledger.json", clock)
        next_free = float("-inf")
        for is_reserve, interval, advance, not_before_offset in ops:
            clock.now += advance
            not_before = clock.now + not_before_offset
            if is_reserve:
                expected = max(clock.now, not_before, next_free)
                assert ledger.reserve("k", interval, not_before) == expected
                next_free = expected + interval
            else:
                assert ledger.peek("k", interval) == max(clock.now, next_free)


def test_file_format(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger_at(path).reserve("sp-abc", 120, holder=Holder("0123456789ab", "upload", "p1"))
    data = json.loads(path.read_text())
    queue = {"v": 1, "slots": [{"at": T0, "until": T0 + 120,
                                "by": {"id": "0123456789ab", "cmd": "upload", "project": "p1"}}]}
    assert data == {"version": FORMAT_VERSION, "accounts": {
        "sp-abc": {"next_free": T0 + 120, "updated": T0, "queue": queue}}}
    # The lock is a sidecar that stays; the temporary files of the atomic write do not.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json", "ledger.json.lock"]


def old_release_reserves(path: Path, key: str, interval: float, now: float) -> float:
    """What a release before the queue did to the file: read next_free, write it back alone."""
    data = json.loads(path.read_text())
    entry = data["accounts"].get(key, {})
    slot = max(now, float(entry.get("next_free", now)))
    data["accounts"][key] = {"next_free": slot + interval, "updated": now}
    path.write_text(json.dumps(data))
    return slot


def test_a_rolling_upgrade_works_both_ways(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    first = ledger.reserve("k", 120, holder=Holder("0123456789ab", "upload"))
    # An older job reads our next_free as always and queues after it, dropping the queue.
    assert old_release_reserves(path, "k", 120, T0) == first + 120
    # We read its next_free and queue after it; its slot shows as an older release's.
    assert ledger.reserve("k", 120, holder=Holder("abcdef012345", "distribute")) == T0 + 240
    shown = ledger.queue("k", 120)
    assert [s.holder.id if s.holder else None for s in shown] == [None, "abcdef012345"]
    assert shown[0].at == T0 + 120
    # The older job queues after us again; our give-back cannot roll back across it.
    old_release_reserves(path, "k", 120, T0)
    assert ledger.give_back("k", "abcdef012345") == "absent"  # its queue entry was dropped
    assert ledger.peek("k", 120) == T0 + 480


def test_unknown_fields_survive_a_rewrite(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": 1, "note": "kept", "accounts": {
        "b": {"next_free": T0 + 50, "updated": T0, "by": "job 7"}}}))
    ledger_at(path).reserve("a", 10)
    data = json.loads(path.read_text())
    assert data["note"] == "kept"
    assert data["accounts"]["b"] == {"next_free": T0 + 50, "updated": T0, "by": "job 7"}


def test_long_past_entries_are_pruned(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": 1, "accounts": {
        "old": {"next_free": T0 - PRUNE_AFTER - 1, "updated": T0 - PRUNE_AFTER - 200},
        "recent": {"next_free": T0 - 60, "updated": T0 - 180},
    }}))
    ledger_at(path).reserve("new", 120)
    assert sorted(json.loads(path.read_text())["accounts"]) == ["new", "recent"]


def test_peek_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    assert ledger_at(path).peek("a", 120) == T0
    assert not path.exists()


def test_empty_file_is_a_fresh_ledger(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.touch()
    assert ledger_at(path).reserve("a", 120) == T0
    assert json.loads(path.read_text())["accounts"]["a"]["next_free"] == T0 + 120


def test_file_mode_is_kept(tmp_path: Path) -> None:
    """An admin may make the ledger group-writable for several runner users; a rewrite keeps it."""
    path = tmp_path / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o664)
    ledger_at(path).reserve("a", 1)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ('{"version": 1, "accounts": {"a": {"next_free": 17000', "invalid JSON"),  # truncated
        ("\x00\x00\x00garbage", "invalid JSON"),
        (b"\xff\xfe{}", "invalid JSON"),
        ("[1, 2]", "top level"),
        ('{"accounts": {}}', "version"),
        ('{"version": "1", "accounts": {}}', "version"),
        ('{"version": 1, "accounts": []}', "accounts"),
        ('{"version": 1, "accounts": {"a": {"next_free": "soon"}}}', "next_free"),
        ('{"version": 1, "accounts": {"a": 12}}', "next_free"),
        ('{"name": "my-app", "version": "1.0.0", "dependencies": {}}', "version"),  # package.json
    ],
)
def test_a_corrupt_file_is_reported_and_left_alone(
    tmp_path: Path, content: str | bytes, why: str
) -> None:
    path = tmp_path / "ledger.json"
    raw = content if isinstance(content, bytes) else content.encode()
    path.write_bytes(raw)
    ledger = ledger_at(path)
    calls: list[Callable[[], float]] = [lambda: ledger.reserve("a", 120),
                                        lambda: ledger.peek("a", 120)]
    for call in calls:
        with pytest.raises(LedgerError) as caught:
            call()
        assert caught.value.exit_code == 7
        assert why in caught.value.detail
        assert str(path) in caught.value.detail
        assert "delete it" in caught.value.hint
    # Never rebuilt: the file may belong to someone else.
    assert path.read_bytes() == raw


def test_a_newer_format_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    body = json.dumps({"version": FORMAT_VERSION + 1, "accounts": {}, "slots": []})
    path.write_text(body)
    with pytest.raises(LedgerError) as caught:
        ledger_at(path).reserve("a", 120)
    assert "newer streampixel-distribute" in caught.value.detail
    assert caught.value.hint.startswith("Upgrade")
    assert path.read_text() == body


def test_a_missing_directory_is_reported_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "not" / "here"
    with pytest.raises(LedgerError) as caught:
        ledger_at(missing / "ledger.json")
    assert str(missing) in caught.value.detail
    assert f"mkdir -p {missing}" in caught.value.hint
    assert not missing.exists()


def test_a_directory_is_not_a_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError) as caught:
        ledger_at(tmp_path)
    assert "is a directory" in caught.value.detail
    assert str(tmp_path / "ledger.json") in caught.value.hint


@pytest.mark.parametrize(
    ("spec", "hint_part"),
    [
        ("file:ledger.json", "Use an absolute path, e.g. file://"),
        ("file:./state/ledger.json", "Use an absolute path"),
        ("file://ledger.json", "three slashes"),
        ("file://tmp/ledger.json", "file:///tmp/ledger.json"),
        ("file:///tmp/", "Add a file name"),
        ("file://", "file:///absolute/path/ledger.json"),
    ],
)
def test_malformed_urls_say_how_to_write_them(spec: str, hint_part: str) -> None:
    with pytest.raises(LedgerError) as caught:
        open_ledger(spec, LedgerContext())
    assert hint_part in caught.value.hint


def test_percent_encoded_paths(tmp_path: Path) -> None:
    directory = tmp_path / "with space"
    directory.mkdir()
    ledger = open_ledger((directory / "ledger.json").as_uri(), LedgerContext(now=Tick()))
    ledger.reserve("a", 1)
    assert (directory / "ledger.json").exists()
    assert ledger.description == f"file://{directory / 'ledger.json'}"


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """As root, run the block with nobody's real and effective ids, in this process (file
    permissions apply and the effective capabilities are gone; mutmut sees the calls). The saved
    ids stay root's, only so that root can be taken back afterwards. Without root, as is."""
    if os.geteuid() != 0:
        yield
        return
    groups = os.getgroups()
    os.setgroups([])
    os.setresgid(65534, 65534, 0)
    os.setresuid(65534, 65534, 0)
    try:
        yield
    finally:
        os.setresuid(0, 0, 0)
        os.setresgid(0, 0, 0)
        os.setgroups(groups)


def reserve_as_unprivileged(spec: str) -> LedgerError | None:
    """Reserve once as a user file permissions apply to; the error, if any."""
    with unprivileged():
        try:
            open_ledger(spec).reserve("a", 120)
        except LedgerError as exc:
            return exc
    return None


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temp dir any user may traverse (pytest's own are 0700, which would hide the case)."""
    base = Path(tempfile.mkdtemp(prefix="spd-perm-"))
    base.chmod(0o755)
    yield base
    for directory in (base, *base.iterdir()):
        directory.chmod(0o755)
    shutil.rmtree(base)


def test_a_directory_the_job_cannot_write(open_tmp: Path) -> None:
    directory = open_tmp / "locked"
    directory.mkdir()
    path = directory / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o644)
    directory.chmod(0o755 if os.geteuid() == 0 else 0o555)  # root-owned: not writable by nobody
    error = reserve_as_unprivileged(path.as_uri())
    assert error is not None
    assert error.title == "Rate-limit ledger refused"
    assert "Permission denied" in error.detail
    assert "writable" in error.hint
    assert json.loads(path.read_text()) == {"version": 1, "accounts": {}}


def test_a_directory_the_job_cannot_reach(open_tmp: Path) -> None:
    hidden = open_tmp / "hidden"
    hidden.mkdir()
    hidden.chmod(0o700 if os.geteuid() == 0 else 0o000)
    error = reserve_as_unprivileged((hidden / "ledger.json").as_uri())
    assert error is not None
    assert error.title == "Rate-limit ledger refused"
    assert f"cannot reach {hidden / 'ledger.json'}: Permission denied" in error.detail
    assert "searchable" in error.hint


def test_github_hosted_runner_warning(tmp_path: Path) -> None:
    assert is_github_hosted({"RUNNER_ENVIRONMENT": "github-hosted"})
    assert not is_github_hosted({"RUNNER_ENVIRONMENT": "self-hosted"})
    assert not is_github_hosted({})
    hosted = ledger_at(tmp_path / "a.json", RUNNER_ENVIRONMENT="github-hosted")
    assert hosted.warning is not None
    assert "coordinates nothing" in hosted.warning
    assert "redis://" in hosted.warning
    assert ledger_at(tmp_path / "b.json", RUNNER_ENVIRONMENT="self-hosted").warning is None
    assert ledger_at(tmp_path / "c.json").warning is None


# -- modes, links, special files (hostile review items 6 and 7) ---------------------------------


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most runners have (022), under which a plain create is world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o277], ids=["022", "002", "277"])
def test_new_ledger_and_lock_files_are_private(tmp_path: Path, umask: int) -> None:
    """0600 under the usual umask (which used to give 0644) and under an odd one (0400 would
    lock the next job out of its own ledger)."""
    path = tmp_path / "ledger.json"
    old = os.umask(umask)
    try:
        ledger_at(path).reserve("a", 120)
        ledger_at(path).reserve("a", 120)  # a second job can open and rewrite both
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ledger.json.lock").stat().st_mode) == 0o600


@pytest.mark.usefixtures("usual_umask")
def test_a_lock_created_next_to_a_shared_ledger_is_shared_alike(tmp_path: Path) -> None:
    """An admin who made the ledger group-writable for several runner users gets a lock file
    those users can open too, and the ledger keeps its mode."""
    path = tmp_path / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o660)
    ledger_at(path).reserve("a", 120)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert stat.S_IMODE((tmp_path / "ledger.json.lock").stat().st_mode) == 0o660


def refusal(call: Callable[[], object]) -> LedgerError:
    with pytest.raises(LedgerError) as caught:
        call()
    assert caught.value.exit_code == 7
    assert caught.value.hint
    return caught.value


def test_a_dangling_lock_symlink_is_refused_and_its_target_not_created(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    target = tmp_path / "elsewhere" / "planted"
    target.parent.mkdir()
    (tmp_path / "ledger.json.lock").symlink_to(target)
    error = refusal(lambda: ledger_at(path).reserve("a", 120))
    assert "ledger.json.lock is a symbolic link" in error.detail
    assert not target.exists()
    assert not path.exists()


def test_a_lock_link_planted_after_the_check_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)  # checked: nothing there yet
    target = tmp_path / "planted"
    (tmp_path / "ledger.json.lock").symlink_to(target)
    error = refusal(lambda: ledger.reserve("a", 120))
    assert "symbolic link" in error.detail
    assert not target.exists()


def test_a_ledger_linked_to_a_regular_file_is_refused_and_the_file_left_alone(
    tmp_path: Path,
) -> None:
    real = tmp_path / "real.json"
    real.write_text('{"version": 1, "accounts": {}}')
    path = tmp_path / "ledger.json"
    path.symlink_to(real)
    error = refusal(lambda: ledger_at(path).reserve("a", 120))
    assert "ledger.json is a symbolic link" in error.detail
    assert "file itself" in error.hint
    assert path.is_symlink()
    assert real.read_text() == '{"version": 1, "accounts": {}}'


@pytest.mark.timeout(30)  # a blocking open of the FIFO would hang here for good
def test_a_ledger_replaced_by_a_fifo_after_the_check_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    os.mkfifo(path)
    error = refusal(lambda: ledger.peek("a", 120))  # O_NONBLOCK: no writer needed to get here
    assert "named pipe" in error.detail


def test_an_oversized_file_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    # Valid JSON, but 16 MiB: thousands of times what any real ledger holds.
    body = json.dumps({"version": 1, "accounts": {}, "pad": "x" * (16 << 20)})
    path.write_text(body)
    error = refusal(lambda: ledger_at(path).reserve("a", 120))
    assert error.title == "Rate-limit ledger corrupt"
    assert "larger than" in error.detail
    assert path.stat().st_size == len(body)  # left alone



# -- I/O failures: each names the file, the cause and the fix, and leaves the ledger alone -------


def test_a_path_through_a_regular_file_is_a_missing_directory(tmp_path: Path) -> None:
    """`…/notes.txt/ledger.json`: the "directory" is a file, so the ledger cannot exist there."""
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    error = refusal(lambda: ledger_at(notes / "ledger.json"))
    assert f"the directory of the file ledger, {notes}, does not exist" in error.detail
    assert f"mkdir -p {notes}" in error.hint
    assert notes.read_text() == "mine"


@pytest.mark.parametrize("cause", ["name-too-long", "link-loop"])
def test_a_path_the_file_system_refuses_names_the_cause(tmp_path: Path, cause: str) -> None:
    if cause == "name-too-long":
        path = tmp_path / ("x" * 300) / "ledger.json"
        reason = "File name too long"
    else:
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        path = tmp_path / "loop" / "ledger.json"
        reason = "Too many levels of symbolic links"
    error = refusal(lambda: ledger_at(path))
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == f"cannot reach {path}: {reason}"
    assert error.hint == f"Check the file system holding {path} (space, mount, permissions)."


def test_a_directory_removed_after_the_check_says_to_create_it(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir()
    ledger = ledger_at(directory / "ledger.json")
    directory.rmdir()  # e.g. a workspace clean-up between two jobs
    error = refusal(lambda: ledger.reserve("a", 120))
    assert error.detail == (f"cannot open the lock file {directory}/ledger.json.lock: "
                            "No such file or directory")
    assert error.hint == f"Create {directory} (mkdir -p) or point the ledger at an existing one."
    assert not directory.exists()  # not created behind the user's back


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(30)  # a blocking open of the FIFO would hang here for good
def test_a_lock_replaced_by_a_fifo_after_the_check_is_refused_and_closed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    os.mkfifo(tmp_path / "ledger.json.lock")
    before = open_descriptors()
    for call in (lambda: ledger.reserve("a", 120), lambda: ledger.peek("a", 120)):
        error = refusal(call)
        assert error.detail == (f"{path}.lock is a named pipe (FIFO); the file ledger and its "
                                "lock must be regular files")
        assert "Remove" in error.hint
    assert open_descriptors() == before  # the refused lock was not left open
    assert not path.exists()


def test_a_ledger_linked_after_the_check_is_not_followed(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)  # checked: nothing there yet
    real = tmp_path / "real.json"
    real.write_text('{"version": 1, "accounts": {}}')
    path.symlink_to(real)
    for call in (lambda: ledger.reserve("a", 120), lambda: ledger.peek("a", 120)):
        error = refusal(call)
        assert error.detail == (f"{path} is a symbolic link; the file ledger and its lock must "
                                "be regular files")
        assert "file itself" in error.hint
    assert path.is_symlink()
    assert real.read_text() == '{"version": 1, "accounts": {}}'


def test_a_shared_ledger_in_a_directory_the_job_cannot_write(open_tmp: Path) -> None:
    """The ledger and its lock are shared (0666) but the directory is not writable: the lock
    and the read work, the atomic rewrite (a temporary file next to the ledger) cannot."""
    directory = open_tmp / "shared"
    directory.mkdir()
    path = directory / "ledger.json"
    body = '{"version": 1, "accounts": {}}'
    path.write_text(body)
    (directory / "ledger.json.lock").write_text("")
    for made in (path, directory / "ledger.json.lock"):
        made.chmod(0o666)
    directory.chmod(0o755 if os.geteuid() == 0 else 0o555)  # root-owned: not writable by nobody
    error = reserve_as_unprivileged(path.as_uri())
    assert error is not None
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == f"cannot write to {directory}: Permission denied"
    assert f"Make {directory} (and the files in it) writable" in error.hint
    assert path.read_text() == body
    assert sorted(p.name for p in directory.iterdir()) == ["ledger.json", "ledger.json.lock"]


FULL_DISK = r"""
import json, os, sys
from pathlib import Path
from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger import LedgerContext, open_ledger

data = Path(sys.argv[1])
path = data / "ledger.json"
path.write_text(json.dumps({"version": 1, "accounts": {"sp-other": {"next_free": 5.0e9}}}))
ledger = open_ledger(path.as_uri(), LedgerContext(now=lambda: 1.7e9))
ledger.peek("sp-mine", 120)  # the lock file exists from here on
fd = os.open(data / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
try:
    while True:
        os.write(fd, b"\0" * 4096)
except OSError as exc:
    assert exc.errno == 28, exc  # ENOSPC: the disk is full
os.close(fd)
try:
    ledger.reserve("sp-mine", 120)
    answer = None
except LedgerError as exc:
    answer = [exc.title, exc.detail, exc.hint]
print(json.dumps({"error": answer, "ledger": path.read_text(),
                  "files": sorted(p.name for p in data.iterdir())}))
"""


def test_a_full_disk_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    """The rewrite fails half-way (no space for the new ledger): the old one stays whole, the
    temporary file is removed, and the error says where to look."""
    from support.listener import can_mount, listener_env, private_mount

    if not can_mount():
        missing("a private mount namespace (a tiny tmpfs) needs root and `unshare`")
    data = tmp_path / "data"
    data.mkdir()
    done = subprocess.run([*private_mount(data, "size=64k"), sys.executable, "-c", FULL_DISK,
                           str(data)], env=listener_env(), capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["error"] is not None, "the write on a full disk succeeded"
    title, detail, hint = report["error"]
    assert title == "Rate-limit ledger refused"
    assert detail == f"cannot write {data / 'ledger.json'}: No space left on device"
    assert hint == (f"Check the file system holding {data / 'ledger.json'} (space, mount, "
                    "permissions).")
    assert json.loads(report["ledger"]) == {"version": 1,
                                            "accounts": {"sp-other": {"next_free": 5.0e9}}}
    assert report["files"] == ["filler", "ledger.json", "ledger.json.lock"]


#: A dry run: nothing is sent anywhere, the ledger is opened and peeked.
DRY_RUN = {"api-key": "sk-file-ledger-test-7f3a", "user-id": "65de00000000000000000f01",
           "project-id": "65de00000000000000000f02", "upload-id": "65de00000000000000000f03",
           "api-url": "http://127.0.0.1:9/pixelStripeApi", "dry-run": "true", "max-wait": "5"}


def run_with_memory_cap(tmp: Path, ledger: str) -> ActionRun:
    """The action (dry run) under a 1 GiB address-space cap, so that a ledger read which never
    ends fails on its own instead of eating the machine; a hang is ended after 60 s."""
    live = spawn_action(tmp, {**DRY_RUN, "ledger": ledger},
                        prefix=["prlimit", f"--as={1 << 30}", "--"])
    return finish_action(live, timeout=60)


@pytest.mark.parametrize("special", ["dev-zero", "fifo"])
def test_the_action_refuses_a_special_file_as_ledger(tmp_path: Path, special: str) -> None:
    """A ledger linked to /dev/zero grew without end (MemoryError); a FIFO blocked the job past
    max-wait. Both are refused at once, exit 7, with a fix."""
    path = tmp_path / "ledger.json"
    if special == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    run = run_with_memory_cap(tmp_path / "run", path.as_uri())
    assert run.exit_code == 7, run.stdout + run.stderr
    assert run.outputs["error"] == "ledger-error"
    assert ("symbolic link" if special == "dev-zero" else "named pipe") in run.stdout
    assert "Traceback" not in run.stdout + run.stderr



def test_the_action_warns_that_a_file_ledger_coordinates_nothing_on_github_hosted_runners(
        tmp_path: Path) -> None:
    ledger = (tmp_path / "ledger.json").as_uri()
    run = run_action(tmp_path / "run", {**DRY_RUN, "ledger": ledger},
                     env={"RUNNER_ENVIRONMENT": "github-hosted"})
    assert run.exit_code == 0, run.stdout + run.stderr
    warnings = [line for line in run.stdout.splitlines() if line.startswith("::warning")]
    assert warnings == [f"::warning title=Ledger::{GITHUB_HOSTED_WARNING}"]
    assert run.outputs["ledger"] == ledger

def test_an_injected_line_in_the_ledger_path_never_reaches_the_log(tmp_path: Path) -> None:
    """A percent-encoded line break in a file ledger URL decoded into the path, which was logged
    raw: the runner would have read the next line as a workflow command."""
    spec = (tmp_path / "led.json").as_uri() + "%0A::error%20title=Injected::x%0A::add-mask::x"
    run = run_action(tmp_path / "run", {**DRY_RUN, "ledger": spec})
    injected = ("::error title=Injected", "::add-mask::x")
    lines = (run.stdout + "\n" + run.stderr).splitlines()
    assert not [line for line in lines if line.startswith(injected)]
    assert run.exit_code == 2
    assert "control character or line break" in run.stdout
    assert "\n" not in run.outputs["ledger"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no file with a line break in its name


# -- exact behaviour: what each call returns and writes, every message a user reads -------------


def test_the_file_is_indented_json_with_sorted_keys(tmp_path: Path) -> None:
    """Admins read the file: one space per level, keys sorted, a final newline."""
    path = tmp_path / "ledger.json"
    ledger_at(path).reserve("a", 120)
    assert path.read_text() == (
        '{\n "accounts": {\n  "a": {\n   "next_free": 1700000120.0,\n   "queue": {\n'
        '    "slots": [\n     {\n      "at": 1700000000.0,\n      "until": 1700000120.0\n'
        '     }\n    ],\n    "v": 1\n   },\n   "updated": 1700000000.0\n  }\n },\n'
        ' "version": 1\n}\n')


def test_without_not_before_the_first_slot_is_now_even_at_time_zero(tmp_path: Path) -> None:
    assert ledger_at(tmp_path / "ledger.json", Tick(0.0)).reserve("a", 120) == 0.0


def test_an_entry_exactly_a_day_past_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": 1, "accounts": {
        "edge": {"next_free": T0 - PRUNE_AFTER, "updated": T0 - PRUNE_AFTER - 120}}}))
    ledger_at(path).reserve("new", 120)
    assert sorted(json.loads(path.read_text())["accounts"]) == ["edge", "new"]


def test_the_queue_shows_an_older_releases_reservation(tmp_path: Path) -> None:
    """A release that keeps no queue wrote next_free alone: that span shows, holder unknown."""
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": 1, "accounts": {
        "k": {"next_free": T0 + 100, "updated": T0 - 20}}}))
    assert ledger_at(path).queue("k", 120) == [Slot(T0 - 20, T0 + 100, None)]
    assert ledger_at(path).queue("other", 120) == []


def test_give_back_and_advance_write_the_queue_and_keep_the_mode(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o640)
    clock = Tick()
    ledger = ledger_at(path, clock)
    a, b, c = (Holder(x * 12, "upload") for x in "abc")
    assert [ledger.reserve("k", 120, holder=h) for h in (a, b, c)] == [T0, T0 + 120, T0 + 240]

    def slot(at: float, holder: Holder, **extra: bool) -> dict[str, object]:
        return {"at": at, "until": at + 120, "by": {"id": holder.id, "cmd": "upload"}, **extra}

    assert ledger.give_back("k", b.id) == "marked"
    assert json.loads(path.read_text()) == {"version": 1, "accounts": {"k": {
        "next_free": T0 + 360, "updated": T0, "queue": {"v": 1, "slots": [
            slot(T0, a), slot(T0 + 120, b, released=True), slot(T0 + 240, c)]}}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    clock.now = T0 + 5
    assert ledger.advance("k", c.id, T0 + 5) == T0 + 120
    assert json.loads(path.read_text()) == {"version": 1, "accounts": {"k": {
        "next_free": T0 + 240, "updated": T0 + 5, "queue": {"v": 1, "slots": [
            slot(T0, a), slot(T0 + 120, c)]}}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert ledger.give_back("k", c.id) == "released"
    assert json.loads(path.read_text())["accounts"]["k"]["next_free"] == T0 + 120


def test_nothing_to_give_back_or_advance_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    clock = Tick()
    ledger = ledger_at(path, clock)
    assert ledger.give_back("k", "0123456789ab") == "absent"
    assert ledger.advance("k", "0123456789ab", T0) is None
    assert not path.exists()  # not even an empty ledger
    ledger.reserve("k", 120, holder=Holder("0123456789ab", "upload"))
    before = path.read_bytes()
    clock.now = T0 + 10  # a write now would change `updated`
    assert ledger.give_back("k", "abcdef012345") == "absent"  # not in the queue
    assert ledger.give_back("other", "0123456789ab") == "absent"  # another account
    assert ledger.advance("k", "0123456789ab", T0) is None  # its slot has begun
    assert path.read_bytes() == before


class LockProbe:
    """A clock that, whenever the ledger reads it, tries locks of its own on the lock file
    without waiting, and notes what the ledger holds: `exclusive`, `shared` or `none`."""

    def __init__(self, lock: Path) -> None:
        self.lock = lock
        self.seen: list[str] = []

    def _free(self, operation: int) -> bool:
        fd = os.open(self.lock, os.O_RDONLY)
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # an own lock, if taken, goes with it
        return True

    def __call__(self) -> float:
        held = ("none" if self._free(fcntl.LOCK_EX) else
                "shared" if self._free(fcntl.LOCK_SH) else "exclusive")
        self.seen.append(held)
        return T0


def test_writers_hold_the_lock_alone_and_readers_share_it(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger_at(path).peek("k", 120)  # the lock file exists from here on
    probe = LockProbe(tmp_path / "ledger.json.lock")
    ledger = open_ledger(path.as_uri(), LedgerContext(now=probe))
    holder = Holder("0123456789ab", "upload")
    calls: list[tuple[str, Callable[[], object]]] = [
        ("exclusive", lambda: ledger.reserve("k", 120, holder=holder)),
        ("shared", lambda: ledger.peek("k", 120)),
        ("exclusive", lambda: ledger.give_back("k", holder.id)),
        ("exclusive", lambda: ledger.advance("k", holder.id, T0)),
    ]
    for expected, call in calls:
        probe.seen.clear()
        call()
        assert probe.seen == [expected]


@pytest.mark.timeout(60)  # an exclusive lock would wait here for good
def test_a_reader_does_not_wait_for_another_reader(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    ledger.reserve("k", 120, holder=Holder("0123456789ab", "upload"))
    fd = os.open(tmp_path / "ledger.json.lock", os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # another job reading the queue right now
        assert ledger.peek("k", 120) == T0 + 120
        assert [s.at for s in ledger.queue("k", 120)] == [T0]
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("env", "hosted"),
    [("github-hosted", True), (" GitHub-Hosted\n", True), ("GITHUB-HOSTED", True),
     ("self-hosted", False), ("", False), ("github-hosted-like", False)],
    ids=["exact", "padded-mixed-case", "upper", "self", "empty", "longer"],
)
def test_the_hosted_runner_is_recognised(tmp_path: Path, env: str, hosted: bool) -> None:
    """Named without the g-word: the mutation run's `-k` drops contract tests named so."""
    assert is_github_hosted({"RUNNER_ENVIRONMENT": env}) is hosted
    assert is_github_hosted({"runner_environment": "github-hosted"}) is False
    assert is_github_hosted({}) is False
    ledger = ledger_at(tmp_path / "ledger.json", RUNNER_ENVIRONMENT=env)
    assert ledger.warning == (GITHUB_HOSTED_WARNING if hosted else None)


def test_windows_is_refused_with_the_alternatives(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(LedgerError) as caught:
        ledger_at(tmp_path / "ledger.json")
    assert caught.value.title == "Rate-limit ledger unavailable"
    assert caught.value.detail == ("the file ledger needs POSIX file locks, which Windows does "
                                   "not have")
    assert caught.value.hint == "On Windows use a redis:// ledger or `github`."


@pytest.mark.parametrize(
    ("spec", "path"),
    [("file:///abs/ledger.json", "/abs/ledger.json"),
     ("file://localhost/abs/ledger.json", "/abs/ledger.json"),
     ("FILE:///abs/ledger.json", "/abs/ledger.json"),
     ("file:/abs/ledger.json", "/abs/ledger.json"),
     ("file:///abs/with%20space/l%40b.json", "/abs/with space/l@b.json"),
     ("file:///abs/a@b.json", "/abs/a@b.json")],
    ids=["three-slashes", "localhost", "upper-scheme", "one-slash", "percent", "at-sign"],
)
def test_parse_path_of_every_url_form(spec: str, path: str) -> None:
    assert parse_path(spec) == Path(path)


@pytest.mark.parametrize(
    ("spec", "title", "detail", "hint"),
    [
        ("redis://host/x", "Rate-limit ledger unavailable", "not a file ledger URL: 'redis://host/x'",
         "Use file:///absolute/path/ledger.json."),
        ("file://tmp/ledger.json", "Invalid ledger",
         "the file ledger URL 'file://tmp/ledger.json' names a host ('tmp'), not an absolute path",
         "Use three slashes and an absolute path: file:///absolute/path/ledger.json (perhaps "
         "file:///tmp/ledger.json)."),
        ("file://", "Invalid ledger", "the file ledger URL 'file://' has no path",
         "Use file:///absolute/path/ledger.json."),
        ("file:ledger.json", "Invalid ledger", "the file ledger path 'ledger.json' is relative",
         f"Use an absolute path, e.g. file://{Path.cwd() / 'ledger.json'}. Every job on the host "
         "must name the same file."),
        ("file:///tmp/", "Invalid ledger", "the file ledger path '/tmp/' names a directory",
         "Add a file name: file:///tmp/ledger.json."),
    ],
    ids=["other-scheme", "host", "no-path", "relative", "directory"],
)
def test_parse_path_refusals_word_for_word(spec: str, title: str, detail: str, hint: str) -> None:
    with pytest.raises(LedgerError) as caught:
        parse_path(spec)
    assert (caught.value.title, caught.value.detail, caught.value.hint) == (title, detail, hint)


def deep_directory(base: Path, length: int) -> Path:
    """A ledger path whose `file://` description is exactly `length` characters long."""
    directory = base
    while len(f"file://{directory}") < length - 200:
        directory = directory / ("d" * 150)
    directory.mkdir(parents=True, exist_ok=True)
    name_length = length - len(f"file://{directory}/")
    return directory / ("n" * (name_length - 5) + ".json")


def test_the_description_shows_up_to_1000_characters(tmp_path: Path) -> None:
    whole = deep_directory(tmp_path, 1000)
    assert ledger_at(whole).description == f"file://{whole}"
    cut = deep_directory(tmp_path, 1001)
    assert ledger_at(cut).description == f"file://{cut}"[:1000] + "…"


def test_a_lock_that_is_a_directory_is_refused_when_the_ledger_is_opened(tmp_path: Path) -> None:
    """Checked before any wait even while the ledger does not exist yet."""
    (tmp_path / "ledger.json.lock").mkdir()
    error = refusal(lambda: ledger_at(tmp_path / "ledger.json"))
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == (f"{tmp_path}/ledger.json.lock is a directory; the file ledger and "
                            "its lock must be regular files")
    assert error.hint == (f"Remove {tmp_path}/ledger.json.lock (the ledger creates it as a plain "
                          "file) or point the ledger at a file of its own.")


def test_a_ledger_replaced_by_a_socket_after_the_check_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        error = refusal(lambda: ledger.peek("a", 120))
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == f"cannot read {path}: No such device or address"
    assert error.hint == f"Check the file system holding {path} (space, mount, permissions)."


def test_a_fifo_ledger_is_named_word_for_word(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    ledger = ledger_at(path)
    os.mkfifo(path)
    error = refusal(lambda: ledger.peek("a", 120))
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == (f"{path} is a named pipe (FIFO); the file ledger and its lock must "
                            "be regular files")


def test_a_newer_format_is_titled_too_new(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text(json.dumps({"version": FORMAT_VERSION + 1, "accounts": {}}))
    error = refusal(lambda: ledger_at(path).peek("a", 120))
    assert error.title == "Rate-limit ledger too new"
    assert error.detail == (f"{path} has format version {FORMAT_VERSION + 1}, written by a newer "
                            f"streampixel-distribute (this one reads version {FORMAT_VERSION})")
    assert error.hint == "Upgrade streampixel-distribute on every job that shares this ledger."


def padded_ledger(size: int) -> bytes:
    """A valid ledger of exactly `size` bytes, most of it an unknown field (which is kept)."""
    empty = len(json.dumps({"version": 1, "accounts": {}, "pad": ""}))
    return json.dumps({"version": 1, "accounts": {}, "pad": "x" * (size - empty)}).encode()


def test_a_ledger_of_exactly_the_limit_is_read_whole(tmp_path: Path) -> None:
    """8 MiB is read in several chunks, joined as they were; one byte more is refused."""
    path = tmp_path / "ledger.json"
    body = padded_ledger(MAX_BYTES)
    assert len(body) == MAX_BYTES
    path.write_bytes(body)
    ledger_at(path).reserve("a", 120)
    assert json.loads(path.read_text())["pad"] == json.loads(body)["pad"]
    path.write_bytes(padded_ledger(MAX_BYTES + 1))
    error = refusal(lambda: ledger_at(path).peek("a", 120))
    assert error.title == "Rate-limit ledger corrupt"
    assert error.detail == (f"{path} is not a readable streampixel-distribute ledger: it is "
                            f"larger than {MAX_BYTES} bytes, far more than a ledger")


@pytest.mark.usefixtures("usual_umask")
def test_an_existing_lock_keeps_its_mode(tmp_path: Path) -> None:
    lock = tmp_path / "ledger.json.lock"
    lock.touch()
    lock.chmod(0o644)
    ledger_at(tmp_path / "ledger.json").reserve("a", 120)
    assert stat.S_IMODE(lock.stat().st_mode) == 0o644


@pytest.mark.usefixtures("usual_umask")
def test_a_new_lock_takes_the_ledgers_read_and_write_bits_only(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o777)
    ledger_at(path).reserve("a", 120)
    assert stat.S_IMODE((tmp_path / "ledger.json.lock").stat().st_mode) == 0o666


def permission_hint(directory: Path) -> str:
    return (f"Make {directory} (and the files in it) writable, and its parent directories "
            f"searchable, by the user running the job (uid {os.getuid()}); or point the ledger "
            "at a directory that user can write. New ledger files are private to the user who "
            "creates them (mode 0600): to share one between several users, create ledger.json "
            "and ledger.json.lock first with group read and write (chmod 660) in a group-owned "
            "directory; their mode is kept.")


def test_a_lock_the_job_cannot_write_is_refused(open_tmp: Path) -> None:
    """flock would work on a read-only descriptor, but a lock the job cannot write is a
    lock of someone else's: said, with the fix, before anything is read or written."""
    path = open_tmp / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o666)
    lock = open_tmp / "ledger.json.lock"
    lock.touch()
    lock.chmod(0o444)
    open_tmp.chmod(0o777)
    with unprivileged():
        error = refusal(lambda: ledger_at(path).reserve("a", 120))
        hint = permission_hint(open_tmp)
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == f"cannot open the lock file {lock}: Permission denied"
    assert error.hint == hint
    assert path.read_text() == '{"version": 1, "accounts": {}}'


def test_a_ledger_the_job_cannot_read_is_refused(open_tmp: Path) -> None:
    path = open_tmp / "ledger.json"
    path.write_text('{"version": 1, "accounts": {}}')
    path.chmod(0o200)
    (open_tmp / "ledger.json.lock").touch()
    (open_tmp / "ledger.json.lock").chmod(0o666)
    with unprivileged():
        error = refusal(lambda: ledger_at(path).peek("a", 120))
        hint = permission_hint(open_tmp)
    assert error.detail == f"cannot read {path}: Permission denied"
    assert error.hint == hint


def test_a_directory_the_job_may_write_but_not_list_works(open_tmp: Path) -> None:
    """The directory's fsync needs to open it for reading; where that is refused the ledger
    is written all the same (the rename is done, only its durability is the file system's)."""
    directory = open_tmp / "drop-box"
    directory.mkdir()
    directory.chmod(0o333 if os.geteuid() != 0 else 0o733)
    with unprivileged():
        ledger = ledger_at(directory / "ledger.json")
        assert ledger.reserve("a", 120) == T0
        assert ledger.reserve("a", 120) == T0 + 120
    directory.chmod(0o755)
    assert json.loads((directory / "ledger.json").read_text())["accounts"]["a"]["next_free"] == (
        T0 + 240)


def test_a_write_the_file_system_refuses_leaves_the_ledger_as_it_was(tmp_path: Path) -> None:
    """A file size limit (as a full disk would) stops the rewrite half-way: named, with the
    cause and the fix; the old ledger stays whole and the temporary file is gone."""
    path = tmp_path / "ledger.json"
    body = '{"version": 1, "accounts": {}}'
    path.write_text(body)
    ledger = ledger_at(path)
    ledger.peek("a", 120)  # the lock file exists from here on
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (16, limits[1]))
    try:
        error = refusal(lambda: ledger.reserve("a", 120))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert error.title == "Rate-limit ledger refused"
    assert error.detail == f"cannot write {path}: File too large"
    assert error.hint == f"Check the file system holding {path} (space, mount, permissions)."
    assert path.read_text() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ledger.json", "ledger.json.lock"]
