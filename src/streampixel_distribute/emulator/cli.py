"""`streampixel-distribute emulator`: options, the start-up banner, serving until a signal."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import ssl
import sys
import threading
from pathlib import Path
from typing import Any

from .http import EmulatorServer
from .messages import API_BASE
from .seed import DEMO, SeedError, load_seed
from .state import (
    DEFAULT_INTERVAL,
    DEFAULT_PROCESSING_SECONDS,
    UPLOAD_STATUSES,
    Config,
    Emulator,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streampixel-distribute emulator",
        description="Run a local stand-in of the Streampixel API (see docs/emulator.md).",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port; 0 picks a free one (default 8080)")
    p.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="seconds between two write calls of one userId; 0 disables the limit (default 120)",
    )
    p.add_argument("--seed", metavar="FILE", help="JSON file with accounts, projects and uploads")
    p.add_argument("--no-demo", action="store_true", help="leave out the built-in demo accounts")
    p.add_argument(
        "--ready-file", metavar="FILE", help='write {"url", "port", "pid"} here once listening'
    )
    p.add_argument(
        "--processing-seconds",
        type=float,
        default=DEFAULT_PROCESSING_SECONDS,
        help="how long a new upload stays processing; pipeline webhooks are spread over it "
        "(default 5)",
    )
    p.add_argument(
        "--retry-after-header", action="store_true", help="send Retry-After with every 429"
    )
    p.add_argument(
        "--separate-windows",
        action="store_true",
        help="one rate-limit window per write endpoint instead of one shared by upload-file and "
        "distribute-file",
    )
    p.add_argument(
        "--upload-status",
        type=int,
        choices=UPLOAD_STATUSES,
        default=200,
        help="status of a successful upload-file: 200 or 201 (default 200)",
    )
    p.add_argument(
        "--approve-after-distribute",
        action="store_true",
        help="hold an autoRelease:false build after build.saving and send build.approved after "
        "its distribute-file (default: build.approved first, then distribute-file)",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="serve HTTPS with this certificate")
    p.add_argument("--tls-key", metavar="PEM", help="private key for --tls-cert")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    return p


def banner(url: str, control: str, config: Config, demo: bool) -> str:
    windows = "per endpoint" if config.separate_windows else "upload-file and distribute-file"
    lines = [
        f"Streampixel emulator listening on {url}",
        f"  rate limit: 1 write call per {config.interval:g} s per userId ({windows}); "
        f"new builds process for {config.processing_seconds:g} s",
        f"  control endpoints: {control}/_emulator/requests, /_emulator/faults, ... "
        "(see docs/emulator.md)",
    ]
    if demo:
        lines += [
            "Demo account (fake values, safe to copy):",
            f"  userId:                {DEMO.user_id}",
            f"  apiKey:                {DEMO.api_key}",
            f"  projectId:             {DEMO.project_id}  (region {DEMO.region})",
            f"  uploadId (ready):      {DEMO.upload_id}",
            f"  uploadId (processing): {DEMO.processing_upload_id}",
            "Try:",
            f"  STREAMPIXEL_API_KEY={DEMO.api_key} streampixel-distribute --api-url {url} "
            f"--user-id {DEMO.user_id} --project-id {DEMO.project_id} "
            f"--upload-id {DEMO.upload_id}",
        ]
    lines.append("Stop with Ctrl-C.")
    return "\n".join(lines)


def _write_ready_file(path: str, info: dict[str, Any]) -> None:
    target = Path(path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, target)  # atomic: a poller never reads half a file


class StartError(Exception):
    """A startup problem the user can fix; printed as one line, exit code 2."""


def emulator_from_args(args: argparse.Namespace) -> Emulator:
    for name in ("interval", "processing_seconds"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            flag = "--" + name.replace("_", "-")
            raise StartError(f"{flag} must be a number of seconds >= 0, got {value:g}")
    if not 0 <= args.port <= 65535:
        raise StartError(f"--port must be 0-65535 (0 picks a free one), got {args.port}")
    if bool(args.tls_cert) != bool(args.tls_key):
        raise StartError("--tls-cert and --tls-key go together")
    seed: list[dict[str, Any]] = []
    include_demo = not args.no_demo
    if args.seed:
        try:
            seed, seed_demo = load_seed(args.seed)
        except SeedError as exc:
            raise StartError(str(exc)) from None
        include_demo = include_demo and seed_demo
    config = Config(
        interval=args.interval,
        processing_seconds=args.processing_seconds,
        retry_after_header=args.retry_after_header,
        separate_windows=args.separate_windows,
        upload_status=args.upload_status,
        approve_after_distribute=args.approve_after_distribute,
    )
    log = None if args.quiet else sys.stderr
    return Emulator(config, seed, include_demo=include_demo, log=log)


def _wrap_tls(server: EmulatorServer, cert: str, key: str) -> None:
    try:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        server.server_close()
        raise StartError(f"cannot load the TLS certificate or key: {exc}") from None
    # The handshake happens in the handler thread, so a bad client cannot stall accept().
    server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)


def server_from_args(args: argparse.Namespace, emulator: Emulator) -> tuple[EmulatorServer, str]:
    """Bind (and wrap in TLS if asked); returns the server and its root URL."""
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    try:
        server = EmulatorServer((args.host, args.port), emulator, quiet=args.quiet, family=family)
    except OSError as exc:
        raise StartError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}. "
            "Pick another --port (0 picks a free one)."
        ) from None
    if args.tls_cert:
        _wrap_tls(server, args.tls_cert, args.tls_key)
    host = args.host
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - only to print a usable URL
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if args.tls_cert else "http"
    return server, f"{scheme}://{host}:{server.server_address[1]}"


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (embedded use): the caller stops us
            break
    return stop


def main(argv: list[str] | None = None) -> int:
    """`streampixel-distribute emulator [options]`: serve until SIGTERM/SIGINT; returns 0, or 2."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse already explained
        return exc.code if isinstance(exc.code, int) else 2
    try:
        emulator = emulator_from_args(args)
        server, root = server_from_args(args, emulator)
    except StartError as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    url = root + API_BASE
    stop = _stop_on_signals()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.daemon = True
    thread.start()
    try:
        if args.ready_file:
            info = {"url": url, "port": server.server_address[1], "pid": os.getpid()}
            _write_ready_file(args.ready_file, info)
        if not args.quiet:
            print(banner(url, root, emulator.config, emulator.include_demo), file=sys.stderr)
            sys.stderr.flush()
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        emulator.reset()  # wakes and ends pending pipelines
        if args.ready_file:
            Path(args.ready_file).unlink(missing_ok=True)
    if not args.quiet:
        print("emulator: stopped", file=sys.stderr, flush=True)
    return 0
