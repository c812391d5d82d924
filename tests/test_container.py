"""The real image, run the way the GitHub runner runs a Docker action (tests/support/container.py).

Everything here executes the image's own Python: the action under test and the emulator it talks
to both run from the built image, on the host's loopback (`--network host`).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from streampixel_distribute import __version__
from streampixel_distribute.emulator import DEMO
from support.container import (
    ContainerImage,
    ImageEmulator,
    RunAction,
    start_image_emulator,
)
from support.git_server import GitHTTPServer, init_bare
from support.lock import RUNTIME_LOCK, read_lock
from support.tools import require_binary

pytestmark = pytest.mark.container
BASE_IMAGE = "docker.io/library/python:3.13-slim"

# The demo key is public; these distinctive values prove a secret never leaks into any output.
WRONG_KEY = "wrong-key-7f3a9c1e5b-never-print"
OUTPUT_NAMES = {"status", "message", "http-status", "attempts", "waited-seconds", "slot-at",
                "triggered-at", "error"}


def printed(stdout: str) -> str:
    """What the log shows: `::add-mask::` lines are consumed by the runner, never displayed."""
    return "\n".join(ln for ln in stdout.splitlines() if not ln.startswith("::add-mask"))


def inputs(emulator: ImageEmulator, **overrides: str) -> dict[str, str]:
    env = {
        "INPUT_API-KEY": DEMO.api_key,
        "INPUT_USER-ID": DEMO.user_id,
        "INPUT_PROJECT-ID": DEMO.project_id,
        "INPUT_UPLOAD-ID": DEMO.upload_id,
        "INPUT_API-URL": emulator.url,
        "INPUT_LEDGER": "none",
    }
    env.update({f"INPUT_{k.upper().replace('_', '-')}": v for k, v in overrides.items()})
    return env


def test_distributes_against_the_emulator(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    result = run_action(inputs(image_emulator))

    assert result.exit_code == 0, result.stderr
    assert set(result.outputs) >= OUTPUT_NAMES
    assert result.outputs["status"] == "triggered"
    assert result.outputs["http-status"] == "200"
    assert result.outputs["attempts"] == "1"
    assert result.outputs["error"] == ""
    assert result.outputs["triggered-at"].endswith("Z")
    assert DEMO.project_id in result.summary
    calls = image_emulator.requests()
    assert [c["status"] for c in calls] == [200]
    assert calls[0]["uploadId"] == DEMO.upload_id
    # The key went through -e INPUT_API-KEY only: the emulator accepted it, nothing printed it.
    assert calls[0]["api_key_ok"] is True
    for text in (printed(result.stdout), result.stderr, result.summary,
                 json.dumps(result.outputs)):
        assert DEMO.api_key not in text


def test_invalid_input_exits_2_and_still_writes_outputs_and_summary(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    result = run_action(inputs(image_emulator, user_id="not a hex id", retries="many"))

    assert result.exit_code == 2, result.stderr
    assert result.outputs["status"] == "failed"
    assert result.outputs["error"] == "invalid-input"
    assert result.summary.strip()
    assert "Traceback" not in result.stdout + result.stderr
    assert image_emulator.requests() == []


def test_missing_secret_is_an_input_error_not_a_call(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    # What a fork's pull request sees: the runner passes an empty INPUT_API-KEY.
    result = run_action(inputs(image_emulator, api_key=""))

    assert result.exit_code == 2
    assert result.outputs["error"] == "invalid-input"
    assert image_emulator.requests() == []


def test_wrong_key_exits_3_without_printing_it(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    result = run_action(inputs(image_emulator, api_key=WRONG_KEY))

    assert result.exit_code == 3, result.stderr
    assert result.outputs["error"] == "unauthorized"
    assert result.outputs["http-status"] == "401"
    assert result.summary.strip()
    for text in (printed(result.stdout), result.stderr, result.summary,
                 json.dumps(result.outputs)):
        assert WRONG_KEY not in text
    # The runner is told to mask it, first thing.
    first = result.stdout.splitlines()[0].replace(" ", "")
    assert first.startswith("::add-mask::")
    assert f"::{WRONG_KEY}" in result.stdout


def test_dry_run_calls_nothing(run_action: RunAction, image_emulator: ImageEmulator) -> None:
    result = run_action(inputs(image_emulator, dry_run="true"))

    assert result.exit_code == 0, result.stderr
    assert result.outputs["status"] == "dry-run"
    assert result.outputs["attempts"] == "0"
    assert result.summary.strip()
    assert image_emulator.requests() == []


def test_ids_from_a_repository_dispatch_payload(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    env = inputs(image_emulator)
    del env["INPUT_PROJECT-ID"], env["INPUT_UPLOAD-ID"]
    event = {"action": "streampixel", "client_payload": {
        "event": "build.approved", "projectId": DEMO.project_id, "uploadId": DEMO.upload_id}}

    result = run_action(env, event)

    assert result.exit_code == 0, result.stderr
    assert [c["uploadId"] for c in image_emulator.requests()] == [DEMO.upload_id]


def test_read_only_workspace_and_root_filesystem(
    run_action: RunAction, image_emulator: ImageEmulator
) -> None:
    result = run_action(inputs(image_emulator), read_only=True)

    assert result.exit_code == 0, result.stderr
    assert result.outputs["status"] == "triggered"


def test_streampixel_env_interface_of_other_ci(
    container_image: ContainerImage, image_emulator: ImageEmulator, tmp_path: Path
) -> None:
    """GitLab/Jenkins/CircleCI style: plain `docker run -e STREAMPIXEL_*`, no GitHub variables."""
    env = {
        "STREAMPIXEL_API_KEY": DEMO.api_key,
        "STREAMPIXEL_USER_ID": DEMO.user_id,
        "STREAMPIXEL_PROJECT_ID": DEMO.project_id,
        "STREAMPIXEL_UPLOAD_ID": DEMO.upload_id,
        "STREAMPIXEL_API_URL": image_emulator.url,
    }
    args = ["run", "--rm", "--network", "host", "-v", f"{tmp_path}:/out"]
    for name in env:
        args += ["-e", name]
    proc = container_image.podman(
        *args, container_image.name,
        "--json", "--dotenv", "/out/streampixel.env", "--summary-file", "/out/summary.md",
        env=env,
    )  # fmt: skip

    assert proc.returncode == 0, proc.stderr
    outputs = json.loads(proc.stdout)
    assert outputs["status"] == "triggered"
    assert "::" not in proc.stdout  # no GitHub workflow commands outside GitHub
    dotenv = dict(line.split("=", 1) for line in (tmp_path / "streampixel.env").read_text()
                  .splitlines() if line)
    assert dotenv["STREAMPIXEL_STATUS"] == "triggered"
    assert dotenv["STREAMPIXEL_HTTP_STATUS"] == "200"
    assert (tmp_path / "summary.md").read_text().strip()
    assert DEMO.api_key not in proc.stdout + proc.stderr + json.dumps(dotenv)


def test_rate_limit_spacing_through_a_file_ledger(
    run_action: RunAction, container_image: ContainerImage, tmp_path: Path
) -> None:
    """Two steps sharing a file ledger in the job's workspace get slots one interval apart."""
    emulator = start_image_emulator(container_image, "--interval", "2", "--quiet")
    try:
        env = {**inputs(emulator), "INPUT_LEDGER": "file:///github/workspace/ledger.json",
               "INPUT_RATE-LIMIT-INTERVAL": "2"}
        # One workspace for both runs, as two steps of one job share it.
        first = run_action(env, workspace=tmp_path)
        second = run_action(env, workspace=tmp_path)
        assert (first.exit_code, second.exit_code) == (0, 0), first.stderr + second.stderr
        times = [c["time"] for c in emulator.requests() if c["status"] == 200]
    finally:
        emulator.stop()
    assert len(times) == 2
    assert times[1] - times[0] >= 2 - 0.05


