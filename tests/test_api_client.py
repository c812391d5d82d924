"""The HTTP client's transport failures against real sockets: did the request reach the server?

The answer decides the retry: a request that cannot have reached Streampixel (refused, or no
connection within the timeout) is retried after a short backoff; one that may have (no answer,
a reset after sending) waits a full interval, since it may have used the account's window.
"""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from streampixel_distribute import __version__
from streampixel_distribute.answers import DISTRIBUTE_FILE, Result, TooManyRequests
from streampixel_distribute.api import (
    MAX_BODY_BYTES,
    StreampixelClient,
    _reason,
    http_session,
)
from streampixel_distribute.errors import DistributeError, NetworkError
from support.emulator import Emulator
from support.hostile import (
    EndlessBodyServer,
    Received,
    RecordingServer,
    closed_port,
    endless_body_server,
    recording_server,
)
from support.tls import LoopbackCA, make_test_ca

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
    assert error.detail == "no response from 127.0.0.1 within 0.5 s"


def answer_once(reply: bytes) -> Iterator[int]:
    """A server that reads one request, sends `reply` (raw bytes) and hangs up; yields its port."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)

        def answer() -> None:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                connection.sendall(reply)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        yield int(server.getsockname()[1])
        thread.join(timeout=10)


@pytest.fixture
def not_http() -> Iterator[int]:
    """Something that is not HTTP answers the request, then hangs up."""
    yield from answer_once(b"SSH-2.0-OpenSSH_9.6\r\n")


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


# -- what goes out, and what comes back -----------------------------------------------------------


@pytest.fixture
def capture() -> Iterator[RecordingServer]:
    """A server that records every request and answers 200 `Distribution triggered`."""
    yield from recording_server()


def api_url(server: RecordingServer, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{server.port}/pixelStripeApi/"  # a trailing / as users write


def the_request(server: RecordingServer) -> Received:
    _, received = server.snapshot()
    assert len(received) == 1, received
    return received[0]


def test_distribute_posts_the_documented_json_once(capture: RecordingServer) -> None:
    result = StreampixelClient(api_url(capture), timeout=5).distribute(**IDS)
    assert result == Result(200, "Distribution triggered", {"message": "Distribution triggered"})
    sent = the_request(capture)
    assert (sent.method, sent.path) == ("POST", "/pixelStripeApi/projects/distribute-file")
    assert json.loads(sent.body) == {"apiKey": IDS["api_key"], "userId": IDS["user_id"],
                                     "projectId": IDS["project_id"],
                                     "uploadId": IDS["upload_id"]}
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"] == f"streampixel-distribute/{__version__}"


@pytest.mark.parametrize("auto_release", [True, False])
def test_upload_posts_the_file_url_and_auto_release(capture: RecordingServer,
                                                    auto_release: bool) -> None:
    ids = {k: v for k, v in IDS.items() if k != "upload_id"}
    url = "https://builds.example.com/b/Build.zip"
    result = StreampixelClient(api_url(capture), timeout=5).upload(
        **ids, file_url=url, auto_release=auto_release)
    sent = the_request(capture)
    assert (sent.method, sent.path) == ("POST", "/pixelStripeApi/projects/upload-file")
    assert json.loads(sent.body) == {"apiKey": IDS["api_key"], "userId": IDS["user_id"],
                                     "projectId": IDS["project_id"], "fileUrl": url,
                                     "autoRelease": auto_release}
    assert sent.headers["Content-Type"] == "application/json"
    # Read as upload-file's answer: accepted, and the missing uploadId is said.
    assert result.http_status == 200
    assert len(result.warnings) == 1 and "`uploadId`" in result.warnings[0]


def test_only_trailing_slashes_leave_the_base_url() -> None:
    assert StreampixelClient("http://h/api/vX//", timeout=1).api_url == "http://h/api/vX"


def test_an_empty_2xx_is_named_for_its_endpoint(emulator: Emulator) -> None:
    emulator.fault(path="distribute-file", status=200, body="")
    result = StreampixelClient(emulator.url, timeout=5).distribute(**IDS)
    assert (result.http_status, result.message) == (200, "Distribution triggered")


def test_an_upload_429_is_read_with_its_headers(emulator: Emulator) -> None:
    emulator.fault(path="upload-file", status=429,
                   headers={"Retry-After": email.utils.formatdate(time.time() + 42, usegmt=True)})
    ids = {k: v for k, v in IDS.items() if k != "upload_id"}
    with pytest.raises(TooManyRequests) as info:
        StreampixelClient(emulator.url, timeout=5).upload(
            **ids, file_url="https://builds.example.com/b/Build.zip", auto_release=True)
    assert info.value.retry_after is not None and 39 <= info.value.retry_after <= 43


def test_a_session_handed_in_is_the_one_used(capture: RecordingServer) -> None:
    session = http_session()
    session.headers["X-Probe"] = "handed-in"
    client = StreampixelClient(api_url(capture), timeout=5, session=session)
    assert client.prepared
    client.distribute(**IDS)
    assert the_request(capture).headers["X-Probe"] == "handed-in"


def test_prepare_sets_the_session_up_before_the_call() -> None:
    client = StreampixelClient("http://127.0.0.1:9/pixelStripeApi", timeout=5)
    assert not client.prepared
    client.prepare()
    assert client.prepared  # no connection is made: nothing listens on port 9


def test_a_redirect_is_answered_not_followed(emulator: Emulator,
                                             capture: RecordingServer) -> None:
    """The key never travels to where a redirect points, even on the same host."""
    emulator.fault(path="distribute-file", status=307,
                   headers={"Location": capture.url()})
    with pytest.raises(DistributeError) as info:
        StreampixelClient(emulator.url, timeout=5).distribute(**IDS)
    assert info.value.http_status == 307
    assert capture.snapshot() == (0, [])


def test_a_429_is_read_with_its_headers(emulator: Emulator) -> None:
    """Retry-After as an HTTP date: turned into seconds from the moment of the answer."""
    emulator.fault(path="distribute-file", status=429, body={"message": "Too many requests"},
                   headers={"Retry-After": email.utils.formatdate(time.time() + 42, usegmt=True)})
    with pytest.raises(TooManyRequests) as info:
        StreampixelClient(emulator.url, timeout=5).distribute(**IDS)
    assert info.value.retry_after is not None and 39 <= info.value.retry_after <= 43
    assert info.value.source == "Retry-After header"
    assert info.value.server_message == "Too many requests"


def test_the_body_is_read_no_further_than_64_kib(endless: EndlessBodyServer) -> None:
    """A server that never stops sending costs 64 KiB: the client reads as it streams, then
    hangs up, and keeps exactly the first MAX_BODY_BYTES."""
    status, headers, raw = StreampixelClient(endless.api_url, timeout=5).post(
        DISTRIBUTE_FILE, {"apiKey": IDS["api_key"]})
    assert (status, headers["Content-Type"]) == (500, "text/html")
    chunk = b"<p>" + b"overloaded " * 1000 + b"</p>"
    assert raw == (chunk * (MAX_BODY_BYTES // len(chunk) + 1))[:MAX_BODY_BYTES]
    deadline = time.monotonic() + 10
    while not endless.total_sent() and time.monotonic() < deadline:
        time.sleep(0.02)  # the server notices the hang-up on its next write
    # Socket buffers hold a few MB in flight; reading it all would take the server's 64 MB.
    assert endless.total_sent() and endless.total_sent()[0] < 16 * 1024 * 1024


@pytest.fixture
def endless() -> Iterator[EndlessBodyServer]:
    yield from endless_body_server()


# -- TLS: verification always on, the CA bundle from the environment -----------------------------


@pytest.fixture(scope="module")
def loopback_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> LoopbackCA:
    return make_test_ca(tmp_path_factory.mktemp("other-ca"))


@pytest.fixture
def tls_capture(loopback_ca: LoopbackCA) -> Iterator[RecordingServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(loopback_ca.cert, loopback_ca.key)
    yield from recording_server(tls=context)


@pytest.fixture
def no_ca_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_an_untrusted_certificate_is_refused_with_the_fix(tls_capture: RecordingServer,
                                                          no_ca_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(NetworkError) as info:
        StreampixelClient(api_url(tls_capture, "https"), timeout=5).distribute(**IDS)
    assert info.value.title == "TLS certificate not trusted"
    assert info.value.detail == "TLS verification of 127.0.0.1 failed: certificate verify failed"
    assert info.value.hint.startswith("If a proxy or private CA signs this host, point "
                                      "REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at its CA bundle")
    assert tls_capture.snapshot()[1] == []


@pytest.mark.parametrize("trusted", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_ca_bundle_comes_from_the_first_variable_set(
        tls_capture: RecordingServer, no_ca_env: pytest.MonkeyPatch, loopback_ca: LoopbackCA,
        other_ca: LoopbackCA, trusted: str) -> None:
    """REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE, then SSL_CERT_FILE (which requests alone does
    not read): the first one set is used, even when a later one names another CA."""
    order = ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"]
    no_ca_env.setenv(trusted, str(loopback_ca.ca_cert))
    for later in order[order.index(trusted) + 1:]:
        no_ca_env.setenv(later, str(other_ca.ca_cert))
    StreampixelClient(api_url(tls_capture, "https"), timeout=5).distribute(**IDS)
    assert the_request(tls_capture).path == "/pixelStripeApi/projects/distribute-file"


# -- the words of a transport failure -------------------------------------------------------------


def test_transport_failures_say_where_and_how_long(full_backlog: int) -> None:
    error = failure(f"http://127.0.0.1:{full_backlog}/pixelStripeApi", timeout=0.5)
    assert error.detail == "connecting to 127.0.0.1 timed out after 0.5 s"
    assert error.reached_server is False
    assert error.hint == ("Usually transient. If it persists, check the runner's network, proxy "
                          "settings (HTTPS_PROXY/NO_PROXY) and the `api-url` input.")


@pytest.fixture
def broken_chunks() -> Iterator[int]:
    """A 200 with a chunked body whose chunk size is not hex."""
    yield from answer_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nbody\r\n")


def test_a_body_cut_off_may_have_reached_the_server(broken_chunks: int) -> None:
    error = failure(f"http://127.0.0.1:{broken_chunks}/pixelStripeApi")
    assert error.detail == "request to 127.0.0.1 failed: response cut off"
    assert error.reached_server is True


def test_a_long_reason_is_cut_to_160_characters() -> None:
    reason = _reason(ValueError("a strange failure " * 30))
    assert len(reason) == 160 and reason.startswith("a strange failure a strange")
    assert reason.endswith("…")
