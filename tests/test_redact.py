"""redact: which forms of a secret are masked, in which order, and how outside text is cut.

The leak sweep (test_leaks.py) proves no secret leaves through any path of the product; these
pin down the rules it relies on, one by one, so that a wrong rule fails here by name.
"""

from __future__ import annotations

import base64
import os
import urllib.parse

import pytest

from streampixel_distribute import redact

SECRET = "sk_live_Abc/Def+Ghi=Jkl"  # characters that each encoding changes


def test_every_encoding_of_a_secret_is_masked() -> None:
    redact.register(SECRET)
    raw = SECRET.encode()
    for form in (SECRET, urllib.parse.quote(SECRET, safe=""), urllib.parse.quote_plus(SECRET),
                 base64.b64encode(raw).decode()):
        assert redact.scrub(f"<{form}>") == "<***>", form


def test_a_secret_with_spaces_and_slashes_is_masked_percent_encoded_in_full() -> None:
    secret = "pass word/with slash"
    redact.register(secret)
    # quote(safe="") differs from quote_plus (%20, not +) and from quote's default (/ kept).
    assert redact.scrub("?p=" + urllib.parse.quote(secret, safe="")) == "?p=***"


@pytest.mark.parametrize("before", [b"", b":", b"a:", b"ab:", b"ci-bot:", b"x-access-token:"])
@pytest.mark.parametrize("after", [b"", b"@", b":x", b"\xfftail"])
def test_the_secret_inside_a_longer_base64_value_is_masked_to_its_last_own_bit(
        before: bytes, after: bytes) -> None:
    """Whatever surrounds it ("user:secret" in a Basic-auth header, or more), every base64
    character made of the secret's bits alone is masked; only characters that also hold a bit
    of a neighbour (or padding) stay."""
    secret = SECRET.encode()
    redact.register(SECRET)
    value = base64.b64encode(before + secret + after).decode()
    scrubbed = redact.scrub(value)
    left, mask, right = scrubbed.partition("***")
    assert mask, scrubbed
    first_bit, end_bit = 8 * len(before), 8 * (len(before) + len(secret))
    own = [k for k in range(len(value)) if first_bit <= 6 * k and 6 * k + 6 <= end_bit]
    assert len(left) <= own[0] and len(value) - len(right) >= own[-1] + 1, (left, right)


def test_a_secret_with_exactly_8_characters_of_its_own_is_masked_inside_a_value() -> None:
    secret = "Zq7Xk2W"  # 7 bytes after 1: bits 8..63, so characters 2..9 are its own
    redact.register(secret)
    value = base64.b64encode(b":" + secret.encode() + b"!").decode()
    assert redact.scrub(value) == value[:2] + "***" + value[10:]


def test_short_values_are_not_secrets_and_surrounding_spaces_do_not_count() -> None:
    for value in (None, "", "abc", "  abc  ", "\tab\n"):
        redact.register(value)
    assert redact.registered() == ()
    redact.register("abcd")  # the shortest secret
    assert "abcd" in redact.registered()
    assert redact.scrub("xabcdx") == "x***x"


def test_a_secret_with_spaces_around_is_masked_with_and_without_them() -> None:
    redact.register("  padded-token  ")
    assert redact.scrub("[  padded-token  ]") == "[***]"
    assert redact.scrub("[padded-token]") == "[***]"


def test_the_longest_form_is_replaced_first_so_no_tail_is_left() -> None:
    redact.register("abcd")
    redact.register("abcdefgh")
    assert redact.scrub("abcdefgh abcd") == "*** ***"
    forms = redact.registered()
    assert list(forms) == sorted(forms, key=len, reverse=True)
    assert len(forms) == len(set(forms))  # registering twice adds nothing
    redact.register("abcdefgh")
    assert redact.registered() == forms


def test_every_occurrence_is_replaced() -> None:
    redact.register(SECRET)
    assert redact.scrub(f"{SECRET}-{SECRET}-{SECRET}") == "***-***-***"


