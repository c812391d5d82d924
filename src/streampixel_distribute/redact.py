"""Scrub secrets from any text before it leaves the process.

A secret is registered once (when settings are read) and every string that reaches a log line,
an output, the summary or an error is passed through `scrub`. The encoded forms are covered too:
a key can leak as part of a URL (percent-encoded) or a Basic-auth header (base64).
"""

from __future__ import annotations

import _thread
import binascii
import urllib.parse

MASK = "***"
_MIN_LEN = 4  # shorter "secrets" would mask ordinary words
_lock = _thread.allocate_lock()  # `threading` is not needed for one lock
_forms: list[str] = []


def _encoded_forms(secret: str) -> set[str]:
    # os.environ turns bytes that are not UTF-8 into lone surrogates; surrogateescape gives the
    # original bytes back, which is what would travel in a URL or a Basic-auth header.
    try:
        raw = secret.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte
        raw = secret.encode("utf-8", "surrogatepass")
    forms = {secret, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw)}
    forms.add(_b64(raw))
    # base64 of the secret inside a longer value ("user:secret") aligns on any of 3 offsets. Of
    # each alignment, the characters made of the secret's bits alone are what appears in such an
    # encoding whatever the neighbours are: character k holds bits 6k..6k+5.
    for pad in range(3):
        encoded = _b64(b"\0" * pad + raw)
        start = -(-8 * pad // 6)  # the first character with no bit of the padding
        end = 8 * (pad + len(raw)) // 6  # the characters before it hold no bit of what follows
        middle = encoded[start:end]
        if len(middle) >= 8:
            forms.add(middle)
    return {f for f in forms if len(f) >= _MIN_LEN}


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).decode()


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


def one_line(text: str, limit: int, *, escape: bool = False) -> str:
    """The one sanitiser for any text that is printed and did not come from this program (server
    messages, payloads, paths, values of inputs): secrets scrubbed, one line, at most `limit`
    characters (`…` marks a cut).

    Prose (`escape=False`): invisible characters become spaces and whitespace runs collapse.
    Values (`escape=True`): shown exactly, invisible characters escaped (`\\n`, `\\x00`,
    `\\u200b`), and `\\`, `'` and backticks escaped, so a quoted excerpt is unambiguous.
    The runner writer (report.github) neutralises workflow-command syntax on top of this.
    """
    with _lock:
        longest = len(_forms[0]) if _forms else 0  # kept longest first
    # Read a bounded prefix, but scrub before cutting it: a secret that straddles the bound would
    # otherwise show its first characters.
    text = scrub(text[: limit * 4 + 64 + longest])[: limit * 4 + 64]
    if escape:
        pieces: list[str] = []
        used = 0
        for char in text:
            piece = _escaped(char)
            if used + len(piece) > limit:
                return "".join(pieces) + "…"
            pieces.append(piece)
            used += len(piece)
        return "".join(pieces)
    flat = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _escaped(char: str) -> str:
    if char in "'\\`":
        return "\\" + char
    if char.isprintable():
        return char
    return repr(char)[1:-1]


def shorten_id(value: str) -> str:
    """The user id is semi-secret: enough to recognise it (`663d…8d9e`), not to reuse it."""
    return value if len(value) <= 8 else f"{value[:4]}…{value[-4:]}"


def clear() -> None:
    """Forget every secret (tests and long-running servers that reload settings)."""
    with _lock:
        _forms.clear()
