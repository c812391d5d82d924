"""The HTTP client's transport failures against real sockets: did the request reach the server?

The answer decides the retry: a request that cannot have reached Streampixel (refused, or no
connection within the timeout) is retried after a short backoff; one that may have (no answer,
a reset after sending) waits a full interval, since it may have used the account's window.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from streampixel_distribute.api import StreampixelClient
from streampixel_distribute.errors import NetworkError
from support.emulator import Emulator
from support.hostile import closed_port

IDS = {"api_key": "sk-client-test-0123456789", "user_id": "663d0a1b2c3e4f5a6b7c8d9e",
       "project_id": "664f1a2b3c4d5e6f7a8b9c0d", "upload_id": "665a2b3c4d5e6f7a8b9c0e1f"}


def failure(url: str, *, timeout: float = 2.0) -> NetworkError:
    with pytest.raises(NetworkError) as info:
        StreampixelClient(url, timeout=timeout).distribute(**IDS)
    assert info.value.retryable
    return info.value


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: the kernel drops further SYNs, so connecting to it
    times out (a real ConnectTimeout on loopback)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            yield port


def test_connection_refused_never_reached_the_server() -> None:
    error = failure(f"http://127.0.0.1:{closed_port()}/pixelStripeApi")
    assert not error.reached_server
    assert "connection refused" in error.detail


def test_connect_timeout_never_reached_the_server(full_backlog: int) -> None:
    error = failure(f"http://127.0.0.1:{full_backlog}/pixelStripeApi", timeout=0.5)
    assert not error.reached_server
    assert "connecting" in error.detail and "timed out" in error.detail


def test_no_answer_in_time_may_have_reached_the_server(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", delay=3.0, status=200)
    error = failure(emulator.url, timeout=0.5)
    assert error.reached_server
    assert "no response" in error.detail


@pytest.fixture
def not_http() -> Iterator[int]:
    """A server that reads the request, then answers a line that is not HTTP and hangs up."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        yield int(server.getsockname()[1])
        thread.join(timeout=10)


def test_an_answer_that_is_not_http_may_have_reached_the_server(not_http: int) -> None:
    """Something else listens on the port: it got the request, so it is treated as reached;
    the error quotes what the HTTP stack said, in short."""
    error = failure(f"http://127.0.0.1:{not_http}/pixelStripeApi")
    assert error.reached_server
    assert error.detail.startswith("connection to 127.0.0.1 failed: ")
    assert "SSH-2.0-OpenSSH_9.6" in error.detail
    assert len(error.detail) <= len("connection to 127.0.0.1 failed: ") + 160


def test_reset_after_sending_may_have_reached_the_server(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", drop="before_response")
    error = failure(emulator.url)
    assert error.reached_server