def test_clear_forgets_every_secret() -> None:
    redact.register(SECRET)
    redact.clear()
    assert redact.registered() == ()
    assert redact.scrub(SECRET) == SECRET


def test_a_secret_read_from_bytes_that_are_not_utf8_is_masked_as_those_bytes() -> None:
    raw = b"key-\xff\xfe-value"
    secret = os.fsdecode(raw)  # as os.environ holds it: lone surrogates
    redact.register(secret)
    assert redact.scrub(urllib.parse.quote(raw, safe="")) == "***"
    assert redact.scrub(base64.b64encode(raw).decode()) == "***"


def test_a_lone_surrogate_that_came_from_no_byte_is_masked_too() -> None:
    secret = "key-\ud800-value-long"
    redact.register(secret)
    assert redact.scrub(f"[{secret}]") == "[***]"
    raw = secret.encode("utf-8", "surrogatepass")
    assert redact.scrub(urllib.parse.quote(raw, safe="")) == "***"


def test_one_line_prose_collapses_whitespace_and_invisible_characters() -> None:
    assert redact.one_line("  a\n\tb\x00c\u200bd  ", 50) == "a b c d"


def test_one_line_prose_cuts_at_the_limit_with_an_ellipsis() -> None:
    assert redact.one_line("abcdef", 6) == "abcdef"
    assert redact.one_line("abcdefg", 6) == "abcde…"
    assert len(redact.one_line("x" * 500, 40)) == 40


def test_one_line_values_escape_quotes_backslashes_and_invisible_characters() -> None:
    assert redact.one_line("a'b\\c`d\ne\x00f\u200bXx", 100, escape=True) == (
        "a\\'b\\\\c\\`d\\ne\\x00f\\u200bXx")


def test_one_line_values_count_escapes_against_the_limit() -> None:
    assert redact.one_line("ab\n", 4, escape=True) == "ab\\n"
    assert redact.one_line("ab\nc", 4, escape=True) == "ab\\n…"
    assert redact.one_line("abc\n", 4, escape=True) == "abc…"  # an escape is never split


def test_one_line_scrubs_secrets_before_cutting() -> None:
    redact.register(SECRET)
    assert redact.one_line(f"token {SECRET} refused", 100) == "token *** refused"
    assert redact.one_line(f"token {SECRET}", 100, escape=True) == "token ***"
    # A secret cut by the limit still cannot leak a prefix of itself.
    assert SECRET[:10] not in redact.one_line(f"{'x' * 30}{SECRET}", 40)


@pytest.mark.parametrize("escape", [False, True])
def test_a_long_secret_across_the_read_bound_is_masked_not_cut(escape: bool) -> None:
    """one_line reads only a prefix of the text; a secret crossing its end must still be
    recognised whole, not cut into an unrecognised (and printed) head."""
    secret = "k" + "0123456789abcdef" * 20  # 321 characters
    redact.register(secret)
    shown = redact.one_line(f"id {secret} tail", 48, escape=escape)
    assert secret[:8] not in shown
    assert shown.startswith("id ***")


def test_one_line_reads_only_a_bounded_prefix_of_huge_text() -> None:
    """At most limit * 4 + 64 characters are read (whitespace that collapses may take more than
    `limit` of them): a megabyte of server answer costs nothing."""
    assert redact.one_line(" " * 104 + "x", 10) == ""
    assert redact.one_line(" " * 103 + "x", 10) == "x"
    redact.register("abcdefgh")  # secrets widen what is scrubbed, not what is read
    assert redact.one_line(" " * 104 + "x", 10) == ""
    assert redact.one_line("b" * 10_000, 10) == "b" * 9 + "…"


def test_shorten_id_keeps_short_values_and_hides_the_middle_of_long_ones() -> None:
    assert redact.shorten_id("12345678") == "12345678"
    assert redact.shorten_id("123456789") == "1234…6789"
    assert redact.shorten_id("65de0000000000000000a001") == "65de…a001"
