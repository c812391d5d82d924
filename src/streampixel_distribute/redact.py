"""Scrub secrets from any text before it leaves the process.

A secret is registered once (when settings are read) and every string that reaches a log line,
an output, the summary or an error is passed through `scrub`. The encoded forms are covered too:
a key can leak as part of a URL (percent-encoded) or a Basic-auth header (base64).
"""

from __future__ import annotations

import base64
import threading
import urllib.parse

MASK = "***"
_MIN_LEN = 4  # shorter "secrets" would mask ordinary words
_lock = threading.Lock()
_forms: list[str] = []


def _encoded_forms(secret: str) -> set[str]:
    # os.environ turns bytes that are not UTF-8 into lone surrogates; surrogateescape gives the
    # original bytes back, which is what would travel in a URL or a Basic-auth header.
    try:
        raw = secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw)}
    forms.add(base64.b64encode(raw).decode())
    # base64 of the secret inside a longer value ("user:secret") aligns on any of 3 offsets; the
    # stable middle part of each alignment is what can appear in such an encoding.
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + raw).decode()
        start = (pad * 4 + 2) // 3 + 1
        middle = encoded[start : len(encoded) - 4]
        if len(middle) >= 8:
            forms.add(middle)
    return {f for f in forms if len(f) >= _MIN_LEN}


def register(secret: str | None) -> None:
    """Remember a secret (and its encodings) so that `scrub` removes it everywhere."""
    if not secret or len(secret.strip()) < _MIN_LEN:
        return
    with _lock:
        for form in _encoded_forms(secret) | _encoded_forms(secret.strip()):
            if form not in _forms:
                _forms.append(form)
        _forms.sort(key=len, reverse=True)  # longest first so a prefix never leaves a tail


def registered() -> tuple[str, ...]:
    """The plain secrets and forms currently masked (used to emit `::add-mask::`)."""
    with _lock:
        return tuple(_forms)


def scrub(text: str) -> str:
    with _lock:
        forms = tuple(_forms)
    for form in forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def one_line(text: str, limit: int) -> str:
    """The one sanitiser for text from outside (server messages, payloads, paths) that is
    printed: printable characters only, one line, whitespace collapsed, secrets scrubbed, at most
    `limit` characters (an ellipsis marks a cut). The runner writer neutralises command syntax."""
    flat = "".join(c if c.isprintable() else " " for c in text[: limit * 4 + 64])
    flat = scrub(" ".join(flat.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def clear() -> None:
    """Forget every secret (tests and long-running servers that reload settings)."""
    with _lock:
        _forms.clear()
