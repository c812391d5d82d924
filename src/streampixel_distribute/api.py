"""StreampixelClient: one `POST /projects/distribute-file`, mapped to a Result or a typed error.

Policy (waiting, retrying) is not decided here; each error only says whether a retry may help
(`retryable`) and whether the request may have reached the server (`reached_server`), which decides
how long the coordinator must wait before trying again.
"""

from __future__ import annotations

import html
import json
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import __version__
from .errors import (
    Forbidden,
    InvalidInput,
    NetworkError,
    NotFound,
    NotReady,
    Problem,
    RateLimited,
    ServerError,
    Unauthorized,
)
from .redact import one_line

if TYPE_CHECKING:
    import requests

DISTRIBUTE_PATH = "/projects/distribute-file"
MAX_BODY_BYTES = 64 * 1024  # a 1 MB error page is read no further than this
EXCERPT_CHARS = 200
MESSAGE_CHARS = 500
USER_AGENT = f"streampixel-distribute/{__version__}"


@dataclass(frozen=True)
class Result:
    """A 2xx answer: distribution was triggered (it runs asynchronously on Streampixel's side)."""

    http_status: int
    message: str
    body: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


class TooManyRequests(RateLimited):
    """A 429. `retry_after` is seconds from the response, or None when it gave no usable hint."""

    default_title = "Rate limited by Streampixel (HTTP 429)"
    default_hint = ("Another job of this account called within the last interval. Use a shared "
                    "`ledger` so jobs take turns, or raise `max-wait`.")

    def __init__(self, detail: str, *, retry_after: float | None, source: str, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = retry_after
        self.source = source


_TRY_AGAIN = re.compile(
    r"try\s+again\s+in\s+(?:about\s+)?(\d{1,6}(?:\.\d{1,3})?)\s*"
    r"(seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}
MAX_RETRY_AFTER = 6 * 3600.0  # anything longer is nonsense for a 2-minute limit


def parse_retry_after(header: str | None, message: str, *, now: float) -> tuple[float | None, str]:
    """Seconds to wait from a `Retry-After` header, else from `Try again in N minutes|seconds`.

    Returns (seconds or None, where it came from). Malformed values are ignored, not trusted.
    """
    if header:
        value = header.strip()
        if re.fullmatch(r"\d{1,9}", value):
            return min(float(value), MAX_RETRY_AFTER), "Retry-After header"
        import email.utils  # noqa: PLC0415 - rare path; the email package is slow to import

        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            when = None
        if when is not None and when.tzinfo is not None:
            return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER), "Retry-After header"
    match = _TRY_AGAIN.search(message or "")
    if match:
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]
        return min(seconds, MAX_RETRY_AFTER), "server message"
    return None, "none"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A short, single-line, scrubbed excerpt of a body that was not the expected JSON."""
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return one_line(html.unescape(text), limit)


def http_session() -> requests.Session:
    """A session for this tool's outgoing calls; `requests` is imported on first use, keeping
    `--dry-run` and the listener's accept path fast."""
    import requests  # noqa: PLC0415

    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


class StreampixelClient:
    def __init__(self, api_url: str, *, timeout: float, session: requests.Session | None = None):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self._session = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = http_session()
        return self._session

    def prepare(self) -> None:
        """Set up the HTTP session ahead of time, so the call leaves the moment its slot starts."""
        _ = self.session

    def distribute(self, *, api_key: str, user_id: str, project_id: str, upload_id: str) -> Result:
        payload = {"apiKey": api_key, "userId": user_id, "projectId": project_id,
                   "uploadId": upload_id}
        status, headers, raw = self._post(DISTRIBUTE_PATH, payload)
        return interpret(status, headers, raw, now=time.time())

    def _post(self, path: str, payload: Mapping[str, str]) -> tuple[int, Mapping[str, str], bytes]:
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


