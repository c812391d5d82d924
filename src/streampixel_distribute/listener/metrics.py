"""Prometheus text exposition (format 0.0.4), written by hand: a few counters need no library.

Counters live in memory and restart at zero with the process, as Prometheus expects; the queue
depth is read from the database at scrape time, so it is right after a restart too.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping

from .. import __version__
from .config import KNOWN_EVENTS

PREFIX = "streampixel_listener"


def event_label(event: object) -> str:
    """Bounded label values: a hostile sender must not create unlimited time series."""
    return event if isinstance(event, str) and event in KNOWN_EVENTS else "other"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deliveries: dict[tuple[str, str], int] = defaultdict(int)
        self.actions: dict[tuple[str, str], int] = defaultdict(int)
        self.rate_limited = 0
        self.wait_seconds = 0.0
        self.waits = 0
        self.response_seconds = 0.0
        self.responses = 0
        self.response_max = 0.0
        self.dropped: dict[str, int] = defaultdict(int)
        #: Open HTTP connections, read at scrape time (set once the server exists).
        self.open_connections: Callable[[], int] = lambda: 0

    def delivery(self, event: object, outcome: str, seconds: float) -> None:
        with self._lock:
            self.deliveries[(event_label(event), outcome)] += 1
            self.response_seconds += seconds
            self.responses += 1
            self.response_max = max(self.response_max, seconds)

    def connection_dropped(self, reason: str) -> None:
        with self._lock:
            self.dropped[reason] += 1

    def action(self, action: str, result: str) -> None:
        with self._lock:
            self.actions[(action, result)] += 1

    def rate_limit_hit(self) -> None:
        with self._lock:
            self.rate_limited += 1

    def waited(self, seconds: float) -> None:
        with self._lock:
            self.wait_seconds += seconds
            self.waits += 1

    def render(self, depth: Mapping[str, int], *, healthy: bool, paused: bool,
               capacity: int | None = None) -> str:
        p = PREFIX
        lines: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            lines.append(f"# HELP {p}_{name} {text}")
            lines.append(f"# TYPE {p}_{name} {kind}")

        def sample(name: str, value: float, **labels: str) -> None:
            label = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            lines.append(f"{p}_{name}{{{label}}} {value:g}" if label else f"{p}_{name} {value:g}")

        with self._lock:
            deliveries = dict(self.deliveries)
            actions = dict(self.actions)
            rate_limited, wait_s, waits = self.rate_limited, self.wait_seconds, self.waits
            resp_s, resps, resp_max = self.response_seconds, self.responses, self.response_max
            dropped = dict(self.dropped)
        family("info", "gauge", "Version of the listener.")
        sample("info", 1, version=__version__)
        family("up", "gauge", "1 when a delivery would be queued now (a committed test write "
               "succeeds).")
        sample("up", 1 if healthy else 0)
        family("paused", "gauge", "1 when started with --paused (deliveries queue up, none "
               "is acted on).")
        sample("paused", 1 if paused else 0)
        family("deliveries_total", "counter", "Webhook deliveries by event and outcome.")
        for (event, outcome), n in sorted(deliveries.items()):
            sample("deliveries_total", n, event=event, outcome=outcome)
        family("queue_depth", "gauge", "Queued deliveries by state.")
        for state, n in sorted(depth.items()):
            sample("queue_depth", n, state=state)
        if capacity is not None:
            family("queue_capacity", "gauge", "Most pending+working items; deliveries beyond it "
                   "get 503 (outcome queue_full).")
            sample("queue_capacity", capacity)
        family("connections_open", "gauge", "Open HTTP connections.")
        sample("connections_open", self.open_connections())
        family("connections_dropped_total", "counter", "Connections closed by the listener: "
               "deadline (request not whole in time), evicted (oldest idle one, all slots "
               "taken).")
        for reason in ("deadline", "evicted"):
            sample("connections_dropped_total", dropped.get(reason, 0), reason=reason)
        family("actions_total", "counter", "Actions taken on queued deliveries, by result.")
        for (action, result), n in sorted(actions.items()):
            sample("actions_total", n, action=action, result=result)
        family("distributions_total", "counter", "distribute-file outcomes by result.")
        for (action, result), n in sorted(actions.items()):
            if action == "distribute":
                sample("distributions_total", n, result=result)
        family("rate_limited_total", "counter", "HTTP 429 answers from Streampixel.")
        sample("rate_limited_total", rate_limited)
        family("wait_seconds", "summary", "Time spent waiting for the account's rate-limit "
               "slots before distribute-file.")
        sample("wait_seconds_sum", wait_s)
        sample("wait_seconds_count", waits)
        family("response_seconds", "summary", "Time to answer a webhook delivery.")
        sample("response_seconds_sum", resp_s)
        sample("response_seconds_count", resps)
        family("response_seconds_max", "gauge", "Slowest webhook answer since start.")
        sample("response_seconds_max", resp_max)
        return "\n".join(lines) + "\n"

