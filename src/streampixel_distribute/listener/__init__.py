"""`streampixel-distribute listen`: a durable receiver for Streampixel's webhooks.

Streampixel delivers each webhook once, unsigned, with a 10 s timeout and no retries. This server
(waitress: a production WSGI server in pure Python) accepts deliveries on `/webhook/<token>`,
validates the envelope, commits it to a SQLite queue before answering 2xx, and acts on it
afterwards in worker threads: `distribute` (through the same coordinator and ledger as the
action) or `dispatch` (a GitHub repository_dispatch). See docs/listener.md.

Modules: config (flags, env, action rules), server (the WSGI app), connections (waitress with
request deadlines and eviction against slow clients), queue (SQLite), worker and actions (what
happens after the 2xx), metrics (Prometheus text), log (JSON lines).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .. import __version__, redact
from ..coordinator import choose_ledger
from ..errors import DistributeError, InvalidInput
from ..ledger import Ledger
from ..settings import Settings, load_settings, secret_candidates
from .actions import CountingClient, DispatchAction, DistributeAction, StopClock
from .config import ListenerConfig, load_config
from .log import JsonLog, route_library_logs
from .metrics import Metrics
from .queue import Queue
from .server import App
from .worker import Worker

#: Stand-ins that satisfy validation of the per-build inputs; every queued item replaces them.
_PLACEHOLDER_PROJECT = "0123456789abcdef01234567"
_PLACEHOLDER_UPLOAD = "89abcdef0123456789abcdef"
#: A listener may hold a backlog of approvals: each waits for its turn longer than a CI job would.
LISTENER_MAX_WAIT = "21600"
SHUTDOWN_GRACE = 60.0
PRUNE_EVERY = 3600.0
DAY = 86400.0
SETTINGS_FLAGS = ("api-key", "user-id", "api-url", "ledger", "rate-limit-interval", "max-wait",
                  "timeout", "retries", "strict-ids")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streampixel-distribute listen",
        description="Receive Streampixel webhooks durably and act on them: distribute the "
        "build, or start a GitHub workflow by repository_dispatch. See docs/listener.md.",
        epilog="Every flag may also be given as an environment variable (shown in brackets). "
        "Prefer the environment for secrets: command lines are visible to other processes.",
    )
    a = p.add_argument
    a("--host", help="address to listen on (STREAMPIXEL_LISTEN_HOST; default 127.0.0.1, use "
      "0.0.0.0 in a container)")
    a("--port", help="port; 0 picks a free one (STREAMPIXEL_LISTEN_PORT; default 8788)")
    a("--token", help="the secret in the delivery path /webhook/<token> "
      "(STREAMPIXEL_WEBHOOK_TOKEN; prefer the variable)")
    a("--queue", help="SQLite queue file; keep it on a persistent volume (STREAMPIXEL_QUEUE; "
      "default ./streampixel-queue.sqlite3)")
    a("--actions", help="actions per project: JSON, or a path to a JSON file "
      "(STREAMPIXEL_WEBHOOK_ACTIONS; default: distribute on build.approved)")
    a("--allow-projects", help="comma-separated project ids; others get 403 "
      "(STREAMPIXEL_ALLOW_PROJECTS)")
    a("--max-body", help="largest accepted body in bytes (STREAMPIXEL_LISTEN_MAX_BODY; "
      "default 65536)")
    a("--threads", help="HTTP worker threads (STREAMPIXEL_LISTEN_THREADS; default 8)")
    a("--connection-limit", help="open connections at once; beyond it the oldest one not being "
      "served is closed for the new one (STREAMPIXEL_LISTEN_CONNECTION_LIMIT; default 1000)")
    a("--request-timeout", help="seconds a request may take to arrive whole, headers and body; "
      "slower clients are dropped (STREAMPIXEL_LISTEN_REQUEST_TIMEOUT; default 5)")
    a("--max-attempts", help="attempts per delivery on transient failures "
      "(STREAMPIXEL_LISTEN_MAX_ATTEMPTS; default 5)")
    a("--max-pending", help="most deliveries waiting to be acted on; more get 503 "
      "(STREAMPIXEL_LISTEN_MAX_PENDING; default 1000)")
    a("--retention-days", help="days a done delivery is kept (and recognised as a duplicate) "
      "before it is deleted (STREAMPIXEL_LISTEN_RETENTION_DAYS; default 30)")
    a("--paused", action="store_true", help="queue deliveries but act on none, e.g. during "
      "maintenance; restart without it to work off the backlog (STREAMPIXEL_LISTEN_PAUSED)")
    a("--ready-file", help="write {\"port\", \"pid\"} here once listening "
      "(STREAMPIXEL_LISTEN_READY_FILE)")
    for name in SETTINGS_FLAGS:
        a(f"--{name}", dest=name, metavar="VALUE",
          help=f"as for the main command (STREAMPIXEL_{name.upper().replace('-', '_')})")
    a("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def _settings_flags(args: argparse.Namespace, environ: Mapping[str, str],
                    queue: Path) -> dict[str, str | None]:
    flags: dict[str, str | None] = {name: getattr(args, name) for name in SETTINGS_FLAGS}
    flags["project-id"], flags["upload-id"] = _PLACEHOLDER_PROJECT, _PLACEHOLDER_UPLOAD
    if not flags["ledger"] and not environ.get("STREAMPIXEL_LEDGER", "").strip():
        # Spacing survives restarts, and other jobs on this host can share it.
        flags["ledger"] = (queue.resolve().parent / "streampixel-ledger.json").as_uri()
    if not flags["max-wait"] and not environ.get("STREAMPIXEL_MAX_WAIT", "").strip():
        flags["max-wait"] = LISTENER_MAX_WAIT
    return flags


def _report(log: JsonLog, exc: DistributeError) -> None:
    if isinstance(exc, InvalidInput):
        log.error(exc.title, problems=[str(p) for p in exc.problems])
    else:
        log.error(f"{exc.title}: {exc.detail}", hint=exc.hint)


class Listener:
    """Everything that runs: queue, workers, and the HTTP server."""

    def __init__(self, config: ListenerConfig, settings: Settings | None,
                 environ: Mapping[str, str], log: JsonLog) -> None:
        self.config = config
        self.log = log
        self.metrics = Metrics()
        self.stop = threading.Event()
        self.queue = Queue(config.queue, max_pending=config.max_pending)
        self.ledger: Ledger | None = None
        self.workers: list[Worker] = []
        actions: list[Any] = []
        clock = StopClock(self.stop)
        if settings is not None and config.rules.uses("distribute"):
            self.ledger = choose_ledger(settings, environ, clock, log)
            client = CountingClient(settings.api_url, timeout=settings.timeout,
                                    metrics=self.metrics)
            # Import and set up the HTTP stack now, not on the first approval: a slow first call
            # would reach Streampixel late in its slot, leaving the next call too little gap.
            _ = client.session
            actions.append(DistributeAction(settings, ledger=self.ledger, client=client,
                                            clock=clock, metrics=self.metrics))
        if config.rules.uses("dispatch"):
            actions.append(DispatchAction(token=config.github_token,
                                          api_url=config.github_api_url))
        for action in actions:
            self.workers.append(Worker(action, queue=self.queue, stop=self.stop,
                                       log=log.bind(worker=action.kind), metrics=self.metrics,
                                       max_attempts=config.max_attempts))
        self.app = App(config, self.queue, self.metrics, log, wake=self.wake)

    def wake(self) -> None:
        for worker in self.workers:
            worker.wake.set()

    def _create_server(self, limit: int) -> Any:
        from .connections import create_server  # noqa: PLC0415 - imports waitress

        server = create_server(
            self.app, request_timeout=self.config.request_timeout,
            on_drop=self.metrics.connection_dropped,
            host=self.config.host, port=self.config.port, threads=self.config.threads,
            max_request_body_size=self.config.body_limit,
            # waitress's default of 100 connections makes the 99th simultaneous delivery wait
            # until another client hangs up; poll() because select() stops at 1024 descriptors.
            connection_limit=limit, asyncore_use_poll=True,
            channel_timeout=30,  # idle keep-alive connections give their slot back
            cleanup_interval=1,  # how often request deadlines are checked
            ident="streampixel-listener", expose_tracebacks=False,
            clear_untrusted_proxy_headers=True,
        )
        channels = server.active_channels
        self.metrics.open_connections = lambda: len(channels)
        return server

    def prune(self) -> None:
        """Delete done items older than the retention period (at start, then hourly)."""
        while True:
            try:
                removed = self.queue.prune(time.time() - self.config.retention_days * DAY)
                if removed:
                    self.log.info(f"deleted {removed} done delivery(ies) older than "
                                  f"{self.config.retention_days} days")
            except sqlite3.Error as exc:
                self.log.warning("could not delete old done deliveries", error=str(exc))
            if self.stop.wait(PRUNE_EVERY):
                return

    def serve(self) -> int:
        recovered = self.queue.recover(time.time())
        if recovered:
            self.log.warning(f"{recovered} delivery(ies) were in hand when the listener last "
                             "stopped; they are queued again")
        limit = _raise_fd_limit(self.config.connection_limit)
        try:
            server = self._create_server(limit)
        except OSError as exc:
            _report(self.log, DistributeError(
                f"cannot listen on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}", title="Cannot listen",
                hint="Pick another --port (STREAMPIXEL_LISTEN_PORT), or stop what uses it."))
            self.queue.close()
            return 2
        port = int(server.effective_port)
        if not self.config.paused:
            for worker in self.workers:
                worker.start()
        threading.Thread(target=self.prune, name="prune", daemon=True).start()
        drained = threading.Event()
        main_thread = threading.get_ident()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if drained.is_set() or self.stop.is_set():
                # The drain is over (or a second signal: stop now; in-hand items are re-queued
                # at the next start).
                raise SystemExit(0)
            self.log.info(f"received {signal.Signals(signum).name}: finishing the item in hand,"
                          " still accepting deliveries meanwhile")
            self.stop.set()
            threading.Thread(target=drain, name="drain", daemon=True).start()

        def drain() -> None:
            # Keep accepting (and queueing) deliveries while the workers finish or give back
            # their item; only then stop the HTTP server.
            deadline = time.monotonic() + SHUTDOWN_GRACE
            for worker in self.workers:
                worker.wake.set()
                if worker.is_alive():
                    worker.join(max(0.0, deadline - time.monotonic()))
            drained.set()
            # A real signal to the main thread interrupts waitress's select() at once.
            signal.pthread_kill(main_thread, signal.SIGINT)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        if self.config.ready_file:
            _write_ready(self.config.ready_file, {"port": port, "pid": os.getpid()})
        self.log.info("listening", host=self.config.host, port=port,
                      webhook_path="/webhook/<token>", queue=str(self.config.queue),
                      workers=[w.action.kind for w in self.workers], paused=self.config.paused,
                      ledger=self.ledger.description if self.ledger else None,
                      depth=self.queue.depth())
        try:
            server.run()
        finally:
            self.stop.set()
            server.close()
            for worker in self.workers:
                if worker.is_alive():
                    worker.join(1.0)
            busy = [w.name for w in self.workers if w.is_alive()]
            if self.ledger is not None and not busy:
                self.ledger.close()
            self.queue.close()
            if self.config.ready_file:
                self.config.ready_file.unlink(missing_ok=True)
            self.log.info("stopped", unfinished_workers=busy)
        return 0


def _require_waitress() -> None:
    try:
        import waitress  # noqa: F401, PLC0415
    except ImportError:
        raise DistributeError(
            "the `waitress` HTTP server is not installed", title="Missing dependency",
            hint="Install the listener extra: pip install 'streampixel-distribute[listen]' "
            "(the container image includes it).") from None


def _raise_fd_limit(wanted: int) -> int:
    """Raise the soft open-files limit so `wanted` connections fit; the limit that fits."""
    headroom = 64  # the queue, the ledger, outgoing HTTP, stdio
    try:
        import resource  # noqa: PLC0415 - POSIX only

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = wanted + headroom
        if soft != resource.RLIM_INFINITY and soft < need:
            new = need if hard == resource.RLIM_INFINITY else min(need, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    except (ImportError, ValueError, OSError):
        return wanted
    return wanted if soft == resource.RLIM_INFINITY else max(10, min(wanted, soft - headroom))


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, path)  # atomic: a poller never reads half a file


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    try:
        args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    log = JsonLog()
    route_library_logs(log)
    # Secrets first: nothing is logged before the scrubber knows them.
    flags = {name: getattr(args, name) for name in SETTINGS_FLAGS}
    for secret in [*secret_candidates(flags, env), args.token or "",
                   env.get("STREAMPIXEL_WEBHOOK_TOKEN", ""), env.get("GITHUB_TOKEN", "")]:
        redact.register(secret.strip())
    try:
        _require_waitress()
        config = load_config(args, env)
        settings = None
        if config.rules.uses("distribute"):
            settings = load_settings(_settings_flags(args, env, config.queue), env)
            for warning in settings.warnings:
                log.warning(warning, title="Input")
        listener = Listener(config, settings, env, log)
    except DistributeError as exc:
        _report(log, exc)
        return exc.exit_code
    return listener.serve()