def interpret(  # noqa: PLR0912, PLR0915 - one branch per documented status
    status: int, headers: Mapping[str, str], raw: bytes, *, now: float
) -> Result:
    """Map one HTTP response to a Result or a typed error (pure: fuzzed in tests)."""
    text = raw.decode("utf-8", "replace")
    body: Mapping[str, Any] = {}
    try:
        parsed = json.loads(text) if text.strip() else {}
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        parsed = None
    raw_message = body.get("message")
    message = one_line(raw_message, MESSAGE_CHARS) if isinstance(raw_message, str) else ""
    if not message and text.strip() and not body:
        message = excerpt(text)
    lowered = message.lower()

    if 200 <= status < 300:
        warnings: list[str] = []
        if not body:
            warnings.append("The response body was not JSON; distribution was still accepted "
                            f"(HTTP {status}).")
        return Result(status, message or "Distribution triggered", body, tuple(warnings))

    kw: dict[str, Any] = {"http_status": status, "server_message": message or None}
    said = f"Streampixel answered HTTP {status}" + (f": {message}" if message else "")

    if 300 <= status < 400:
        location = headers.get("Location") or headers.get("location") or ""
        where = urllib.parse.urlsplit(location).hostname or "(no location)"
        raise ServerError(
            f"the API answered HTTP {status}, a redirect to {where}; it was not followed and "
            "nothing was sent there",
            title="Unexpected redirect",
            hint="Check the `api-url` input (scheme, host and path "
            "`/pixelStripeApi`); the key is only ever sent to the URL you configured.",
            **kw,
        )
    if status == 400:
        field_match = re.search(r"missing required field:?\s*(\w+)", message, re.IGNORECASE)
        if field_match:
            raise InvalidInput([Problem(
                field_match.group(1),
                f"{said}.",
                "Set the input; if it is set, its secret may be empty in this workflow.",
            )], title="Request rejected: missing field")
        raise NotReady(
            said,
            title="Build not ready",
            hint="The upload has no build URL yet (Streampixel is still downloading, "
            "extracting or validating it). Wait for the `build.approved` webhook, or retry "
            "later; check the build in the dashboard's Builds tab.",
            **kw,
        )
    if status == 401:
        if "user" in lowered and "key" not in lowered:
            raise Unauthorized(
                said, title="Unauthorized: invalid user",
                hint="`user-id` does not match the owner of the API key. Copy the User ID from "
                "the dashboard's account menu into the `STREAMPIXEL_USER_ID` secret.",
                **kw,
            )
        raise Unauthorized(
            said, title="Unauthorized: invalid API key",
            hint="The key was rotated or mistyped; requesting a new key invalidates the old one. "
            "Update the `STREAMPIXEL_API_KEY` secret with the current key.",
            **kw,
        )
    if status == 403:
        raise Forbidden(
            said,
            hint="The key's owner has no access to this project, or the project is disabled. "
            "Verify you own the project (or are an Editor on it) and that it is enabled.",
            **kw,
        )
    if status == 404:
        if "file" in lowered or "upload" in lowered:
            raise NotFound(
                said, title="Upload not found in project",
                hint="`upload-id` must be the `uploadId` returned by the Upload File API for this "
                "same `project-id`. Double-check both ids.",
                **kw,
            )
        raise NotFound(
            said, title="Project not found",
            hint="Check `project-id` (the Project ID button on the project's page, or the id "
            "in https://dashboard.streampixel.io/projectdetail/<projectId>).",
            **kw,
        )
    if status == 415:
        raise ServerError(
            said, title="Request body refused (415)",
            hint="The request was sent as application/json; a proxy between the runner and "
            "Streampixel may have changed it. Report a bug with the proxy details.",
            **kw,
        )
    if status == 429:
        header = headers.get("Retry-After") or headers.get("retry-after")
        seconds, source = parse_retry_after(header, message, now=now)
        raise TooManyRequests(said, retry_after=seconds, source=source, **kw)
    if status >= 500 or status == 408:
        error = ServerError(
            said,
            hint="A Streampixel-side failure, usually transient. If it persists, check "
            "https://streampixel.io status or contact support@streampixel.io.",
            **kw,
        )
        error.retryable = True
        error.reached_server = True
        raise error
    raise ServerError(said, title=f"Unexpected HTTP {status}",
                      hint="Report this response to the maintainers.", **kw)

