"""What keeps the emulator harmless: it talks to loopback only, and its log never shows a key.

Both are the emulator's own on purpose: it stands in for the server, so it must not share code
with the client it is used to test (a bug there would hide itself).
"""

from __future__ import annotations

import ipaddress
import threading
import urllib.parse
from typing import Final

MASK: Final = "***"
_MIN_SECRET: Final = 4  # shorter "keys" would mask ordinary words in the log
_V4_LOOPBACK: Final = ipaddress.IPv4Network("127.0.0.0/8")
_V6_LOOPBACK: Final = ipaddress.IPv6Address("::1")


def is_loopback_host(host: str) -> bool:
    """Exactly `localhost`, an address in 127.0.0.0/8, or ::1.

    A name is matched whole: `localhost.evil.test` is anyone's DNS name, not loopback."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in _V4_LOOPBACK
    return address == _V6_LOOPBACK


def is_loopback_url(url: str) -> bool:
    """An http(s) URL whose host is loopback: the only place the emulator sends webhooks."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host:
        return False
    return is_loopback_host(host)


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, for the log: a webhook path often holds a secret token."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        host = parts.hostname or "?"
    except ValueError:
        return "(an invalid URL)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{'/…' if parts.path.strip('/') else ''}"


class Scrubber:
    """Masks the API keys the emulator was seeded with, in every line it prints.

    The percent-encoded forms are masked too: a key can arrive in a query string."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._forms: list[str] = []

    def add(self, secret: str) -> None:
        if len(secret.strip()) < _MIN_SECRET:
            return
        forms = {
            secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
        }  # fmt: skip
        with self._lock:
            self._forms.extend(f for f in forms if f not in self._forms)
            self._forms.sort(key=len, reverse=True)  # longest first: a prefix leaves no tail

    def scrub(self, text: str) -> str:
        with self._lock:
            forms = tuple(self._forms)
        for form in forms:
            text = text.replace(form, MASK)
        return text
