"""Response interpretation: every documented status and message maps to the right typed error."""

from __future__ import annotations

import json

import pytest

from streampixel_distribute import redact
from streampixel_distribute.answers import (
    MAX_RETRY_AFTER,
    UPLOAD_FILE,
    TooManyRequests,
    excerpt,
    interpret,
    parse_retry_after,
)
from streampixel_distribute.errors import (
    DistributeError,
    Forbidden,
    InvalidInput,
    NotFound,
    NotReady,
    ServerError,
    Unauthorized,
)

NOW = 1_700_000_000.0


def body(message: str) -> bytes:
    return ('{"message": "%s"}' % message).encode()


def test_success_bodies_of_both_doc_generations() -> None:
    assert interpret(200, {}, body("Distribution triggered"), now=NOW).message == \
        "Distribution triggered"
    g1 = b'{"success": true, "uploadId": "u", "region": "europe", ' \
         b'"message": "File distribution triggered successfully"}'
    result = interpret(200, {}, g1, now=NOW)
    assert result.body["region"] == "europe"
    assert result.warnings == ()


@pytest.mark.parametrize("raw", [b"", b"not json", b'{"message": "trunc', b"<html>ok</html>"])
def test_success_with_unreadable_body_still_counts_but_warns(raw: bytes) -> None:
    result = interpret(200, {}, raw, now=NOW)
    assert result.http_status == 200
    assert result.warnings and "not JSON" in result.warnings[0]


def test_success_without_message_gets_a_default() -> None:
    assert interpret(200, {}, b'{"success": true}', now=NOW).message == "Distribution triggered"


@pytest.mark.parametrize(
    ("status", "message", "cls", "kind", "code", "hint_part"),
    [
        (401, "Unauthorized: Invalid API Key", Unauthorized, "unauthorized", 3, "rotated"),
        (401, "Invalid User", Unauthorized, "unauthorized", 3, "user-id"),
        (403, "Access denied", Forbidden, "forbidden", 3, "enabled"),
        (403, "Forbidden", Forbidden, "forbidden", 3, "access"),
        (404, "Project not found", NotFound, "not-found", 4, "project-id"),
        (404, "File not found in project", NotFound, "not-found", 4, "upload-id"),
        (400, "File has no URL yet", NotReady, "not-ready", 4, "build.approved"),
        (400, "Missing required field: uploadId", InvalidInput, "invalid-input", 2, "secret"),
        (415, "Unsupported Media Type", ServerError, "server-error", 6, "proxy"),
        (500, "Internal server error", ServerError, "server-error", 6, "transient"),
    ],
)
def test_error_mapping(status: int, message: str, cls: type[DistributeError], kind: str,
                       code: int, hint_part: str) -> None:
    with pytest.raises(cls) as info:
        interpret(status, {}, body(message), now=NOW)
    error = info.value
    assert error.kind == kind
    assert error.exit_code == code
    assert hint_part in error.hint
    assert error.http_status == status
    assert message in error.detail
    if isinstance(error, InvalidInput):
        assert [p.input for p in error.problems] == ["upload-id"]  # the input, not the field


@pytest.mark.parametrize(("status", "message"), [(200, "Build queued for processing"),
                                                 (201, "New build accepted by the pipeline")])
def test_upload_file_succeeds_with_200_or_201(status: int, message: str) -> None:
    raw = json.dumps({"message": message, "uploadId": "665a2b3c4d5e6f7a8b9c0e1f"}).encode()
    result = interpret(status, {}, raw, now=NOW, endpoint=UPLOAD_FILE)
    assert (result.http_status, result.message) == (status, message)
    assert result.body["uploadId"] == "665a2b3c4d5e6f7a8b9c0e1f"
    assert interpret(201, {}, b"{}", now=NOW, endpoint=UPLOAD_FILE).message == \
        "Build queued for processing"


@pytest.mark.parametrize(
    ("status", "message", "cls", "problem_or_hint"),
    [
        (400, "Invalid fileUrl: must end with .zip", InvalidInput, "file-url"),
        (400, "Bad request", InvalidInput, "file-url"),
        (400, "Missing required field: fileUrl", InvalidInput, "file-url"),
        (400, "Missing required field: projectId", InvalidInput, "project-id"),
        (401, "Unauthorized: Invalid API Key", Unauthorized, "rotated"),
        (404, "Project not found", NotFound, "project-id"),
        (404, "File not found", NotFound, "project-id"),  # no upload to blame in an upload
    ],
)
def test_upload_file_answers(status: int, message: str, cls: type[DistributeError],
                             problem_or_hint: str) -> None:
    with pytest.raises(cls) as info:
        interpret(status, {}, body(message), now=NOW, endpoint=UPLOAD_FILE)
    error = info.value
    assert type(error) is cls and error.http_status == status and not error.retryable
    if isinstance(error, InvalidInput):
        assert [p.input for p in error.problems] == [problem_or_hint]
    else:
        assert problem_or_hint in error.hint


