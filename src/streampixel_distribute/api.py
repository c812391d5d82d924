"""StreampixelClient: one POST to the Streampixel API, over HTTPS, never following a redirect.

The transport is here (timeouts, TLS, a capped body, what a failure before any answer means);
what an answer means is answers.py.
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import __version__
from .answers import DISTRIBUTE_FILE, UPLOAD_FILE, Result, excerpt, interpret
from .errors import NetworkError

if TYPE_CHECKING:
    import requests

MAX_BODY_BYTES = 64 * 1024  # a 1 MB error page is read no further than this
USER_AGENT = f"streampixel-distribute/{__version__}"



def http_session() -> requests.Session:
    """A session for this tool's outgoing calls; `requests` is imported on first use, keeping
    `--dry-run` and the listener's accept path fast."""
    import requests  # noqa: PLC0415

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


class HttpClient:
    """A base URL, a timeout, and a `requests.Session` made on first use."""

    def __init__(self, api_url: str, *, timeout: float, session: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = http_session()
        return self._session


class StreampixelClient(HttpClient):
    def prepare(self) -> None:
        """Set up the HTTP session ahead of time, so the call leaves the moment its slot starts."""
        _ = self.session

    @property
    def prepared(self) -> bool:
        return self._session is not None

    def distribute(self, *, api_key: str, user_id: str, project_id: str, upload_id: str) -> Result:
        payload = {"apiKey": api_key, "userId": user_id, "projectId": project_id,
                   "uploadId": upload_id}
        status, headers, raw = self.post(DISTRIBUTE_FILE, payload)
        return interpret(status, headers, raw, now=time.time(), endpoint=DISTRIBUTE_FILE)

    def upload(self, *, api_key: str, user_id: str, project_id: str, file_url: str,
               auto_release: bool) -> Result:
        payload = {"apiKey": api_key, "userId": user_id, "projectId": project_id,
                   "fileUrl": file_url, "autoRelease": auto_release}
        status, headers, raw = self.post(UPLOAD_FILE, payload)
        return interpret(status, headers, raw, now=time.time(), endpoint=UPLOAD_FILE)

    def post(self, path: str, payload: Mapping[str, object]
             ) -> tuple[int, Mapping[str, str], bytes]:
        """One JSON POST: (status, headers, body read to `MAX_BODY_BYTES`), or a NetworkError."""
        import requests  # noqa: PLC0415

        url = self.api_url + path
        try:
            response = self.session.post(
                url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json", "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,  # a redirect must never carry the key to another host
                stream=True,
                verify=_ca_bundle(),
            )
            try:
                raw = _read_capped(response)
            finally:
                response.close()
        except requests.exceptions.SSLError as exc:
            raise NetworkError(
                f"TLS verification of {_host(url)} failed: {_reason(exc)}",
                title="TLS certificate not trusted",
                hint="If a proxy or private CA signs this host, point REQUESTS_CA_BUNDLE (or "
                "SSL_CERT_FILE) at its CA bundle; verification is never switched off.",
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise _network(f"connecting to {_host(url)} timed out after {self.timeout:g} s",
                           reached=False) from None
        except requests.exceptions.ReadTimeout:
            raise _network(f"no response from {_host(url)} within {self.timeout:g} s",
                           reached=True) from None
        except requests.exceptions.ConnectionError as exc:
            reason = _reason(exc)
            reached = not _before_send(reason)
            raise _network(f"connection to {_host(url)} failed: {reason}", reached=reached) \
                from None
        except requests.exceptions.RequestException as exc:
            raise _network(f"request to {_host(url)} failed: {_reason(exc)}", reached=True) \
                from None
        return response.status_code, dict(response.headers), raw


def _ca_bundle() -> str | bool:
    """Verification is always on; the CA bundle may come from the environment.

    requests reads REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE itself but not SSL_CERT_FILE, which is
    what OpenSSL-based tools (and many CI images with a corporate CA) set.
    """
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"):
        value = os.environ.get(name)
        if value:
            return value
    return True


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=16384):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY_BYTES:
            break
    return b"".join(chunks)[:MAX_BODY_BYTES]


def _host(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or "the API host"


def _reason(exc: BaseException) -> str:
    """The innermost useful message of a requests/urllib3 exception chain, scrubbed and short."""
    text = str(exc)
    for pattern, label in (
        (r"Name or service not known|nodename nor servname|getaddrinfo failed|"
         r"Temporary failure in name resolution|NameResolutionError", "DNS lookup failed"),
        (r"Connection refused", "connection refused"),
        (r"Connection reset by peer|ConnectionResetError", "connection reset by peer"),
        (r"RemoteDisconnected|Remote end closed connection", "server closed the connection "
         "without a response"),
        (r"IncompleteRead|Connection broken|InvalidChunkLength", "response cut off"),
        (r"CERTIFICATE_VERIFY_FAILED|certificate verify failed", "certificate verify failed"),
        (r"Network is unreachable", "network unreachable"),
    ):
        if re.search(pattern, text):
            return label
    return excerpt(text, 160)


def _before_send(reason: str) -> bool:
    """True when the failure happened before any byte of the request could reach the server."""
    return reason in ("DNS lookup failed", "connection refused", "network unreachable")


def _network(detail: str, *, reached: bool) -> NetworkError:
    error = NetworkError(
        detail,
        hint="Usually transient. If it persists, check the runner's network, proxy settings "
        "(HTTPS_PROXY/NO_PROXY) and the `api-url` input.",
    )
    error.retryable = True
    error.reached_server = reached
    return error