def test_git_ledgers_run_without_git_or_perl_in_the_image(
    run_action: RunAction, image_emulator: ImageEmulator, container_image: ContainerImage,
    git_http_server_factory: Callable[..., GitHTTPServer], tmp_path: Path,
) -> None:
    """The image has no git program and no perl, and its dpkg database is whole, so an image
    built FROM it installs packages normally (apt-get check). The git ledgers run in-process:
    a bare repository in the workspace over git+file, and git's smart-HTTP backend on the host."""
    found = container_image.shell("command -v git perl; apt-get check >/dev/null 2>&1 && echo ok")
    assert found.stdout.split() == ["ok"], found.stdout + found.stderr
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    repo = init_bare(workspace / "ledger.git")
    server = git_http_server_factory()
    for ledger, bare in (("git+file:///github/workspace/ledger.git", repo),
                         (server.spec(), server.repo_path())):
        result = run_action(inputs(image_emulator, ledger=ledger), workspace=workspace)
        assert result.exit_code == 0, result.stdout + result.stderr
        assert result.outputs["ledger"].startswith("git+"), result.outputs
        assert server.password not in printed(result.stdout) + result.stderr + json.dumps(
            result.outputs)
        refs = subprocess.run(["git", f"--git-dir={bare}", "for-each-ref", "--format=%(refname)"],
                              capture_output=True, text=True, check=True).stdout.split()
        assert len(refs) == 1 and refs[0].startswith("refs/notes/streampixel-distribute/"), refs