def test_upload_file_429_is_the_same_rate_limit() -> None:
    with pytest.raises(TooManyRequests) as info:
        interpret(429, {}, body("Rate limit exceeded. Try again in 2 minutes."), now=NOW,
                  endpoint=UPLOAD_FILE)
    assert info.value.retry_after == 120


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_are_retryable_and_may_have_reached_the_server(status: int) -> None:
    with pytest.raises(ServerError) as info:
        interpret(status, {}, b"<html><body><h1>Bad Gateway</h1></body></html>", now=NOW)
    assert info.value.retryable and info.value.reached_server
    assert "Bad Gateway" in info.value.detail
    assert "<h1>" not in info.value.detail


@pytest.mark.parametrize("status", [401, 403, 404, 400])
def test_config_and_auth_errors_are_never_retryable(status: int) -> None:
    with pytest.raises(DistributeError) as info:
        interpret(status, {}, body("x"), now=NOW)
    assert not info.value.retryable


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_an_error_naming_the_host(status: int) -> None:
    with pytest.raises(ServerError) as info:
        interpret(status, {"Location": "http://evil.example:8080/steal?x=1"}, b"", now=NOW)
    assert "evil.example" in info.value.detail
    assert "not followed" in info.value.detail
    assert not info.value.retryable


@pytest.mark.parametrize(("location", "shown"), [
    ("http://[::1/steal", "(an unreadable location)"),  # urlsplit: Invalid IPv6 URL
    ("", "(no location)"),
])
def test_redirect_to_an_unreadable_or_missing_location_says_so(location: str, shown: str) -> None:
    with pytest.raises(ServerError) as info:
        interpret(302, {"Location": location}, b"", now=NOW)
    assert info.value.detail == (f"the API answered HTTP 302, a redirect to {shown}; it was not "
                                 "followed and nothing was sent there")
    assert info.value.title == "Unexpected redirect"


def test_429_reads_retry_after_header_first() -> None:
    with pytest.raises(TooManyRequests) as info:
        interpret(429, {"Retry-After": "37"}, body("Rate limit exceeded. Try again in 2 minutes."),
                  now=NOW)
    assert info.value.retry_after == 37
    assert info.value.source == "Retry-After header"
    assert info.value.exit_code == 5


def test_429_falls_back_to_message_then_to_none() -> None:
    with pytest.raises(TooManyRequests) as info:
        interpret(429, {}, body("Rate limit exceeded. Try again in 2 minutes."), now=NOW)
    assert info.value.retry_after == 120
    with pytest.raises(TooManyRequests) as info:
        interpret(429, {}, b"slow down", now=NOW)
    assert info.value.retry_after is None


@pytest.mark.parametrize(
    ("header", "message", "expected"),
    [
        ("120", "", 120.0),
        ("0", "", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", "", 0.0),  # a date in the past means now
        ("soon", "Try again in 7 seconds.", 7.0),
        (None, "Try again in 1 minute", 60.0),
        (None, "try again in 1.5 hours", 5400.0),
        (None, "Try again in 999999 hours.", MAX_RETRY_AFTER),
        (None, "Try again later", None),
        ("-5", "", None),
        ("1e9", "", None),
    ],
)
def test_parse_retry_after(header: str | None, message: str, expected: float | None) -> None:
    assert parse_retry_after(header, message, now=NOW)[0] == expected


def test_http_date_retry_after_in_the_future() -> None:
    seconds, source = parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", "", now=NOW)
    assert source == "Retry-After header"
    assert seconds == pytest.approx(1_700_000_120.0 - NOW)


def test_excerpt_is_short_single_line_and_scrubbed() -> None:
    redact.register("sk-EXCERPTSECRET-123456")
    try:
        page = "<html><script>var a=1;</script><h1>Error</h1>\n" + "x" * 5000 + \
               " sk-EXCERPTSECRET-123456</html>"
        text = excerpt(page)
        assert len(text) <= 200
        assert "\n" not in text and "<" not in text and "var a" not in text
        assert excerpt("oops sk-EXCERPTSECRET-123456 here") == "oops *** here"
    finally:
        redact.clear()


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 599])
def test_server_side_failures_are_retryable_and_may_have_used_the_window(status: int) -> None:
    """408 and 5xx: retry on a fresh slot, a full interval later (the call reached the server)."""
    with pytest.raises(ServerError) as info:
        interpret(status, {}, body("Request Timeout"), now=NOW)
    assert info.value.retryable and info.value.reached_server


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 415, 418, 422])
def test_client_errors_are_never_retryable(status: int) -> None:
    with pytest.raises(DistributeError) as info:
        interpret(status, {}, body("nope"), now=NOW)
    assert not info.value.retryable
