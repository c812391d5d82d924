"""`/metrics` in the Prometheus text format, through `prometheus_client`.

Counters and histograms live in memory and restart at zero with the process, as Prometheus
expects. What the queue holds, whether it accepts writes and how many connections are open are
read at scrape time (a collector), so they are right after a restart too. Every listener has its
own registry: several can run in one process (the tests do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__
from .config import KNOWN_EVENTS

PREFIX = "streampixel_listener"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Streampixel waits 10 s for a delivery's answer and never retries: the buckets end there.
RESPONSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Waits for the account's slots: one interval is 120 s; a backlog takes many.
WAIT_BUCKETS = (0.0, 1.0, 10.0, 60.0, 125.0, 250.0, 500.0, 1000.0, 3600.0, 21600.0)


def event_label(event: object) -> str:
    """Bounded label values: a hostile sender must not create unlimited time series."""
    return event if isinstance(event, str) and event in KNOWN_EVENTS else "other"


class State:
    """What is read at scrape time."""

    def __init__(self) -> None:
        self.healthy: Callable[[], bool] = lambda: True
        self.depth: Callable[[], Mapping[str, int]] = dict
        self.paused = False
        self.capacity: int | None = None
        self.open_connections: Callable[[], int] = lambda: 0


class _StateCollector(Collector):
    def __init__(self, state: State) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state = self.state
        healthy = state.healthy()
        info = GaugeMetricFamily(f"{PREFIX}_info", "Version of the listener.",
                                 labels=["version"])
        info.add_metric([__version__], 1)
        yield info
        yield GaugeMetricFamily(f"{PREFIX}_up", "1 when a delivery would be queued now (a "
                                "committed test write succeeds).", value=1 if healthy else 0)
        yield GaugeMetricFamily(f"{PREFIX}_paused", "1 when started with --paused (deliveries "
                                "queue up, none is acted on).", value=1 if state.paused else 0)
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Queued deliveries by state.",
                                  labels=["state"])
        for name, count in sorted((state.depth() if healthy else {}).items()):
            depth.add_metric([name], count)
        yield depth
        if state.capacity is not None:
            yield GaugeMetricFamily(f"{PREFIX}_queue_capacity", "Most pending+working items; "
                                    "deliveries beyond it get 503 (outcome queue_full).",
                                    value=state.capacity)
        yield GaugeMetricFamily(f"{PREFIX}_connections_open", "Open HTTP connections.",
                                value=state.open_connections())


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.state = State()
        self.registry.register(_StateCollector(self.state))
        r = self.registry
        self._deliveries = Counter(f"{PREFIX}_deliveries", "Webhook deliveries by event and "
                                   "outcome.", ["event", "outcome"], registry=r)
        self._response = Histogram(f"{PREFIX}_response_seconds", "Time to answer a webhook "
                                   "delivery (Streampixel gives up after 10 s).",
                                   buckets=RESPONSE_BUCKETS, registry=r)
        self._dropped = Counter(f"{PREFIX}_connections_dropped", "Connections closed by the "
                                "listener: deadline (request not whole in time), evicted (oldest "
                                "idle one, all slots taken).", ["reason"], registry=r)
        self._actions = Counter(f"{PREFIX}_actions", "Actions taken on queued deliveries, by "
                                "result.", ["action", "result"], registry=r)
        self._distributions = Counter(f"{PREFIX}_distributions", "distribute-file outcomes by "
                                      "result.", ["result"], registry=r)
        self._rate_limited = Counter(f"{PREFIX}_rate_limited", "HTTP 429 answers from "
                                     "Streampixel.", registry=r)
        self._wait = Histogram(f"{PREFIX}_wait_seconds", "Time spent waiting for the account's "
                               "rate-limit slots before distribute-file.", buckets=WAIT_BUCKETS,
                               registry=r)
        for reason in ("deadline", "evicted"):
            self._dropped.labels(reason)  # shown as 0 from the start

    def delivery(self, event: object, outcome: str, seconds: float) -> None:
        self._deliveries.labels(event_label(event), outcome).inc()
        self._response.observe(seconds)

    def connection_dropped(self, reason: str) -> None:
        self._dropped.labels(reason).inc()

    def action(self, action: str, result: str) -> None:
        self._actions.labels(action, result).inc()
        if action == "distribute":
            self._distributions.labels(result).inc()

    def rate_limit_hit(self) -> None:
        self._rate_limited.inc()

    def waited(self, seconds: float) -> None:
        self._wait.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
