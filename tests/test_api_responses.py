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


# -- the exact words a user reads, per answer (each text below is the product) ------------------

DISTRIBUTE = "/projects/distribute-file"
KEY_FIX = ("The key was rotated or mistyped; requesting a new key invalidates the old one. "
           "Update the `STREAMPIXEL_API_KEY` secret with the current key.")
USER_FIX = ("`user-id` does not match the owner of the API key. Copy the User ID from the "
            "dashboard's account menu into the `STREAMPIXEL_USER_ID` secret.")
ACCESS_FIX = ("The key's owner has no access to this project, or the project is disabled. Verify "
              "you own the project (or are an Editor on it) and that it is enabled.")
UPLOAD_ID_FIX = ("`upload-id` must be the `uploadId` returned by the Upload File API for this "
                 "same `project-id`. Double-check both ids.")
PROJECT_FIX = ("Check `project-id` (the Project ID button on the project's page, or the id in "
               "https://dashboard.streampixel.io/projectdetail/<projectId>).")
NOT_READY_FIX = ("The upload has no build URL yet (Streampixel is still downloading, extracting or "
                 "validating it). Wait for the `build.approved` webhook, or retry later; check the "
                 "build in the dashboard's Builds tab.")
MEDIA_FIX = ("The request was sent as application/json; a proxy between the runner and "
             "Streampixel may have changed it. Report a bug with the proxy details.")
SERVER_FIX = ("A Streampixel-side failure, usually transient. If it persists, check "
              "https://streampixel.io status or contact support@streampixel.io.")
REPORT_FIX = "Report this response to the maintainers."
REDIRECT_FIX = ("Check the `api-url` input (scheme, host and path `/pixelStripeApi`); the key is "
                "only ever sent to the URL you configured.")
NO_UPLOAD_ID = ("upload-file accepted the build but answered without an `uploadId`, so the "
                "`upload-id` output is empty: find the build in the dashboard's Builds tab or in "
                "its `build.*` webhooks.")
BOTH = (DISTRIBUTE, UPLOAD_FILE)


@pytest.mark.parametrize(
    ("endpoints", "status", "message", "cls", "title", "hint"),
    [
        (BOTH, 401, "Unauthorized: Invalid API Key", Unauthorized,
         "Unauthorized: invalid API key", KEY_FIX),
        (BOTH, 401, "Invalid User", Unauthorized, "Unauthorized: invalid user", USER_FIX),
        (BOTH, 401, "Unauthorized", Unauthorized, "Unauthorized: invalid API key", KEY_FIX),
        (BOTH, 401, "Invalid user or API key", Unauthorized,  # names the key: the key's fix
         "Unauthorized: invalid API key", KEY_FIX),
        (BOTH, 403, "Access denied", Forbidden, "Access denied", ACCESS_FIX),
        (BOTH, 404, "Project not found", NotFound, "Project not found", PROJECT_FIX),
        ((DISTRIBUTE,), 404, "File not found in project", NotFound,
         "Upload not found in project", UPLOAD_ID_FIX),
        ((DISTRIBUTE,), 404, "Upload does not exist", NotFound,
         "Upload not found in project", UPLOAD_ID_FIX),
        ((UPLOAD_FILE,), 404, "File not found", NotFound, "Project not found", PROJECT_FIX),
        ((DISTRIBUTE,), 400, "File has no URL yet", NotReady, "Build not ready", NOT_READY_FIX),
        (BOTH, 415, "Unsupported Media Type", ServerError, "Request body refused (415)",
         MEDIA_FIX),
        (BOTH, 408, "Request Timeout", ServerError, "Streampixel server error", SERVER_FIX),
        (BOTH, 503, "Service Unavailable", ServerError, "Streampixel server error", SERVER_FIX),
        (BOTH, 418, "I'm a teapot", ServerError, "Unexpected HTTP 418", REPORT_FIX),
        (BOTH, 409, "Conflict", ServerError, "Unexpected HTTP 409", REPORT_FIX),
    ],
)
def test_each_answer_gives_its_title_and_fix(endpoints: tuple[str, ...], status: int,
                                             message: str, cls: type[DistributeError],
                                             title: str, hint: str) -> None:
    for endpoint in endpoints:
        with pytest.raises(cls) as info:
            interpret(status, {}, body(message), now=NOW, endpoint=endpoint)
        error = info.value
        assert type(error) is cls
        assert (error.title, error.hint) == (title, hint)
        assert error.detail == f"Streampixel answered HTTP {status}: {message}"
        assert (error.http_status, error.server_message) == (status, message)


def test_an_answer_without_a_message_has_no_server_message() -> None:
    with pytest.raises(Unauthorized) as info:
        interpret(401, {}, b"", now=NOW)
    assert info.value.detail == "Streampixel answered HTTP 401"
    assert info.value.server_message is None


MISSING_FIX = "Set the input; if it is set, its secret may be empty in this workflow."
FILE_URL_FIX = (
    "Give a direct https link to the build's .zip that Streampixel can download without logging "
    "in (no sharing page, no redirect). If it is a presigned link with a query string, "
    "Streampixel may refuse the query: try a link without one.")


