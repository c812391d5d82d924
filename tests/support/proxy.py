"""A forward proxy on loopback for the git ledger's proxy tests: `CONNECT host:port` tunnels (what
clients do for https URLs), optionally behind Basic proxy authentication (407 otherwise). It
records every request line and its headers, so a test can see what the proxy could read.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class TunnelProxy:
    port: int = 0
    #: "user:password" the proxy demands, or "" for an open proxy.
    credentials: str = ""
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return list(self.seen)


def _handler(proxy: TunnelProxy) -> type[BaseHTTPRequestHandler]:
    expected = "Basic " + base64.b64encode(proxy.credentials.encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_CONNECT(self) -> None:
            with proxy._lock:
                proxy.seen.append((self.requestline, dict(self.headers.items())))
            if proxy.credentials and self.headers.get("Proxy-Authorization") != expected:
                self.send_response(407)
                self.send_header("Proxy-Authenticate", 'Basic realm="proxy"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            host, _, port = self.path.rpartition(":")
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except OSError:
                self.send_error(502)
                return
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            self._pipe(self.connection, upstream)
            self.close_connection = True

        def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
            with upstream:
                sockets = [client, upstream]
                while True:
                    readable, _, _ = select.select(sockets, [], [], 30)
                    if not readable:
                        return
                    for sock in readable:
                        data = sock.recv(65536)
                        if not data:
                            return
                        (upstream if sock is client else client).sendall(data)

    return Handler


@contextlib.contextmanager
def tunnel_proxy(credentials: str = "") -> Iterator[TunnelProxy]:
    proxy = TunnelProxy(credentials=credentials)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
