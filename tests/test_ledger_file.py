"""The `file:` ledger: format, failure modes and the GitHub-hosted warning (contract: elsewhere)."""

from __future__ import annotations

import json
import os
import shutil
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
    PRUNE_AFTER,
    FileLedger,
    is_github_hosted,
)
from streampixel_distribute.ledger.queue import Holder
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


def reserve_as_unprivileged(spec: str) -> LedgerError | None:
    """Reserve once in a forked child that has dropped root (as root, file permissions do not
    apply); the error, if any, comes back through a pipe. Without root, call it directly."""
    if os.geteuid() != 0:
        try:
            open_ledger(spec).reserve("a", 120)
        except LedgerError as exc:
            return exc
        return None
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            # Real and effective ids become nobody's: file permissions apply and the effective
            # capabilities are gone. The saved ids stay root's, only so that the child can take
            # root back before it exits: coverage.py (pyproject.toml: patch `_exit`) then writes
            # the child's data file into the root-owned checkout.
            os.setresgid(65534, 65534, 0)
            os.setresuid(65534, 65534, 0)
            try:
                open_ledger(spec).reserve("a", 120)
                answer: dict[str, list[str] | None] = {"error": None}
            except LedgerError as exc:
                answer = {"error": [exc.title, exc.detail, exc.hint]}
            os.write(write_end, json.dumps(answer).encode())
            os.setresuid(0, 0, 0)
            os.setresgid(0, 0, 0)
        except BaseException:
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    error = json.loads(raw)["error"]
    return None if error is None else LedgerError(error[1], title=error[0], hint=error[2])


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
