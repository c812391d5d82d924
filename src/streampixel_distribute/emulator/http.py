"""The HTTP side: the request handler, the `/_emulator/...` control endpoints, the server."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from .faults import Fault, Reply, Response, json_response, message
from .messages import MSG_BAD_JSON, MSG_PROJECT_NOT_FOUND, MSG_TOO_LARGE, endpoint_of
from .rules import handle_api
from .safety import is_loopback_url
from .seed import SeedError, as_obj
from .state import Emulator

MAX_REQUEST_BODY: Final = 1_000_000
SERVER_NAME: Final = "streampixel-emulator"

Query = dict[str, list[str]]


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of a request target. A target urlsplit cannot parse (`//[x`) is still a
    path: the client gets a 404, not a dropped connection."""
    try:
        parts = urllib.parse.urlsplit(target)
    except ValueError:
        path, _, query = target.partition("?")
        return path, query
    return parts.path, parts.query


# --- control endpoints -----------------------------------------------------------------------


def _ctl_health(_emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, {"ok": True, "pid": os.getpid()})


def _ctl_requests(emu: Emulator, _data: Any, query: Query) -> Response:
    endpoint = query["endpoint"][0] if query.get("endpoint") else None
    return json_response(200, emu.snapshot_requests(endpoint))


def _ctl_webhooks(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.snapshot_webhooks())


def _ctl_state(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.state())


def _ctl_reset(emu: Emulator, _data: Any, _query: Query) -> Response:
    emu.reset()
    return json_response(200, {"reset": True})


def _ctl_faults(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.pending_faults())


def _ctl_add_faults(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, {"queued": emu.add_faults(data)})


def _ctl_accounts(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, {"added": emu.add_accounts(data)})


def _ctl_config(emu: Emulator, _data: Any, _query: Query) -> Response:
    return json_response(200, emu.configure({}))


def _ctl_configure(emu: Emulator, data: Any, _query: Query) -> Response:
    return json_response(200, emu.configure(data))


def _ctl_clock(emu: Emulator, data: Any, _query: Query) -> Response:
    advance = as_obj(data, "clock").get("advance")
    if not isinstance(advance, int | float) or isinstance(advance, bool) or advance < 0:
        return message(400, "clock.advance must be a number of seconds >= 0")
    return json_response(200, {"offset": emu.advance(float(advance))})


def _ctl_webhook(emu: Emulator, project_id: str, data: Any) -> Response:
    obj = as_obj(data, "webhook")
    url = obj.get("url", obj.get("webhookUrl"))
    if url is not None and not isinstance(url, str):
        return message(400, "webhook.url must be a string or null")
    if not emu.set_webhook(project_id, url):
        return message(404, MSG_PROJECT_NOT_FOUND)
    deliverable = bool(url) and is_loopback_url(str(url))
    return json_response(200, {"webhookUrl": url or None, "deliverable": deliverable})


_CONTROL: Final[dict[tuple[str, str], Callable[[Emulator, Any, Query], Response]]] = {
    ("GET", ""): _ctl_health,
    ("GET", "health"): _ctl_health,
    ("GET", "requests"): _ctl_requests,
    ("GET", "webhooks"): _ctl_webhooks,
    ("GET", "state"): _ctl_state,
    ("GET", "accounts"): _ctl_state,
    ("POST", "reset"): _ctl_reset,
    ("GET", "faults"): _ctl_faults,
    ("POST", "faults"): _ctl_add_faults,
    ("POST", "accounts"): _ctl_accounts,
    ("GET", "config"): _ctl_config,
    ("POST", "config"): _ctl_configure,
    ("POST", "clock"): _ctl_clock,
}


def control(emu: Emulator, method: str, path: str, query: Query, body: bytes) -> Response:
    """Answer one `/_emulator/...` call. Control calls are not recorded, limited or faulted."""
    try:
        data = json.loads(body) if body.strip() else {}
    except ValueError:
        return message(400, MSG_BAD_JSON)
    route = path.removeprefix("/_emulator").strip("/")
    handler = _CONTROL.get((method, route))
    if handler is not None:
        return handler(emu, data, query)
    segments = route.split("/")
    if method == "PUT" and len(segments) == 3 and segments[::2] == ["projects", "webhook"]:
        return _ctl_webhook(emu, segments[1], data)
    return message(404, f"No control endpoint {method} {path}")