def test_image_holds_only_the_runtime(container_image: ContainerImage) -> None:
    def sh(script: str) -> str:
        proc = container_image.shell(script)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    compilers = sh("for c in gcc cc c++ g++ clang tcc make; do command -v $c || true; done")
    assert compilers.strip() == ""
    # The package comes from the wheel (site-packages); /app holds only the shim.
    assert sh("ls -A /app").split() == ["entrypoint.py"]
    # Compared with the base image: what the base itself ships (CPython's own test package,
    # ensurepip's wheels) is not ours to remove.
    find = ("find / -xdev \\( -path /proc -o -path /sys \\) -prune -o \\( -name 'test_*.py' "
            "-o -name conftest.py -o \\( -name tests -type d ! -empty \\) -o -name .git "
            "-o -name pyproject.toml -o -name '*.whl' -o -name '*.egg-info' "
            "-o -name .pytest_cache \\) -print")
    base = container_image.podman("run", "--rm", "--network", "none", BASE_IMAGE, "sh", "-c", find)
    assert base.returncode == 0, base.stderr
    added = set(sh(find).split()) - set(base.stdout.split())
    # Dependencies may ship their own test packages inside site-packages: not test files of ours.
    assert sorted(p for p in added if "/site-packages/" not in p) == []
    pip_cache = sh("ls -A /root/.cache/pip /tmp 2>/dev/null; pip cache dir 2>/dev/null || true")
    assert "http" not in pip_cache
    assert sh("du -s /root/.cache 2>/dev/null | cut -f1 || true").strip() in ("", "0", "4")


DISTRIBUTIONS = ("import importlib.metadata as m, json; print(json.dumps(sorted({"
                 "d.metadata['Name'].lower().replace('_', '-'): d.version "
                 "for d in m.distributions()}.items())))")


def test_image_adds_exactly_the_lock_and_the_wheel(container_image: ContainerImage) -> None:
    """Over the base: the locked packages at their locked versions and this package at this
    checkout's version; nothing else (no build frontend or backend, no unlocked dependency)."""
    base = container_image.podman("run", "--rm", "--network", "none", BASE_IMAGE,
                                  "python", "-c", DISTRIBUTIONS)
    image = container_image.shell(f'python -c "{DISTRIBUTIONS}"')
    assert base.returncode == 0 and image.returncode == 0, base.stderr + image.stderr
    before = dict(json.loads(base.stdout))
    added = {name: version for name, version in json.loads(image.stdout)
             if before.get(name) != version}
    expected: dict[str, str] = {name: pin.version
                                for name, pin in read_lock(RUNTIME_LOCK).pins.items()}
    expected["streampixel-distribute"] = __version__
    assert added == expected


