"""What Streampixel's answers mean: one HTTP response to a Result or a typed error.

`interpret` is pure (fuzzed in tests): status, headers and body in, a `Result` or a raised
`DistributeError` out, with the fix for each documented answer. Every error only says whether a
retry may help (`retryable`) and whether the request may have reached the server
(`reached_server`); waiting and retrying are the coordinator's.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .errors import (
    DistributeError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    Problem,
    RateLimited,
    ServerError,
    Unauthorized,
)
from .redact import one_line

EXCERPT_CHARS = 200
MESSAGE_CHARS = 500


class Result(NamedTuple):
    """A 2xx answer: the call was accepted (what it started runs asynchronously at Streampixel)."""

    http_status: int
    message: str
    body: Mapping[str, object] = {}
    warnings: tuple[str, ...] = ()


class TooManyRequests(RateLimited):
    """A 429. `retry_after` is seconds from the response, or None when it gave no usable hint."""

    default_title = "Rate limited by Streampixel (HTTP 429)"
    default_hint = ("Another job of this account called within the last interval. Use a shared "
                    "`ledger` so jobs take turns, or raise `max-wait`.")

    def __init__(self, detail: str, *, retry_after: float | None, source: str,
                 http_status: int | None = None, server_message: str | None = None) -> None:
        super().__init__(detail, http_status=http_status, server_message=server_message)
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
    import html  # noqa: PLC0415 - only an unexpected body needs it
    text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
    text = re.sub(r"(?s)<[^>]*>", " ", text)
    return one_line(html.unescape(text), limit)


DISTRIBUTE_FILE = "/projects/distribute-file"
UPLOAD_FILE = "/projects/upload-file"
#: What a 2xx answer means when it says nothing itself.
_ACCEPTED = {DISTRIBUTE_FILE: "Distribution triggered", UPLOAD_FILE: "Build queued for processing"}


class Answer(NamedTuple):
    """One non-2xx response, read: what the errors made from it say and carry."""

    status: int
    message: str  # the server's `message`, sanitised ("" if none)
    headers: Mapping[str, str]
    now: float
    endpoint: str

    @property
    def said(self) -> str:
        return f"Streampixel answered HTTP {self.status}" + (
            f": {self.message}" if self.message else "")

    @property
    def lowered(self) -> str:
        return self.message.lower()

    def error(self, cls: type[DistributeError], *, title: str | None = None,
              hint: str | None = None) -> DistributeError:
        return cls(self.said, title=title, hint=hint, http_status=self.status,
                   server_message=self.message or None)


def _read(raw: bytes) -> tuple[Mapping[str, object] | None, str]:
    """The JSON object of a body (None if it is not one) and its message (or an excerpt of a
    body that is not a JSON object)."""
    text = raw.decode("utf-8", "replace")
    body: Mapping[str, object] | None = None
    try:
        parsed = json.loads(text) if text.strip() else None
        if isinstance(parsed, dict):
            body = parsed
    except ValueError:
        pass
    raw_message = body.get("message") if body is not None else None
    message = one_line(raw_message, MESSAGE_CHARS) if isinstance(raw_message, str) else ""
    if body is None and text.strip():
        message = excerpt(text)
    return body, message


def interpret(status: int, headers: Mapping[str, str], raw: bytes, *, now: float,
              endpoint: str = DISTRIBUTE_FILE) -> Result:
    """Map one HTTP response of `endpoint` to a Result or a typed error."""
    body, message = _read(raw)
    if 200 <= status < 300:  # upload-file: 200 on its own page, 201 in the status table
        warnings: list[str] = []
        if body is None:
            warnings.append("The response body was not JSON; the call was still accepted "
                            f"(HTTP {status}).")
        if endpoint == UPLOAD_FILE and not isinstance((body or {}).get("uploadId"), str):
            warnings.append("upload-file accepted the build but answered without an "
                            "`uploadId`, so the `upload-id` output is empty: find the build in "
                            "the dashboard's Builds tab or in its `build.*` webhooks.")
        return Result(status, message or _ACCEPTED.get(endpoint, "Accepted"), body or {},
                      tuple(warnings))
    answer = Answer(status, message, headers, now, endpoint)
    handler = _BY_STATUS.get(status)
    if handler is None:
        handler = _redirect if 300 <= status < 400 else \
            _server_failure if status >= 500 else _unexpected
    raise handler(answer)


def _redirect(answer: Answer) -> DistributeError:
    location = answer.headers.get("Location") or answer.headers.get("location") or ""
    try:
        where = urllib.parse.urlsplit(location).hostname or "(no location)"
    except ValueError:
        where = "(an unreadable location)"
    return ServerError(
        f"the API answered HTTP {answer.status}, a redirect to {one_line(where, 100)}; it was "
        "not followed and nothing was sent there",
        title="Unexpected redirect",
        hint="Check the `api-url` input (scheme, host and path `/pixelStripeApi`); the key is "
        "only ever sent to the URL you configured.",
        http_status=answer.status, server_message=answer.message or None)


#: The request's JSON fields, by the input that gives them.
_INPUT_OF_FIELD = {"apikey": "api-key", "userid": "user-id", "projectid": "project-id",
                   "uploadid": "upload-id", "fileurl": "file-url", "autorelease": "auto-release"}


def _bad_request(answer: Answer) -> DistributeError:
    missing = re.search(r"missing required field:?\s*(\w+)", answer.message, re.IGNORECASE)
    if missing:
        field = missing.group(1)
        return InvalidInput([Problem(
            _INPUT_OF_FIELD.get(field.lower(), field), f"{answer.said}.",
            "Set the input; if it is set, its secret may be empty in this workflow.",
        )], title="Request rejected: missing field", http_status=answer.status,
            server_message=answer.message or None)
    if answer.endpoint == UPLOAD_FILE:
        return InvalidInput([Problem(
            "file-url", f"{answer.said}.",
            "Give a direct https link to the build's .zip that Streampixel can download "
            "without logging in (no sharing page, no redirect). If it is a presigned link with "
            "a query string, Streampixel may refuse the query: try a link without one.")],
            title="Upload refused: file URL", http_status=answer.status,
            server_message=answer.message or None)
    return answer.error(
        NotReady, title="Build not ready",
        hint="The upload has no build URL yet (Streampixel is still downloading, extracting or "
        "validating it). Wait for the `build.approved` webhook, or retry later; check the "
        "build in the dashboard's Builds tab.")


def _unauthorized(answer: Answer) -> DistributeError:
    if "user" in answer.lowered and "key" not in answer.lowered:
        return answer.error(
            Unauthorized, title="Unauthorized: invalid user",
            hint="`user-id` does not match the owner of the API key. Copy the User ID from the "
            "dashboard's account menu into the `STREAMPIXEL_USER_ID` secret.")
    return answer.error(
        Unauthorized, title="Unauthorized: invalid API key",
        hint="The key was rotated or mistyped; requesting a new key invalidates the old one. "
        "Update the `STREAMPIXEL_API_KEY` secret with the current key.")


def _forbidden(answer: Answer) -> DistributeError:
    return answer.error(
        Forbidden,
        hint="The key's owner has no access to this project, or the project is disabled. Verify "
        "you own the project (or are an Editor on it) and that it is enabled.")


def _not_found(answer: Answer) -> DistributeError:
    about_upload = "file" in answer.lowered or "upload" in answer.lowered
    if about_upload and answer.endpoint == DISTRIBUTE_FILE:
        return answer.error(
            NotFound, title="Upload not found in project",
            hint="`upload-id` must be the `uploadId` returned by the Upload File API for this "
            "same `project-id`. Double-check both ids.")
    return answer.error(
        NotFound, title="Project not found",
        hint="Check `project-id` (the Project ID button on the project's page, or the id in "
        "https://dashboard.streampixel.io/projectdetail/<projectId>).")


def _media_type(answer: Answer) -> DistributeError:
    return answer.error(
        ServerError, title="Request body refused (415)",
        hint="The request was sent as application/json; a proxy between the runner and "
        "Streampixel may have changed it. Report a bug with the proxy details.")


def _too_many(answer: Answer) -> DistributeError:
    header = answer.headers.get("Retry-After") or answer.headers.get("retry-after")
    seconds, source = parse_retry_after(header, answer.message, now=answer.now)
    return TooManyRequests(answer.said, retry_after=seconds, source=source,
                           http_status=answer.status, server_message=answer.message or None)


def _server_failure(answer: Answer) -> DistributeError:
    error = answer.error(
        ServerError,
        hint="A Streampixel-side failure, usually transient. If it persists, check "
        "https://streampixel.io status or contact support@streampixel.io.")
    error.retryable = True
    error.reached_server = True
    return error


def _unexpected(answer: Answer) -> DistributeError:
    return answer.error(ServerError, title=f"Unexpected HTTP {answer.status}",
                        hint="Report this response to the maintainers.")


#: The documented answers; a 408 is the server giving up on us, as transient as a 5xx.
_BY_STATUS: dict[int, Callable[[Answer], DistributeError]] = {
    400: _bad_request, 401: _unauthorized, 403: _forbidden, 404: _not_found,
    408: _server_failure, 415: _media_type, 429: _too_many,
}
