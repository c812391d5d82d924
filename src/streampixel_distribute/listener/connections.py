"""waitress, hardened against slow clients: a deadline per request, and eviction when full.

waitress reads requests in one asyncore thread and hands only complete ones to its worker
threads, so a slow client costs no thread; but it holds one of `connection_limit` slots. waitress's
only timeout (`channel_timeout`) counts from the last byte received, so a client trickling one
header byte a second is never idle, and once every slot is taken waitress stops accepting: a real
delivery then waits in the kernel's backlog until Streampixel's 10 s timeout, and is lost.

Two rules close that, both enforced in the asyncore thread:

- **Deadline.** A request must arrive whole (headers and body) within `request_timeout` seconds,
  counted from the connection's start for its first request and from the first byte for the next
  ones. A delivery is a few hundred bytes; a client that needs longer is dropped.
- **Eviction.** When every slot is taken, a new connection is still accepted and the oldest
  connection that is not being served (a request still arriving, or an idle keep-alive) is closed
  instead. A real delivery arrives whole within milliseconds, so trickling clients cannot keep it
  out: pushing it out would take `connection_limit` new connections within those milliseconds.
  Only when every slot is serving a request does the server stop accepting (waitress's own rule).

A per-address cap is deliberately not used: Streampixel sends its bursts from one address, and
behind a reverse proxy every connection has the proxy's address.

Dropped connections are shut down, not closed, here: closing frees the descriptor number at once,
and a connection accepted in the same loop turn could reuse it and receive the old one's poll
events. After `shutdown()` the socket reports a hang-up, and waitress closes it in its own turn.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import MultiSocketServer, TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

Drop = Callable[[str], None]
#: Connections accepted per loop turn. waitress accepts one per turn, and a turn costs time in
#: proportion to the open connections: a thousand attackers reconnecting at once would queue a
#: real delivery behind a thousand turns. Also the most the limit is exceeded by for a moment.
ACCEPT_BATCH = 16
#: How long a computed eviction order is used before it is computed again.
VICTIMS_TTL = 1.0


class GuardedChannel(HTTPChannel):  # type: ignore[misc]  # waitress ships no type hints
    def __init__(self, server: Any, sock: socket.socket, addr: Any, adj: Any,
                 map: Any = None) -> None:
        super().__init__(server, sock, addr, adj, map)
        #: When the request now arriving started (None: none is arriving).
        self.pending_since: float | None = self.creation_time

    def received(self, data: bytes) -> bool:
        before = self.request
        result = super().received(data)
        if self.request is None:
            self.pending_since = None  # every request so far arrived whole
        elif self.request is not before and (before is not None or self.pending_since is None):
            self.pending_since = time.time()  # a new request began (keep-alive, pipelining)
        return bool(result)

    def evictable(self) -> bool:
        """Not serving a request, and not already on its way out."""
        return not (self.requests or self.will_close or self.close_when_flushed)

    def age_key(self) -> float:
        return self.pending_since if self.pending_since is not None else self.last_activity

    def drop(self) -> None:
        self.will_close = True
        with contextlib.suppress(OSError):  # already gone: the hang-up is reported all the same
            self.socket.shutdown(socket.SHUT_RDWR)


class GuardedServer(TcpWSGIServer):  # type: ignore[misc]
    channel_class = GuardedChannel
    next_channel_cleanup: float = 0.0
    in_connection_overflow: bool = False

    def __init__(self, application: Any, *, request_timeout: float, on_drop: Drop,
                 **kw: Any) -> None:
        self.request_timeout = request_timeout
        self.on_drop = on_drop
        self._victims: list[GuardedChannel] = []  # youngest first: pop() gives the oldest
        self._victims_at = 0.0
        super().__init__(application, **kw)

    def _oldest_evictable(self) -> GuardedChannel | None:
        """The oldest connection not being served; sorted once per VICTIMS_TTL, not per accept."""
        now = time.monotonic()
        if not self._victims or now - self._victims_at > VICTIMS_TTL:
            self._victims = sorted((c for c in self.active_channels.values() if c.evictable()),
                                   key=GuardedChannel.age_key, reverse=True)
            self._victims_at = now
        while self._victims:
            victim = self._victims.pop()
            if victim.connected and victim.evictable():
                return victim
        return None

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        full = len(self.active_channels) >= self.adj.connection_limit
        # Runs every loop turn: any() stops at the first candidate, min() only on accept.
        overflow = full and not any(c.evictable() for c in self.active_channels.values())
        if overflow != self.in_connection_overflow:
            self.in_connection_overflow = overflow
            if overflow:
                self.logger.warning("every connection is serving a request; new connections "
                                    "wait until one finishes")
            else:
                self.logger.info("a connection slot is free again; accepting")
        return not overflow

    def _pending(self) -> bool:
        """Another connection waits to be accepted (a poll that does not wait)."""
        poller = select.poll()
        poller.register(self.socket, select.POLLIN)
        return bool(poller.poll(0))

    def handle_accept(self) -> None:
        for turn in range(ACCEPT_BATCH):
            if turn and not self._pending():
                return
            if len(self.active_channels) >= self.adj.connection_limit:
                victim = self._oldest_evictable()
                if victim is None:
                    return  # every slot is serving a request: accept on a later turn
                victim.drop()
                self.on_drop("evicted")
            opened = len(self.active_channels)
            super().handle_accept()
            if len(self.active_channels) == opened:
                return  # nothing (more) to accept

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections (channel_timeout)
        cutoff = now - self.request_timeout
        for channel in list(self.active_channels.values()):
            since = channel.pending_since
            if since is not None and since < cutoff and channel.evictable():
                channel.drop()
                self.on_drop("deadline")


def create_server(application: Any, *, request_timeout: float, on_drop: Drop,
                  **adjustments: Any) -> Any:
    """waitress.create_server, with GuardedServer for every listening socket."""
    adj = Adjustments(**adjustments)
    socket_map: dict[int, Any] = {}
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    servers = [GuardedServer(application, map=socket_map, dispatcher=dispatcher, adj=adj,
                             sockinfo=sockinfo, request_timeout=request_timeout,
                             on_drop=on_drop)
               for sockinfo in adj.listen]
    if len(servers) == 1:
        return servers[0]
    multi = MultiSocketServer(socket_map, adj,
                              [(s.effective_host, s.effective_port) for s in servers],
                              dispatcher, servers[-1].log_info)
    multi.effective_port = servers[-1].effective_port
    multi.active_channels = _Channels(servers)
    return multi


class _Channels:
    """The open connections of several listening sockets, for the /metrics gauge."""

    def __init__(self, servers: list[GuardedServer]) -> None:
        self.servers = servers

    def __len__(self) -> int:
        return sum(len(s.active_channels) for s in self.servers)