def test_image_is_precompiled_labelled_and_starts_the_cli(container_image: ContainerImage) -> None:
    inspect = container_image.podman("image", "inspect", container_image.name)
    assert inspect.returncode == 0, inspect.stderr
    config = json.loads(inspect.stdout)[0]["Config"]
    assert config["Entrypoint"] == ["python", "/app/entrypoint.py"]
    assert {"PYTHONDONTWRITEBYTECODE=1", "PYTHONUNBUFFERED=1"} <= set(config["Env"])
    assert not [v for v in config["Env"] if v.startswith("PYTHONPATH=")]
    labels = config["Labels"]
    for key in ("title", "description", "version", "source", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"], key
    # Bytecode exists for the package, so no run compiles (or writes) anything.
    where = container_image.shell("python -c 'import streampixel_distribute; "
                                  "print(streampixel_distribute.__file__)'")
    package = where.stdout.strip().rsplit("/", 1)[0]
    assert package.startswith("/usr/local/lib/python3.") and package.endswith(
        "/site-packages/streampixel_distribute"), where.stdout + where.stderr
    pyc = container_image.shell(f"ls {package}/__pycache__ {package}/ledger/__pycache__")
    assert "cli.cpython-" in pyc.stdout and "git_store.cpython-" in pyc.stdout, pyc.stderr
    version = container_image.podman("run", "--rm", "--network", "none", container_image.name,
                                     "--version")
    assert version.returncode == 0
    assert labels["org.opencontainers.image.version"] in version.stdout


def test_https_emulator_trusted_through_requests_ca_bundle(
    run_action: RunAction, container_image: ContainerImage, tmp_path: Path
) -> None:
    """What self-test.yml does on a GitHub runner: one self-signed certificate (made with the
    same openssl command), served by the image's emulator, trusted by the action container
    through REQUESTS_CA_BUNDLE pointing into the workspace."""
    require_binary("openssl", "openssl")
    tls = tmp_path / "tls"
    tls.mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=spd-selftest", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
        check=True, capture_output=True,
    )  # fmt: skip
    emulator = start_image_emulator(
        container_image, "--interval", "0", "--quiet",
        "--tls-cert", "/tls/cert.pem", "--tls-key", "/tls/key.pem",
        mounts=[(tls, "/tls")],
    )  # fmt: skip
    try:
        assert emulator.url.startswith("https://127.0.0.1:")
        workspace = tmp_path / "workspace"
        workspace.mkdir()
        shutil.copy(tls / "cert.pem", workspace / "cert.pem")
        env = {**inputs(emulator), "REQUESTS_CA_BUNDLE": "/github/workspace/cert.pem"}
        result = run_action(env, workspace=workspace)
        untrusted = run_action(inputs(emulator))
    finally:
        emulator.stop()
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.outputs["status"] == "triggered"
    # Without the bundle the same server is refused: verification is really on.
    assert untrusted.exit_code == 6, untrusted.stdout
    assert untrusted.outputs["error"] == "network-error"


LISTENER_UID = 10001  # the image's listener user (Dockerfile)


