"""The HTTP connection layer of the git ledger: ours, not dulwich's defaults, so that dulwich
never sees a credential (git_store.py drives dulwich's smart-HTTP client through `Pool`).

The Authorization header is added for the ledger's own origin only, a redirect is followed only
within that origin, the proxy comes from the environment the way curl picks it (`proxy_for`),
every answer is read to at most MAX_RESPONSE_BYTES within the operation's deadline, and the CA
bundle is GIT_SSL_CAINFO / GIT_SSL_CAPATH or else the system store (which honours SSL_CERT_FILE
and SSL_CERT_DIR). No git configuration, credential helper or askpass is ever read.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import re
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .. import __version__, redact
from .git_spec import GitTarget
from .spec import printable

if TYPE_CHECKING:
    import urllib3

#: A ledger ref's pack is a few hundred bytes; anything past this is not a ledger.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
MAX_REDIRECTS = 5


class Failure(Exception):
    """A transport failure of one kind (a key of git_store.py's `_FAILURES`), with a message
    safe to show."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(kind, message)
        self.kind = kind
        self.message = message


def auth_header(target: GitTarget) -> str:
    """The Authorization header value for the target's user and password."""
    raw = f"{target.username}:{target.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def proxy_for(url: str, environ: Mapping[str, str]) -> str | None:
    """The proxy for `url` as curl (and so git) picks it from the environment, or None.

    https: `https_proxy`, `HTTPS_PROXY`; http: `http_proxy` only (the upper-case form can be set
    by a web request's `Proxy:` header in CGI); then `all_proxy`, `ALL_PROXY`. `no_proxy` (or
    `NO_PROXY`) lists hosts, domains (with their subdomains), IP addresses and CIDR ranges to
    reach directly, or `*` for all.
    """
    parts = urllib.parse.urlsplit(url)
    names = ("https_proxy", "HTTPS_PROXY") if parts.scheme == "https" else ("http_proxy",)
    proxy = next((environ[n] for n in (*names, "all_proxy", "ALL_PROXY") if environ.get(n)), "")
    proxy = proxy.strip()
    if not proxy or _bypassed(parts.hostname or "", environ.get("no_proxy")
                              or environ.get("NO_PROXY") or ""):
        return None
    return proxy if "://" in proxy else "http://" + proxy


def _bypassed(host: str, no_proxy: str) -> bool:
    host = host.strip("[]").lower()
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in no_proxy.split(","):
        entry = raw.strip().lower().lstrip(".").strip("[]")
        if entry == "*":
            return True
        if not entry:
            continue
        if address is not None and "/" in entry:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
        elif host == entry or host.endswith("." + entry):
            return True
    return False


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


_NOISE = re.compile(r"<[^>]*>: |\w+\(host='[^']*', port=\d+\): |HTTPS?ConnectionPool\([^)]*\): ")


def _clean(error: BaseException) -> str:
    """urllib3's text for an error without object addresses and pool descriptions."""
    return printable(_NOISE.sub("", str(error)).strip(" ()"), 300)


class Pool:
    """What dulwich's HTTP client calls its pool manager: urllib3 under the ledger's rules."""

    def __init__(self, target: GitTarget) -> None:
        import urllib3  # noqa: PLC0415 - only for an http(s) ledger

        self._urllib3 = urllib3
        self._target = target
        self._origin = _origin(target.url)
        self._auth = auth_header(target) if target.username or target.password else None
        self.headers = {"User-Agent": f"git/dulwich streampixel-distribute/{__version__}"}
        self.deadline = float("inf")
        self.received = 0
        options: dict[str, Any] = {
            "timeout": urllib3.Timeout(connect=target.timeout, read=target.timeout),
            # One retry, for a GET whose kept-alive connection the server had just closed; a
            # host that refuses or is unknown fails at once.
            "retries": urllib3.Retry(total=1, connect=0, read=1, redirect=0, status=0, other=0,
                                     raise_on_redirect=False, raise_on_status=False),
            "cert_reqs": "CERT_REQUIRED",
            "ca_certs": os.environ.get("GIT_SSL_CAINFO") or None,
            "ca_cert_dir": os.environ.get("GIT_SSL_CAPATH") or None,
        }
        self.proxy = proxy_for(target.url, os.environ)
        self.manager: urllib3.PoolManager
        if self.proxy is None:
            self.manager = urllib3.PoolManager(**options)
        else:
            self.manager = urllib3.ProxyManager(**self._proxy_options(self.proxy), **options)

    def _proxy_options(self, proxy: str) -> dict[str, Any]:
        """The proxy URL without credentials (urllib3 quotes it in errors) and its Basic auth."""
        from ..urls import find_userinfo, without_userinfo  # noqa: PLC0415

        info = find_userinfo(proxy)
        shown = without_userinfo(proxy)
        scheme = urllib.parse.urlsplit(shown).scheme.lower()
        if scheme not in ("http", "https"):
            raise Failure("proxy-scheme", f"{printable(shown, 200)} is a {scheme} proxy")
        self.proxy = shown
        headers = {}
        if info is not None:
            for secret in info.secrets():
                redact.register(secret)
            user = urllib.parse.unquote(info.username)
            password = urllib.parse.unquote(info.password or "")
            redact.register(password)
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            redact.register(token)
            headers["Proxy-Authorization"] = "Basic " + token
        return {"proxy_url": shown, "proxy_headers": headers}

    def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                body: Any = None, **_ignored: Any) -> _Response:
        """One request as dulwich asks for it; redirects within the ledger's origin only."""
        sent = {k: v for k, v in (headers or {}).items() if k.lower() != "authorization"}
        for _hop in range(MAX_REDIRECTS + 1):
            if _origin(url) != self._origin:
                raise Failure("redirect", f"{printable(self._target.url, 200)} redirected to "
                                           f"{printable(url, 200)}")
            if self._auth is not None:
                sent["Authorization"] = self._auth
            self._check_deadline()
            try:
                raw = self.manager.request(method, url, headers=sent, body=body,
                                           preload_content=False, redirect=False)
            except self._urllib3.exceptions.HTTPError as error:
                raise self._failure(error) from None
            location = raw.get_redirect_location() if raw.status in (301, 302, 303, 307, 308) \
                else None
            if not location:
                return self._checked(method, url, _Response(raw, self))
            raw.close()
            if method != "GET":
                raise Failure("redirect", f"the server redirected a {method} request")
            url = urllib.parse.urljoin(url, location)
        raise Failure("redirect", "too many redirects")

    def _checked(self, method: str, url: str, response: _Response) -> _Response:
        """HTTP errors and non-git answers become failures before dulwich reads anything."""
        status = response.status
        if status >= 400:
            text = response.peek_text()
            response.close()
            kind = str(status) if status in (401, 403, 404, 407) else "http"
            raise Failure(kind, f"HTTP {status}" + (f": {text}" if text else ""))
        query = urllib.parse.urlsplit(url).query
        if method == "GET" and "service=git-" in query:
            service = query.partition("service=")[2].partition("&")[0]
            kind = response.headers.get("Content-Type", "")
            if kind.split(";")[0].strip() != f"application/x-{service}-advertisement":
                response.close()
                raise Failure("not-git", f"HTTP {status} with {printable(kind, 80) or 'no'} "
                                          "content type instead of a git service advertisement")
        return response

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise Failure("timeout", "the operation ran out of time")

    def _failure(self, error: BaseException) -> Failure:
        """A urllib3 error as a failure kind (the cause decides the fix shown to the user)."""
        exceptions = self._urllib3.exceptions
        while isinstance(error, exceptions.MaxRetryError) and error.reason is not None:
            error = error.reason
        if isinstance(error, exceptions.ProxyError):
            text = _clean(error.original_error)
            return Failure("407" if " 407 " in f" {text} " else "proxy", f"{self.proxy}: {text}")
        if isinstance(error, exceptions.NameResolutionError):
            return Failure("dns", _clean(error))
        if isinstance(error, exceptions.SSLError):
            return Failure("tls", _clean(error))
        if isinstance(error, exceptions.NewConnectionError):  # a ConnectTimeoutError subclass
            return Failure("unreachable", _clean(error))
        if isinstance(error, exceptions.TimeoutError):
            return Failure("timeout", _clean(error))
        return Failure("unreachable", _clean(error))

    def clear(self) -> None:
        self.manager.clear()


