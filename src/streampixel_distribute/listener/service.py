"""The running listener: queue, workers and the HTTP server, and their orderly stop.

On SIGTERM the listener keeps accepting (and queueing) deliveries while its workers finish the
item in hand or give it back, then stops the HTTP server; an item in hand when the process died
goes back to the queue at the next start.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from ..errors import InvalidInput, Problem
from ..ledger import Ledger
from ..ledger.policy import choose_ledger
from ..settings import Account
from .actions import CountingClient, DispatchAction, DistributeAction, StopClock
from .config import ListenerConfig
from .log import JsonLog
from .metrics import Metrics
from .queue import Queue
from .server import App
from .worker import Worker

SHUTDOWN_GRACE = 60.0
PRUNE_EVERY = 3600.0
DAY = 86400.0


class Listener:
    """Everything that runs: queue, workers, and the HTTP server."""

    def __init__(self, config: ListenerConfig, account: Account | None,
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
        if account is not None and config.rules.uses("distribute"):
            self.ledger = choose_ledger(account.ledger, github_token=account.github_token,
                                        environ=environ, now=clock.time, notes=log)
            client = CountingClient(account.api_url, timeout=account.timeout,
                                    metrics=self.metrics)
            # Import and set up the HTTP stack now, not on the first approval: a slow first call
            # would reach Streampixel late in its slot, leaving the next call too little gap.
            client.prepare()
            actions.append(DistributeAction(account, ledger=self.ledger, client=client,
                                            clock=clock, metrics=self.metrics, environ=environ))
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
        self.metrics.state.open_connections = lambda: len(channels)
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
            self.queue.close()
            raise InvalidInput([Problem(
                "port", f"cannot listen on {self.config.host}:{self.config.port}: "
                f"{exc.strerror or exc}.",
                "Pick another --port (STREAMPIXEL_LISTEN_PORT), or stop what uses it.")],
                title="Cannot listen") from None
        port = int(server.effective_port)
        if not self.config.paused:
            for worker in self.workers:
                worker.start()
        threading.Thread(target=self.prune, name="prune", daemon=True).start()
        self._stop_on_signals()
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
            self._close(server)
        return 0

    def _stop_on_signals(self) -> None:
        """SIGTERM/SIGINT: keep accepting (and queueing) deliveries while the workers finish or
        give back their item; only then stop the HTTP server. A second signal stops at once (an
        item in hand is queued again at the next start)."""
        drained = threading.Event()
        main_thread = threading.get_ident()

        def on_signal(signum: int, _frame: FrameType | None) -> None:
            if drained.is_set() or self.stop.is_set():
                raise SystemExit(0)
            self.log.info(f"received {signal.Signals(signum).name}: finishing the item in hand,"
                          " still accepting deliveries meanwhile")
            self.stop.set()
            threading.Thread(target=drain, name="drain", daemon=True).start()

        def drain() -> None:
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

    def _close(self, server: Any) -> None:
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