def test_image_runs_the_webhook_listener_unprivileged(
    container_image: ContainerImage, image_emulator: ImageEmulator, tmp_path: Path
) -> None:
    """`<image> listen` as the documented recipe runs it: the image's non-root user, read-only
    root filesystem, no capabilities, no-new-privileges, a volume for the queue. It answers
    /healthz and a delivery, distributes through the emulator, keeps its queue 0600, and stops
    cleanly on SIGTERM."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    os.chown(data, LISTENER_UID, LISTENER_UID)  # what `chown 10001` on a host directory does
    token = "listener-token-0123456789abcdef"
    name = f"spd-listen-{tmp_path.name[-12:]}"
    env = {"STREAMPIXEL_WEBHOOK_TOKEN": token, "STREAMPIXEL_API_KEY": DEMO.api_key}
    started = container_image.podman(
        "run", "-d", "--name", name, "--network", "host",
        "--user", f"{LISTENER_UID}:{LISTENER_UID}", "--read-only", "--cap-drop=ALL",
        "--security-opt", "no-new-privileges", "-v", f"{data}:/data",
        "-e", "STREAMPIXEL_WEBHOOK_TOKEN", "-e", "STREAMPIXEL_API_KEY",
        "-e", f"STREAMPIXEL_USER_ID={DEMO.user_id}",
        "-e", f"STREAMPIXEL_API_URL={image_emulator.url}",
        "-e", "STREAMPIXEL_QUEUE=/data/queue.sqlite3", "-e", "STREAMPIXEL_LISTEN_PORT=0",
        "-e", "STREAMPIXEL_LISTEN_READY_FILE=/data/ready.json",
        container_image.name, "listen", env=env,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        ready = data / "ready.json"
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text().strip().endswith("}")):
            assert time.monotonic() < deadline, container_image.podman("logs", name).stderr
            time.sleep(0.05)
        # The kernel's view of the running listener: its user, capabilities and flags.
        status = container_image.podman("exec", name, "cat", "/proc/1/status")
        assert status.returncode == 0, status.stderr
        fields = dict(line.split(":", 1) for line in status.stdout.splitlines() if ":" in line)
        assert fields["Uid"].split() == [str(LISTENER_UID)] * 4
        assert fields["Gid"].split() == [str(LISTENER_UID)] * 4
        assert int(fields["CapEff"], 16) == int(fields["CapPrm"], 16) == 0
        assert int(fields["CapBnd"], 16) == 0
        assert fields["NoNewPrivs"].strip() == "1"
        root_write = container_image.podman("exec", name, "touch", "/app/x")
        assert root_write.returncode != 0
        assert "Read-only file system" in root_write.stderr

        base = f"http://127.0.0.1:{json.loads(ready.read_text())['port']}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:
            assert resp.status == 200
        delivery = {"event": "build.approved", "projectId": DEMO.project_id,
                    "uploadId": DEMO.upload_id, "fileUrl": None, "status": "Approved",
                    "objection": None, "timestamp": "2026-11-27T10:00:00.000Z"}
        req = urllib.request.Request(f"{base}/webhook/{token}", method="POST",
                                     data=json.dumps(delivery).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 202
        deadline = time.monotonic() + 30
        while not image_emulator.requests():
            assert time.monotonic() < deadline, container_image.podman("logs", name).stderr
            time.sleep(0.1)
        assert [r["status"] for r in image_emulator.requests()] == [200]
        queue = data / "queue.sqlite3"
        for path in (queue, Path(f"{queue}-wal"), Path(f"{queue}-shm")):
            info = path.stat()
            assert (stat.S_IMODE(info.st_mode), info.st_uid) == (0o600, LISTENER_UID), path
        stopped = container_image.podman("stop", "-t", "20", name)
        assert stopped.returncode == 0, stopped.stderr
        exit_code = container_image.podman("inspect", "--format", "{{.State.ExitCode}}", name)
        assert exit_code.stdout.strip() == "0"
        logs = container_image.podman("logs", name).stderr
        assert token not in logs
        assert "Traceback" not in logs
    finally:
        container_image.podman("rm", "-f", name)


def test_image_has_the_listener_user_and_a_private_data_directory(
    container_image: ContainerImage,
) -> None:
    proc = container_image.shell("getent passwd 10001; stat -c '%u:%g %a' /data; "
                                 "ls -A /nonexistent 2>&1 || true; id -u")
    assert proc.returncode == 0, proc.stderr
    passwd, data, home, uid = proc.stdout.splitlines()
    assert passwd.split(":")[2:] == ["10001", "10001", "", "/nonexistent", "/usr/sbin/nologin"]
    assert data == "10001:10001 700"
    assert "No such file or directory" in home  # no home full of files
    assert uid == "0"  # the image's default user stays root: the action needs it