# --- the request handler ---------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real API behind a proxy
    server: EmulatorServer

    def version_string(self) -> str:
        return SERVER_NAME

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    @property
    def emu(self) -> Emulator:
        return self.server.emulator

    def _dispatch(self) -> None:
        path, query = split_target(self.path)
        if path == "/_emulator" or path.startswith("/_emulator/"):
            try:
                body = self._read_body()
                resp = control(self.emu, self.command, path, urllib.parse.parse_qs(query), body)
            except Reply as exc:
                resp = exc.response
            except SeedError as exc:
                resp = message(400, str(exc))
            self._send(resp)
            return
        self._api(path)

    def _read_body(self) -> bytes:
        raw = self.headers.get("Content-Length")
        if raw is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                raise Reply(411, "Length Required")
            return b""
        try:
            length = int(raw)
        except ValueError:
            self.close_connection = True
            raise Reply(400, "Invalid Content-Length") from None
        if length < 0 or length > MAX_REQUEST_BODY:
            self.close_connection = True
            raise Reply(413, MSG_TOO_LARGE)
        return self.rfile.read(length)

    def _new_record(self, path: str) -> dict[str, Any]:
        return {
            "time": self.emu.epoch(),
            "method": self.command,
            "path": path,  # without the query string: a GET could carry `apikey` there
            "endpoint": endpoint_of(path),
            "status": None,
            "userId": None,
            "projectId": None,
            "uploadId": None,
            "api_key_ok": None,
            "file_url_query": None,  # upload-file: whether fileUrl had a query (never the URL)
            "content_type": self.headers.get("Content-Type"),
            "user_agent": self.headers.get("User-Agent"),
        }

    def _api(self, path: str) -> None:
        emu = self.emu
        rec = self._new_record(path)
        emu.record(rec)
        generation = emu.generation
        fault = emu.take_fault(rec["endpoint"], path, self.command)
        if fault is not None:
            emu.update(rec, fault=fault.describe())
            if not self._fault_before_read(fault, rec, generation):
                return
        try:
            body = self._read_body()
        except Reply as exc:
            emu.update(rec, status=exc.response.status)
            self._send(exc.response)
            return
        if fault is not None and fault.status is not None:
            resp = fault.response()  # replaces the server: nothing processed, no window used
        else:
            scratch: dict[str, Any] = {}
            content_type = self.headers.get("Content-Type", "")
            resp = handle_api(emu, rec["endpoint"], self.command, content_type, body, scratch)
            emu.update(rec, **scratch)
            if fault is not None:
                resp = fault.decorate(resp)
        drop = fault.drop if fault is not None else None
        if drop == "before_response":
            emu.update(rec, dropped=drop)  # processed, but the client never learns it
            self._abort()
            return
        emu.update(rec, status=resp.status)
        if drop == "mid_body":
            emu.update(rec, dropped=drop)
        self._send(resp, cut=drop == "mid_body")

    def _fault_before_read(self, fault: Fault, rec: dict[str, Any], generation: int) -> bool:
        """Sleep and drop as the fault says; False when the request ends here."""
        if fault.delay:
            time.sleep(fault.delay)
        if self.emu.generation != generation:  # reset while we slept: belongs to an old test
            self._abort()
            return False
        if fault.drop == "before_read":
            self.emu.update(rec, dropped=fault.drop)
            self._abort()
            return False
        return True

    def _send(self, resp: Response, *, cut: bool = False) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if cut:
            self.wfile.write(resp.body[: len(resp.body) // 2])
            self._abort()
            return
        self.wfile.write(resp.body)

    def _abort(self) -> None:
        """Close the connection with no (or no complete) response."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_request(self, code: int | str = "-", _size: int | str = "-") -> None:
        # No query string (it could carry `apikey`). A request line too broken to parse has no
        # path at all; its error line was already logged.
        raw = getattr(self, "path", None)
        path = split_target(raw)[0] if isinstance(raw, str) else "-"
        self.log_message("%s %s %s", self.command or "-", path, str(code))

    def log_message(self, format: str, *args: Any) -> None:
        if not self.server.quiet:
            text = self.emu.scrubber.scrub(format % args)
            print(f"emulator: {self.address_string()} {text}", file=sys.stderr, flush=True)


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], emulator: Emulator, *, quiet: bool, family: int
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.quiet = quiet
        super().__init__(address, Handler)

    def handle_error(self, _request: Any, client_address: Any) -> None:
        # Clients that hang up (our own drop faults, TLS tests) are routine here, not tracebacks.
        exc = sys.exc_info()[1]
        if not self.quiet:
            text = self.emulator.scrubber.scrub(repr(exc))
            print(f"emulator: connection error from {client_address[0]}: {text}", file=sys.stderr)