class _Response:
    """A urllib3 response as dulwich reads it, under the operation's deadline and a size cap."""

    def __init__(self, raw: urllib3.BaseHTTPResponse, pool: Pool) -> None:
        self._raw = raw
        self._pool = pool
        self.status = raw.status
        self.headers = raw.headers
        self.content_type: str | None = None  # dulwich sets these two
        self.redirect_location = ""

    def geturl(self) -> str | None:
        return self._raw.geturl()

    def read(self, amt: int | None = None) -> bytes:
        self._pool._check_deadline()
        try:
            data = self._raw.read(amt)
        except self._pool._urllib3.exceptions.HTTPError as error:
            raise self._pool._failure(error) from None
        self._pool.received += len(data)
        if self._pool.received > MAX_RESPONSE_BYTES:
            raise Failure("too-large", f"the server sent more than {MAX_RESPONSE_BYTES} bytes")
        return data

    def peek_text(self) -> str:
        """The start of an error page, one line, for the message."""
        with contextlib.suppress(Exception):
            return printable(self._raw.read(300).decode(errors="replace").strip(), 200)
        return ""

    def close(self) -> None:
        # A body read to its end goes back to the pool (keep-alive); an unfinished one would
        # leave bytes on the connection, so that connection is closed instead.
        if self._raw.length_remaining == 0:
            self._raw.read()
        self._raw.close()
