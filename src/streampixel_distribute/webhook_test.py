"""`streampixel-distribute test-webhook`: have Streampixel send `webhook.test` to the project.

`POST {api-url}/projects/test-webhook` makes Streampixel POST a synthetic event to the webhook URL
saved in the dashboard (10 s timeout, no retries) and report `success` and the `statusCode` the
receiver answered (0: no connection). Run it in a pipeline before relying on webhooks, so a broken
receiver fails the pipeline instead of silently losing the next approval.

Exit codes: 0 delivered (the receiver answered 2xx); 8 Streampixel reached no receiver or it did
not answer 2xx; otherwise as the main command (2 input, 3 credentials, 4 no webhook URL or
project, 6 Streampixel unreachable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from . import redact
from .answers import interpret
from .api import StreampixelClient
from .cli import Parsed, flags_of, guarded
from .errors import DistributeError, InvalidInput, NotFound, Unauthorized, WebhookNotDelivered
from .redact import scrub
from .settings import Command, load, secret_candidates

TEST_WEBHOOK_PATH = "/projects/test-webhook"


class WebhookTestResult(NamedTuple):
    success: bool
    status_code: int
    message: str
    http_status: int


class WebhookTestClient(StreampixelClient):
    def test_webhook(self, *, api_key: str, user_id: str, project_id: str) -> WebhookTestResult:
        payload = {"apiKey": api_key, "userId": user_id, "projectId": project_id}
        status, headers, raw = self.post(TEST_WEBHOOK_PATH, payload)
        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text) if text.strip() else {}
        except ValueError:
            body = {}
        body = body if isinstance(body, dict) else {}
        message = scrub(str(body.get("message") or ""))[:300]
        if status == 401:
            raise Unauthorized(
                f"Streampixel answered HTTP 401: {message or 'Unauthorized'}",
                hint="`api-key` is missing, mistyped or was rotated (a new key invalidates the "
                "old one), or `user-id` is not the key's owner. Update STREAMPIXEL_API_KEY.",
                http_status=status, server_message=message or None)
        if status == 404:
            if "webhook" in message.lower():
                raise NotFound(
                    f"Streampixel answered HTTP 404: {message}", title="No webhook URL",
                    hint="Save a Webhook URL in the dashboard: project → Project Settings → "
                    "Webhook URL (e.g. https://<your-host>/webhook/<token> for the listener), "
                    "tick at least one event, and save.",
                    http_status=status, server_message=message)
            raise NotFound(
                f"Streampixel answered HTTP 404: {message or 'Not found'}",
                title="Project not found",
                hint="Check `project-id` (the id in dashboard.streampixel.io/projectdetail/<id>).",
                http_status=status, server_message=message or None)
        if not 200 <= status < 300:
            interpret(status, headers, raw, now=0.0)  # raises the typed error for the status
        success = body.get("success")
        code = body.get("statusCode")
        return WebhookTestResult(
            success=success is True,
            status_code=code if isinstance(code, int) and not isinstance(code, bool) else 0,
            message=message, http_status=status)


def _diagnosis(code: int) -> str:
    if code == 0:
        return ("Streampixel could not connect to the webhook URL: check DNS, the firewall, "
                "that the URL is public HTTPS (not localhost), and that the listener runs.")
    if code == 404:
        return ("The receiver answered 404: for `streampixel-distribute listen` this means the "
                "token in the URL does not match STREAMPIXEL_WEBHOOK_TOKEN, or the path is "
                "not /webhook/<token>.")
    if code == 403:
        return ("The receiver answered 403: the listener's allow-list "
                "(STREAMPIXEL_ALLOW_PROJECTS) does not include this project.")
    if code in (502, 503, 504):
        return ("A proxy in front of the receiver answered: the receiver is down or too slow "
                "(Streampixel waits 10 s). Check the listener's /healthz and the proxy's upstream.")
    return "Check the receiver's logs for this request."


def test_webhook(parsed: Parsed, environ: Mapping[str, str]) -> int:
    """Run `test-webhook` from parsed arguments; returns the exit code."""
    flags = flags_of(Command.TEST_WEBHOOK, parsed)
    for secret in secret_candidates(flags, environ):
        redact.register(secret)
    out: dict[str, Any] = {"success": False, "statusCode": None, "message": "",
                           "httpStatus": None, "error": ""}

    def check() -> WebhookTestResult:
        job = load(Command.TEST_WEBHOOK, flags, environ)
        account = job.account
        client = WebhookTestClient(account.api_url, timeout=max(account.timeout, 15.0))
        result = client.test_webhook(api_key=account.api_key, user_id=account.user_id,
                                     project_id=job.target.project_id)
        out.update(success=result.success, statusCode=result.status_code,
                   message=result.message, httpStatus=result.http_status)
        if not result.success:
            raise WebhookNotDelivered(
                f"Streampixel's test delivery got status code {result.status_code} "
                f"({result.message or 'no message'})", hint=_diagnosis(result.status_code),
                http_status=result.http_status, server_message=result.message or None)
        return result

    outcome = guarded(check)
    if isinstance(outcome, DistributeError):
        error = outcome
        if not isinstance(error, WebhookNotDelivered):
            out.update(httpStatus=error.http_status, message=error.server_message or error.title)
        out["error"] = error.kind.value
        lines = [str(p) for p in error.problems] if isinstance(error, InvalidInput) \
            else [f"{error.title}: {error.detail}."]
        if error.hint and not isinstance(error, InvalidInput):
            lines.append(f"Fix: {error.hint}")
        _err("error: " + "\n  ".join(lines))
    else:
        _err(f"Webhook delivered: the receiver answered {out['statusCode']} "
             f"({out['message'] or 'success'}).")
    if parsed.json:
        sys.stdout.write(scrub(json.dumps(out)) + "\n")
        sys.stdout.flush()
    return outcome.code if isinstance(outcome, DistributeError) else 0


def _err(text: str) -> None:
    sys.stderr.write(scrub(text) + "\n")
    sys.stderr.flush()