@pytest.mark.parametrize(
    ("endpoint", "message", "named", "title", "fix"),
    [
        (DISTRIBUTE, "Missing required field: uploadId", "upload-id",
         "Request rejected: missing field", MISSING_FIX),
        (DISTRIBUTE, "missing required field apiKey", "api-key",
         "Request rejected: missing field", MISSING_FIX),
        (DISTRIBUTE, "Missing required field: region", "region",  # unknown: named as sent
         "Request rejected: missing field", MISSING_FIX),
        (UPLOAD_FILE, "Missing required field: projectId", "project-id",
         "Request rejected: missing field", MISSING_FIX),
        (UPLOAD_FILE, "Invalid fileUrl: must end with .zip", "file-url",
         "Upload refused: file URL", FILE_URL_FIX),
    ],
)
def test_a_400_names_the_input_to_fix(endpoint: str, message: str, named: str, title: str,
                                      fix: str) -> None:
    with pytest.raises(InvalidInput) as info:
        interpret(400, {}, body(message), now=NOW, endpoint=endpoint)
    error = info.value
    assert [tuple(p) for p in error.problems] == [
        (named, f"Streampixel answered HTTP 400: {message}.", fix)]
    assert (error.title, error.hint, error.exit_code) == (title, fix, 2)
    assert (error.http_status, error.server_message) == (400, message)


@pytest.mark.parametrize(
    ("headers", "message", "retry_after", "source"),
    [
        ({"Retry-After": "37"}, "Rate limit exceeded", 37.0, "Retry-After header"),
        ({"retry-after": "37"}, "Rate limit exceeded", 37.0, "Retry-After header"),
        ({"Retry-After": "Tue, 14 Nov 2023 22:15:20 GMT"}, "Rate limit exceeded", 120.0,
         "Retry-After header"),  # NOW + 120 s
        ({}, "Rate limit exceeded. Try again in 2 minutes.", 120.0, "server message"),
        ({}, "Rate limit exceeded", None, "none"),
    ],
)
def test_429_carries_the_wait_where_it_came_from_and_the_server_words(
        headers: dict[str, str], message: str, retry_after: float | None, source: str) -> None:
    for endpoint in BOTH:
        with pytest.raises(TooManyRequests) as info:
            interpret(429, headers, body(message), now=NOW, endpoint=endpoint)
        error = info.value
        assert (error.retry_after, error.source) == (retry_after, source)
        assert error.detail == f"Streampixel answered HTTP 429: {message}"
        assert (error.http_status, error.server_message) == (429, message)
        assert (error.title, error.hint, error.exit_code) == (
            TooManyRequests.default_title, TooManyRequests.default_hint, 5)


def test_parse_retry_after_without_any_hint_says_none() -> None:
    assert parse_retry_after(None, "", now=NOW) == (None, "none")
    assert parse_retry_after("", "Rate limit exceeded", now=NOW) == (None, "none")


LONG_HOST = "a" * 120 + ".example"


@pytest.mark.parametrize(
    ("status", "headers", "raw", "shown", "said"),
    [
        (300, {"Location": "https://elsewhere.example/x"}, b"", "elsewhere.example", None),
        (302, {"location": "https://lower.example/"}, b"", "lower.example", None),
        (307, {"Location": f"https://{LONG_HOST}/"}, b"", "a" * 99 + "…", None),
        (308, {"Location": "https://moved.example/"}, body("Moved Permanently"), "moved.example",
         "Moved Permanently"),
    ],
)
def test_redirect_names_the_host_and_the_fix(status: int, headers: dict[str, str], raw: bytes,
                                             shown: str, said: str | None) -> None:
    with pytest.raises(ServerError) as info:
        interpret(status, headers, raw, now=NOW)
    error = info.value
    assert error.detail == (f"the API answered HTTP {status}, a redirect to {shown}; it was not "
                            "followed and nothing was sent there")
    assert (error.title, error.hint) == ("Unexpected redirect", REDIRECT_FIX)
    assert (error.http_status, error.server_message) == (status, said)


@pytest.mark.parametrize(
    ("endpoint", "status", "raw", "message", "result_body", "warnings"),
    [
        (DISTRIBUTE, 200, b'{"success": true}', "Distribution triggered", {"success": True}, ()),
        (DISTRIBUTE, 299, b'{"message": "ok"}', "ok", {"message": "ok"}, ()),
        (UPLOAD_FILE, 201, b'{"uploadId": "u1"}', "Build queued for processing",
         {"uploadId": "u1"}, ()),
        (UPLOAD_FILE, 200, b'{"uploadId": 7}', "Build queued for processing", {"uploadId": 7},
         (NO_UPLOAD_ID,)),
        (UPLOAD_FILE, 200, b"", "Build queued for processing", {},
         ("The response body was not JSON; the call was still accepted (HTTP 200).",
          NO_UPLOAD_ID)),
        ("/projects/other", 200, b"{}", "Accepted", {}, ()),
    ],
)
def test_success_result_exactly(endpoint: str, status: int, raw: bytes, message: str,
                                result_body: dict[str, object],
                                warnings: tuple[str, ...]) -> None:
    result = interpret(status, {}, raw, now=NOW, endpoint=endpoint)
    assert result == (status, message, result_body, warnings)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"message": "caf\xe9 closed"}', "caf\ufffd closed"),  # not UTF-8: replaced, still JSON
        (b"\xff\xfe upstream down", "\ufffd\ufffd upstream down"),  # not UTF-8 and not JSON
    ],
)
def test_a_body_that_is_not_utf8_is_still_read(raw: bytes, message: str) -> None:
    with pytest.raises(ServerError) as info:
        interpret(502, {}, raw, now=NOW)
    assert info.value.server_message == message
