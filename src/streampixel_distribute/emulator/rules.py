"""The API's rules: what each endpoint checks, in the real server's order, and what it changes.

Every check raises `Reply` with the documented error, and the first failure answers. Writes
happen under the emulator's lock, so two calls of one user cannot both get the window.
"""

from __future__ import annotations

import hmac
import json
import secrets
import urllib.parse
from typing import Any

from . import messages as m
from .faults import Reply, Response, json_response
from .state import DISTRIBUTABLE, Emulator, Project, Upload
from .webhooks import (
    EV_APPROVED,
    EV_TEST,
    distribute_events,
    envelope,
    pipeline_events,
    spread,
)


def handle_api(
    emu: Emulator, endpoint: str | None, method: str, content_type: str, body: bytes,
    rec: dict[str, Any],
) -> Response:  # fmt: skip
    """Answer one API call; fills `rec` (the request log entry) with what it learned."""
    try:
        data = _parse_body(endpoint, method, content_type, body)
        for key in ("userId", "projectId", "uploadId"):
            if isinstance(data.get(key), str):
                rec[key] = data[key][:100]
        if endpoint == "distribute-file":
            return _distribute(emu, data, rec)
        if endpoint == "upload-file":
            return _upload(emu, data, rec)
        return _test_webhook(emu, data, rec)
    except Reply as reply:
        return reply.response


def _parse_body(
    endpoint: str | None, method: str, content_type: str, body: bytes
) -> dict[str, Any]:
    if endpoint is None or method != "POST":
        raise Reply(404, m.MSG_NOT_FOUND)
    mime = content_type.split(";", 1)[0].strip().lower()
    if mime != "application/json" and not mime.endswith("+json"):
        raise Reply(415, m.MSG_UNSUPPORTED)
    try:
        data = json.loads(body) if body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise Reply(400, m.MSG_BAD_JSON) from None
    if not isinstance(data, dict):
        raise Reply(400, m.MSG_BAD_JSON)
    return data


def _require(data: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = data.get(name)
        if not isinstance(value, str) or not value:
            raise Reply(400, m.MSG_MISSING.format(name))


def _authenticate(emu: Emulator, data: dict[str, Any], rec: dict[str, Any], bad_key: str) -> None:
    """Unknown user first, then the key (401 either way). Caller holds the lock."""
    expected = emu.accounts.get(data["userId"])
    if expected is None:
        raise Reply(401, m.MSG_INVALID_USER)
    key = data.get("apiKey")
    ok = isinstance(key, str) and hmac.compare_digest(expected.encode(), key.encode())
    rec["api_key_ok"] = ok
    if not ok:
        raise Reply(401, bad_key)


def _project_for(emu: Emulator, data: dict[str, Any]) -> Project:
    project = emu.projects.get(data["projectId"])
    if project is None:
        raise Reply(404, m.MSG_PROJECT_NOT_FOUND)
    if project.user_id != data["userId"] or not project.enabled:
        raise Reply(403, m.MSG_ACCESS_DENIED)
    return project


def _distribute(emu: Emulator, data: dict[str, Any], rec: dict[str, Any]) -> Response:
    _require(data, ("apiKey", "userId", "projectId", "uploadId"))
    with emu.cond:
        _authenticate(emu, data, rec, m.MSG_INVALID_KEY)
        emu.take_slot_locked(data["userId"], "distribute-file")
        project = _project_for(emu, data)
        upload = project.uploads.get(data["uploadId"])
        if upload is None:
            raise Reply(404, m.MSG_FILE_NOT_FOUND)
        if upload.state(emu.now()) not in DISTRIBUTABLE:
            raise Reply(400, m.MSG_NO_URL)
        # The emulator distributes at once: the build is live before the events go out.
        upload.distributions += 1
        project.live_upload_id = upload.upload_id
        events = distribute_events(approve_after_distribute=emu.config.approve_after_distribute)
        emu.hooks.schedule_locked(upload, spread(events, emu.now(), 0.0))
        return json_response(
            200,
            {
                "message": m.MSG_TRIGGERED,
                "success": True,
                "uploadId": upload.upload_id,
                "region": project.region,
            },
        )


def _file_url(data: dict[str, Any], rec: dict[str, Any]) -> urllib.parse.SplitResult | None:
    """The parsed fileUrl, or None if it does not parse; records only whether it had a query
    string, because the query of a presigned URL is a credential."""
    file_url: str = data["fileUrl"]  # a non-empty string: `_require` checked it
    try:
        url = urllib.parse.urlsplit(file_url)
    except ValueError:  # e.g. an unclosed `[` in the host
        return None
    rec["file_url_query"] = bool(url.query)
    return url


def _check_file_url(url: urllib.parse.SplitResult | None) -> None:
    # Query strings pass: the docs forbid them but also recommend presigned S3 URLs.
    if url is None or url.scheme not in ("http", "https") or not url.netloc:
        raise Reply(400, m.MSG_BAD_FILE_URL)
    if not url.path.lower().endswith(".zip"):
        raise Reply(400, m.MSG_BAD_FILE_URL)


def _upload(emu: Emulator, data: dict[str, Any], rec: dict[str, Any]) -> Response:
    _require(data, ("apiKey", "userId", "projectId", "fileUrl"))
    url = _file_url(data, rec)
    auto_release = data.get("autoRelease", True)
    if not isinstance(auto_release, bool):
        raise Reply(400, m.MSG_BAD_AUTO_RELEASE)
    _check_file_url(url)
    with emu.cond:
        _authenticate(emu, data, rec, m.MSG_INVALID_KEY)
        emu.take_slot_locked(data["userId"], "upload-file")
        project = _project_for(emu, data)
        # ObjectId-like: 4 bytes of time, 8 random bytes
        upload_id = f"{int(emu.epoch()) & 0xFFFFFFFF:08x}{secrets.token_hex(8)}"
        seconds, now = emu.config.processing_seconds, emu.now()
        upload = Upload(
            upload_id=upload_id,
            project_id=project.project_id,
            file_url=data["fileUrl"],
            done_at=now + seconds,
            objection=project.reject_objection,
            auto_release=auto_release,
        )
        project.uploads[upload_id] = upload
        rec["uploadId"] = upload_id
        events = pipeline_events(
            rejected=bool(upload.objection),
            auto_release=auto_release,
            approve_after_distribute=emu.config.approve_after_distribute,
        )
        go_live = EV_APPROVED[0] if auto_release else ""  # a held build waits for distribute-file
        emu.hooks.schedule_locked(upload, spread(events, now, seconds, go_live_on=go_live))
        status = emu.config.upload_status
        return json_response(status, {"message": m.MSG_QUEUED, "uploadId": upload_id})


def _test_webhook(emu: Emulator, data: dict[str, Any], rec: dict[str, Any]) -> Response:
    _require(data, ("userId", "projectId"))  # a missing apiKey is a 401 here
    with emu.cond:
        _authenticate(emu, data, rec, m.MSG_UNAUTHORIZED)
        url = _project_for(emu, data).webhook_url
        payload = envelope(EV_TEST, data["projectId"], None, emu.epoch())
        generation = emu.generation
    if not url:
        raise Reply(404, m.MSG_NO_WEBHOOK)
    code = emu.hooks.deliver(url, payload, generation)  # outside the lock: may take 10 s
    ok = 200 <= code < 300
    return json_response(
        200,
        {
            "success": ok,
            "message": m.MSG_WEBHOOK_OK if ok else m.MSG_WEBHOOK_FAIL,
            "statusCode": code,
        },
    )
