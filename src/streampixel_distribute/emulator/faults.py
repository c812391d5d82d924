"""Responses, and the faults a test queues to make the emulator misbehave on purpose."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final

from .seed import SeedError, as_obj, no_unknown, opt

JSON_TYPE: Final = "application/json; charset=utf-8"
MAX_FAULT_BODY: Final = 100_000_000
_SIZES: Final = f"an integer in 0..{MAX_FAULT_BODY}"
DROPS: Final = ("before_read", "before_response", "mid_body")
_FAULT_KEYS: Final = {
    "path", "method", "times", "status", "body", "content_type", "delay", "drop", "headers",
    "body_size",
}  # fmt: skip


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(status, json.dumps(payload).encode(), headers=dict(headers or {}))


def message(status: int, text: str, headers: dict[str, str] | None = None) -> Response:
    """The API's error shape: `{"message": "..."}`."""
    return json_response(status, {"message": text}, headers)


class Reply(Exception):
    """Ends request handling early with an error response."""

    def __init__(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.response = message(status, text, headers)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def _whole(obj: dict[str, Any], key: str, low: int, high: int, wanted: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise SeedError(f"fault.{key} must be {wanted}")
    return value


@dataclass
class Fault:
    path: str = "*"
    method: str | None = None
    times: int = 1
    status: int | None = None
    body: str | None = None
    content_type: str | None = None
    delay: float = 0.0
    drop: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body_size: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        obj = as_obj(raw, "fault")
        no_unknown(obj, _FAULT_KEYS, "fault")
        method = opt(obj, "method", str, "fault")
        body = obj.get("body")
        fault = cls(
            path=str(obj.get("path") or "*"),
            method=method.upper() if method else None,
            times=_whole(obj, "times", 1, 2**62, "an integer >= 1") or 1,
            status=_whole(obj, "status", 100, 599, "an HTTP status code (100-599)"),
            body=body if body is None or isinstance(body, str) else json.dumps(body),
            content_type=opt(obj, "content_type", str, "fault"),
            body_size=_whole(obj, "body_size", 0, MAX_FAULT_BODY, _SIZES),
        )
        if fault.content_type is None and isinstance(body, str):
            fault.content_type = "text/plain; charset=utf-8"
        delay = opt(obj, "delay", (int, float), "fault") or 0.0
        if isinstance(delay, bool) or delay < 0:
            raise SeedError("fault.delay must be a number of seconds >= 0")
        fault.delay = float(delay)
        fault.drop = obj.get("drop")
        if fault.drop is not None and fault.drop not in DROPS:
            raise SeedError(f"fault.drop must be one of {', '.join(DROPS)}")
        headers = opt(obj, "headers", dict, "fault") or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise SeedError("fault.headers must map header names to strings")
        fault.headers = headers
        return fault

    def matches(self, endpoint: str | None, path: str, method: str) -> bool:
        if self.method and self.method != method:
            return False
        return self.path in ("*", endpoint) or path.endswith(self.path)

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        for key in ("status", "delay", "drop", "body_size"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.headers:
            out["headers"] = sorted(self.headers)
        return out

    def response(self) -> Response:
        """The whole response of a fault that sets `status` (the request is not processed)."""
        status = self.status or 500
        if self.body is None:
            return self.decorate(message(status, phrase(status)))
        resp = Response(status, self.body.encode(), self.content_type or JSON_TYPE)
        return self.decorate(resp)

    def decorate(self, resp: Response) -> Response:
        resp.headers.update(self.headers)
        if self.body_size is not None and len(resp.body) < self.body_size:
            # trailing whitespace keeps a JSON body valid JSON
            resp.body += b" " * (self.body_size - len(resp.body))
        return resp
