"""Settings: sources and precedence, trimming, every kind of problem, the event payload, secrecy.

Pure in-process: `load` takes the flags and the environment as plain mappings, and event payloads
are real files in a temporary directory. `load_settings` below is what the `distribute` command
does with them: load the job, then refuse a build that its triggering webhook says was rejected.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streampixel_distribute import redact
from streampixel_distribute.commands import rejected_build
from streampixel_distribute.errors import InvalidInput, NotReady, Problem
from streampixel_distribute.settings import (
    BY_NAME,
    DEFAULT_API_URL,
    Command,
    Job,
    Target,
    load,
    secret_candidates,
    target_for,
)
from streampixel_distribute.settings.event import Webhook
from streampixel_distribute.settings.inputs import inputs_of

SPECS = BY_NAME

KEY = "spk-Distinctive-KEY-7c1e9a55"
TOKEN = "ghs_DistinctiveToken0123456789"
USER = "663d0a1b2c3e4f5a6b7c8d9e"
PROJECT = "67944b8a3f323be4b89a2272"
UPLOAD = "665a2b3c4d5e6f7a8b9c0e1f"
OTHER = "0123456789abcdef01234567"
FORKS = "pull requests from forks and Dependabot get no secrets"

Flags = dict[str, str | None]


def load_settings(flags: Mapping[str, str | None], environ: Mapping[str, str]) -> Job:
    job = load(Command.DISTRIBUTE, flags, environ)
    rejected = rejected_build(job)
    if rejected is not None:
        raise rejected
    return job


def base_env(**extra: str) -> dict[str, str]:
    env = {
        "STREAMPIXEL_API_KEY": KEY,
        "STREAMPIXEL_USER_ID": USER,
        "STREAMPIXEL_PROJECT_ID": PROJECT,
        "STREAMPIXEL_UPLOAD_ID": UPLOAD,
    }
    env.update(extra)
    return env


def env_for(name: str, value: str) -> dict[str, str]:
    """A valid environment with `name` given as the runner passes it (INPUT_, hyphen kept)."""
    return base_env(**{f"INPUT_{name.upper()}": value})


def secrets_absent(exc: BaseException, *secrets: str) -> None:
    texts = [str(exc), repr(exc), getattr(exc, "hint", "") or "", getattr(exc, "detail", "")]
    for problem in getattr(exc, "problems", []):
        texts += [problem.message, problem.fix, str(problem)]
    for secret in (KEY, TOKEN, *secrets):
        for text in texts:
            assert secret not in text


def problems(flags: Mapping[str, str | None], environ: Mapping[str, str],
             *secrets: str) -> dict[str, Problem]:
    """The problems by input; checks the invariants every report must keep."""
    with pytest.raises(InvalidInput) as caught:
        load_settings(flags, environ)
    exc = caught.value
    secrets_absent(exc, *secrets)
    by_input: dict[str, Problem] = {}
    for problem in exc.problems:
        assert problem.input in SPECS
        assert problem.message
        assert problem.fix  # every problem says how to fix it
        by_input.setdefault(problem.input, problem)
    assert exc.exit_code == 2
    return by_input


def attempt(flags: Mapping[str, str | None], environ: Mapping[str, str]
            ) -> Job | InvalidInput | NotReady:
    """Settings or the expected error; anything else propagates and fails the test."""
    try:
        return load_settings(flags, environ)
    except (InvalidInput, NotReady) as exc:
        return exc


def only_problem(flags: Flags, environ: Mapping[str, str], name: str) -> Problem:
    found = problems(flags, environ)
    assert set(found) == {name}, found
    return found[name]


# --------------------------------------------------------------------------------------------
# Sources, precedence, defaults, trimming
# --------------------------------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings({}, base_env())
    assert (s.account.api_key, s.account.user_id) == (KEY, USER)
    assert (s.target.project_id, s.target.upload_id) == (PROJECT, UPLOAD)
    assert s.account.api_url == DEFAULT_API_URL
    assert s.account.ledger == "auto"
    assert s.account.github_token == ""
    account = s.account
    assert (account.rate_limit_interval, account.max_wait, account.timeout, account.retries) == (
        120.0, 900.0, 30.0, 3)
    assert (s.dry_run, s.account.strict_ids) == (False, True)
    assert s.sources["api-key"] == "STREAMPIXEL_API_KEY"
    assert s.sources["timeout"] == "default"
    assert set(s.sources) == {spec.name for spec in inputs_of(Command.DISTRIBUTE)}


SOURCES = ["flag", "INPUT_USER-ID", "INPUT_USER_ID", "STREAMPIXEL_USER_ID"]


@pytest.mark.parametrize("winner", range(len(SOURCES)))
def test_precedence_for_an_id(winner: int) -> None:
    ids = ["aaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaaaaaa3",
           "aaaaaaaaaaaaaaaaaaaaaaa4"]
    env = base_env()
    del env["STREAMPIXEL_USER_ID"]
    flags: Flags = {}
    # Give the winner and every source below it; none above it.
    for i in range(winner, len(SOURCES)):
        if SOURCES[i] == "flag":
            flags["user-id"] = ids[i]
        else:
            env[SOURCES[i]] = ids[i]
    s = load_settings(flags, env)
    assert s.account.user_id == ids[winner]
    assert s.sources["user-id"] == SOURCES[winner]


def test_precedence_for_a_setting_down_to_the_default() -> None:
    env = base_env(**{"INPUT_TIMEOUT": "6", "STREAMPIXEL_TIMEOUT": "7"})
    assert load_settings({"timeout": "5"}, env).account.timeout == 5
    assert load_settings({"timeout": None}, env).account.timeout == 6
    del env["INPUT_TIMEOUT"]
    assert load_settings({}, env).account.timeout == 7
    del env["STREAMPIXEL_TIMEOUT"]
    s = load_settings({}, env)
    assert (s.account.timeout, s.sources["timeout"]) == (30, "default")


def test_hyphen_and_underscore_input_forms() -> None:
    env = base_env(**{"INPUT_DRY_RUN": "true"})
    s = load_settings({}, env)
    assert (s.dry_run, s.sources["dry-run"]) == (True, "INPUT_DRY_RUN")
    env["INPUT_DRY-RUN"] = "false"  # the runner's own (hyphen) form wins
    s = load_settings({}, env)
    assert (s.dry_run, s.sources["dry-run"]) == (False, "INPUT_DRY-RUN")


@pytest.mark.parametrize("blank", ["", "   ", "\n", " \t\r\n "])
def test_empty_values_fall_through(blank: str) -> None:
    env = base_env(**{"INPUT_API-KEY": blank, "INPUT_API_KEY": blank, "INPUT_LEDGER": blank})
    s = load_settings({"api-key": blank, "ledger": blank}, env)
    assert s.account.api_key == KEY
    assert s.sources["api-key"] == "STREAMPIXEL_API_KEY"
    assert (s.account.ledger, s.sources["ledger"]) == ("auto", "default")


def test_values_are_trimmed() -> None:
    env = base_env(**{"INPUT_API-KEY": f"  {KEY}\n", "INPUT_PROJECT-ID": f"\t{PROJECT} \r\n",
                      "INPUT_API-URL": " https://example.test/api/ "})
    s = load_settings({"user-id": f" {USER}\n"}, env)
    assert (s.account.api_key, s.target.project_id, s.account.user_id) == (KEY, PROJECT, USER)
    assert s.account.api_url == "https://example.test/api"


def test_settings_is_frozen_and_its_repr_hides_secrets() -> None:
    s = load_settings({"github-token": TOKEN}, base_env())
    assert s.account.github_token == TOKEN
    assert KEY not in repr(s) and TOKEN not in repr(s) and KEY not in str(s)
    with pytest.raises(AttributeError):
        s.account.api_key = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.sources["api-key"] = "x"  # type: ignore[index]


# --------------------------------------------------------------------------------------------
# Problems, one kind at a time
# --------------------------------------------------------------------------------------------


def test_missing_required_values_name_every_place_looked_at() -> None:
    found = problems({}, {"INPUT_API-KEY": "", "INPUT_USER-ID": " "})
    assert set(found) == {"api-key", "user-id", "project-id", "upload-id"}
    message = found["api-key"].message
    assert FORKS in message
    for name in ("`INPUT_API-KEY` (empty)", "`STREAMPIXEL_API_KEY` (not set)",
                 "`--api-key` (not given)"):
        assert name in message
    assert "STREAMPIXEL_API_KEY" in found["api-key"].fix
    assert "${{ secrets.STREAMPIXEL_API_KEY }}" in found["api-key"].fix
    assert "event payload" in found["upload-id"].message
    assert "repository_dispatch" in found["upload-id"].fix


def test_missing_value_points_at_a_misspelt_variable() -> None:
    env = base_env(STREAMPIXEL_APIKEY=KEY)
    del env["STREAMPIXEL_API_KEY"]
    found = only_problem({}, env, "api-key")
    assert "`STREAMPIXEL_APIKEY`" in found.message
    assert "Rename to exactly `STREAMPIXEL_API_KEY`" in found.fix


def test_missing_secret_on_a_fork_pull_request_and_for_dependabot(tmp_path: Path) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {
        "head": {"repo": {"full_name": "someone/fork"}},
        "base": {"repo": {"full_name": "owner/repo"}}}}))
    env = base_env(GITHUB_EVENT_PATH=str(event), GITHUB_ACTOR="dependabot[bot]")
    del env["STREAMPIXEL_API_KEY"]
    found = only_problem({}, env, "api-key")
    assert "pull request from a fork" in found.fix
    assert "Dependabot" in found.fix


@pytest.mark.parametrize(("value", "kind"), [
    (f"{KEY[:10]} {KEY[10:]}", "a space"),
    (f"{KEY}\n{KEY}", "a line break"),
    (f"{KEY[:10]}\t{KEY[10:]}", "a space"),
])
def test_whitespace_inside_the_key(value: str, kind: str) -> None:
    found = only_problem({}, env_for("api-key", value), "api-key")
    assert kind in found.message
    assert "one line" in found.fix
    for part in value.split():
        assert part not in str(found)


def test_whitespace_inside_an_id() -> None:
    found = only_problem({}, env_for("project-id", f"{PROJECT[:12]} {PROJECT[12:]}"),
                         "project-id")
    assert "a space" in found.message


@pytest.mark.parametrize("char", ["\x1b", "\x00", "\u200b", "\x7f", "\xa0"])
def test_control_characters(char: str) -> None:
    found = only_problem({}, env_for("upload-id", UPLOAD[:5] + char + UPLOAD[5:]), "upload-id")
    assert f"U+{ord(char):04X}" in found.message
    assert char not in str(found)  # escaped, repr-style
    assert "invisible" in found.message
    key_problem = only_problem({}, env_for("api-key", KEY[:5] + char + KEY[5:]), "api-key")
    assert "invisible" in key_problem.message


def test_pasted_dashboard_url_suggests_the_id() -> None:
    url = f"https://dashboard.streampixel.io/projectdetail/{PROJECT}"
    found = only_problem({}, env_for("project-id", url), "project-id")
    assert "URL" in found.message
    assert f"`project-id: {PROJECT}`" in found.fix
    found = only_problem({}, env_for("project-id", "https://dashboard.streampixel.io/"),
                         "project-id")
    assert "not a URL" in found.fix


@pytest.mark.parametrize("name", ["user-id", "upload-id"])
def test_project_url_in_another_input_points_at_project_id(name: str) -> None:
    url = f"https://dashboard.streampixel.io/projectdetail/{PROJECT}"
    found = only_problem({name: url}, base_env(), name)
    assert f"`{PROJECT}` belongs in `project-id`" in found.fix
    assert "dashboard.streampixel.io" in found.message


@pytest.mark.parametrize("wrapped", [f'"{UPLOAD}"', f"'{UPLOAD}'", f"[{UPLOAD}]", f"<{UPLOAD}>",
                                     f"\u201c{UPLOAD}\u201d", f'"{UPLOAD}'])
def test_quotes_or_brackets_around_an_id(wrapped: str) -> None:
    found = only_problem({}, env_for("upload-id", wrapped), "upload-id")
    assert "quotes or brackets" in found.message
    assert f"Use '{UPLOAD}'" in found.fix


def test_quotes_around_the_key_are_reported_without_the_key() -> None:
    found = only_problem({}, env_for("api-key", f'"{KEY}"'), "api-key")
    assert "quotes" in found.message


@pytest.mark.parametrize("placeholder", [
    "your-api-key", "[YOUR_API_KEY]", "<api-key>", "xxx", "XXXXXXXXXX", "changeme",
    "${{ secrets.STREAMPIXEL_API_KEY }}", "$STREAMPIXEL_API_KEY", "${API_KEY}", "%API_KEY%",
    "$env:API_KEY", "sk_...", "***", "YOUR_API_KEY", "PLACEHOLDER", "'your-api-key'",
    "aaaaaaaaaaaaaaaaaaaaaaaa", "'ZZZZZZZZ'",  # one character, over and over
])
def test_placeholder_keys(placeholder: str) -> None:
    found = only_problem({}, env_for("api-key", placeholder), "api-key")
    assert "placeholder" in found.message
    assert placeholder not in found.message


@pytest.mark.parametrize("placeholder", [
    "your-project-id", "<project-id>", "[PROJECT_ID]", "${{ secrets.STREAMPIXEL_PROJECT_ID }}",
    "000000000000000000000000", "xxxxxxxxxxxxxxxxxxxxxxxx", "null", "undefined",
])
def test_placeholder_ids(placeholder: str) -> None:
    found = only_problem({}, env_for("project-id", placeholder), "project-id")
    assert "placeholder" in found.message


def test_unexpanded_expression_explains_where_github_expands_them() -> None:
    found = only_problem({}, env_for("user-id", "${{ secrets.STREAMPIXEL_USER_ID }}"), "user-id")
    assert "with:" in found.fix and "env:" in found.fix


@pytest.mark.parametrize(("value", "expect"), [
    ("abc", "not 24 hexadecimal"),
    (USER[:-1], "23 hex characters"),
    (USER + "0", "25 hex characters"),
    ("663d0a1b2c3e4f5a6b7c8d9g", "not 24 hexadecimal"),
])
def test_strict_ids(value: str, expect: str) -> None:
    found = only_problem({}, env_for("user-id", value), "user-id")
    assert expect in found.message
    assert "strict-ids: false" in found.fix
    assert USER not in found.message  # the user id is shortened when echoed


def test_upper_case_hex_ids_are_lower_cased_when_strict() -> None:
    s = load_settings({}, env_for("upload-id", UPLOAD.upper()))
    assert s.target.upload_id == UPLOAD
    s = load_settings({"strict-ids": "false"}, env_for("upload-id", UPLOAD.upper()))
    assert s.target.upload_id == UPLOAD.upper()  # not strict: the id is opaque, kept as given


def test_loose_ids() -> None:
    s = load_settings({"strict-ids": "False"}, base_env(**{"INPUT_PROJECT-ID": "proj_42.a-b"}))
    assert (s.target.project_id, s.account.strict_ids) == ("proj_42.a-b", False)
    env = base_env(**{"INPUT_PROJECT-ID": "proj-" + "x1" * 62, "INPUT_STRICT-IDS": "FALSE"})
    assert "129 characters" in only_problem({}, env, "project-id").message
    env["INPUT_PROJECT-ID"] = "has space"
    only_problem({}, env, "project-id")


def test_ids_are_checked_strictly_while_strict_ids_itself_is_invalid() -> None:
    found = problems({"strict-ids": "no"}, env_for("project-id", "proj-42"))
    assert set(found) == {"strict-ids", "project-id"}


@pytest.mark.parametrize(("url", "expect"), [
    ("https://api.example.test/base/", "https://api.example.test/base"),
    ("https://api.example.test", "https://api.example.test"),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
    ("http://127.4.5.6", "http://127.4.5.6"),
    ("http://localhost:9999/api", "http://localhost:9999/api"),
    ("http://[::1]:8080", "http://[::1]:8080"),
    ("HTTPS://Api.Example.Test/x", "HTTPS://Api.Example.Test/x"),
    ("https://h.test/apiX//", "https://h.test/apiX"),  # only slashes are trimmed
])
def test_api_url_accepted(url: str, expect: str) -> None:
    assert load_settings({"api-url": url}, base_env()).account.api_url == expect


@pytest.mark.parametrize(("url", "expect"), [
    ("http://api.example.test", "plain http"),
    ("http://10.0.0.1:8080", "plain http"),
    # Names that merely start like a loopback host are ordinary hosts.
    ("http://localhost.evil.test:8080", "plain http"),
    ("http://localhostx/api", "plain http"),
    ("http://127.0.0.1.evil.test/api", "plain http"),
    ("http://[::ffff:10.0.0.1]/api", "plain http"),
    ("ftp://api.example.test", "http(s) URL"),
    ("api.streampixel.io/pixelStripeApi", "http(s) URL"),
    ("https://", "http(s) URL"),
    ("https://h.test/api?x=1", "query or fragment"),
    ("https://h.test/api#frag", "query or fragment"),
    ("https://h.test:99999/api", "not a valid URL"),
    ("https://h.test/api/projects/distribute-file", "endpoint path"),
    ("https://h .test", "a space"),
])
def test_api_url_rejected(url: str, expect: str) -> None:
    found = only_problem({"api-url": url}, base_env(), "api-url")
    assert expect in found.message


def test_api_url_with_credentials_never_echoes_them() -> None:
    found = only_problem({"api-url": "https://alice:Hunter2Password@h.test/api"}, base_env(),
                         "api-url")
    assert "user name or password" in found.message
    assert "Hunter2Password" not in str(found) and "alice" not in str(found)


def test_endpoint_path_fix_suggests_the_base() -> None:
    found = only_problem({"api-url": f"{DEFAULT_API_URL}/projects/distribute-file"}, base_env(),
                         "api-url")
    assert DEFAULT_API_URL in found.fix


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "false", "False", "FALSE"])
def test_booleans_accepted(value: str) -> None:
    s = load_settings({"dry-run": value, "strict-ids": value}, base_env())
    assert s.dry_run is (value.lower() == "true")
    assert s.account.strict_ids is (value.lower() == "true")


@pytest.mark.parametrize("value", ["yes", "no", "1", "0", "tRue", "on", "t"])
def test_booleans_rejected(value: str) -> None:
    found = only_problem({"dry-run": value}, base_env(), "dry-run")
    assert "`true` or `false`" in found.fix


@pytest.mark.parametrize(("name", "value", "seconds"), [
    ("rate-limit-interval", "120", 120), ("rate-limit-interval", "0.5", 0.5),
    ("rate-limit-interval", "90s", 90), ("rate-limit-interval", "1h", 3600),
    ("max-wait", "0", 0), ("max-wait", "15m", 900), ("max-wait", "6h", 21600),
    ("max-wait", "1.5h", 5400), ("timeout", ".5", 0.5), ("timeout", "10M", 600),
])
def test_durations_accepted(name: str, value: str, seconds: float) -> None:
    s = load_settings({name: value}, base_env())
    assert getattr(s.account, name.replace("-", "_")) == seconds


@pytest.mark.parametrize(("name", "value", "expect"), [
    ("rate-limit-interval", "0", "more than 0"), ("rate-limit-interval", "3601", "at most 3600"),
    ("rate-limit-interval", "-1", "not a duration"), ("max-wait", "6.5h", "at most 21600"),
    ("max-wait", "1e3", "not a duration"), ("max-wait", "nan", "not a duration"),
    ("max-wait", "inf", "not a duration"), ("timeout", "0s", "more than 0"),
    ("timeout", "601", "at most 600"), ("timeout", "10x", "not a duration"),
    ("timeout", "1d", "not a duration"),
])
def test_durations_rejected(name: str, value: str, expect: str) -> None:
    found = only_problem({name: value}, base_env(), name)
    assert expect in found.message
    assert "e.g." in found.fix or "90s" in found.fix


@pytest.mark.parametrize(("value", "ok"), [("0", True), ("10", True), ("3", True),
                                            ("11", False), ("-1", False), ("3.0", False),
                                            ("three", False)])
def test_retries(value: str, ok: bool) -> None:
    if ok:
        assert load_settings({"retries": value}, base_env()).account.retries == int(value)
    else:
        assert "whole number" in only_problem({"retries": value}, base_env(), "retries").message


@pytest.mark.parametrize("spec", ["none", "auto", "file:///tmp/ledger.json",
                                  "redis://127.0.0.1:6379/0", "rediss://h.test:6380",
                                  "github", "github://owner/repo",
                                  "git+https://git.example.test/ci/ledger.git"])
def test_ledger_accepted(spec: str) -> None:
    assert load_settings({"ledger": spec}, base_env()).account.ledger == spec


@pytest.mark.parametrize("spec", ["ftp://h/x", "bogus", "http://[bad", "file:///a b"])
def test_ledger_rejected(spec: str) -> None:
    only_problem({"ledger": spec}, base_env(), "ledger")


# Credentials a strict URL parser splits: it stops at the first `/`, `?` or `#` and takes the rest
# of the password for a port or a path, which it then prints (issue: hostile review, item 1).
UNENCODED_LEDGERS = [
    ("redis://:RedisPassw0rd/Slash+Plus@127.0.0.1:47379/0", "RedisPassw0rd/Slash+Plus",
     ("RedisPassw0rd", "Slash+Plus"), "`/` as `%2F`"),
    ("git+http://ci-bot:Tok3nAbc/Secr3tValue99@127.0.0.1:47001/ledger.git",
     "Tok3nAbc/Secr3tValue99", ("Tok3nAbc", "Secr3tValue99"), "`/` as `%2F`"),
    ("rediss://:Hash#Pass1234@cache.example:6380/2", "Hash#Pass1234", (), "`#` as `%23`"),
    ("git+https://bot:Query?Pass5678@git.example/l.git", "Query?Pass5678", (), "`?` as `%3F`"),
    ("redis://:At@Sign@Pass9012@127.0.0.1:6379/0", "At@Sign@Pass9012", (), "`@` as `%40`"),
]


@pytest.mark.parametrize(("spec", "password", "pieces", "encoded"), UNENCODED_LEDGERS)
def test_unencoded_ledger_credentials_are_masked_and_refused(
    spec: str, password: str, pieces: tuple[str, ...], encoded: str
) -> None:
    for where in ("flag", "env"):
        flags: Flags = {"ledger": spec} if where == "flag" else {}
        env = base_env() if where == "flag" else base_env(STREAMPIXEL_LEDGER=spec)
        masked = secret_candidates(flags, env)
        assert password in masked  # whole, before any parser has split it
        assert all(piece in masked for piece in pieces)
        found = only_problem(flags, env, "ledger")
        text = str(found)
        for secret in (password, *pieces):
            assert secret not in text
        assert "not percent-encoded" in found.message
        assert encoded in found.fix  # the encoded form of the character, never the secret
        host = spec.rpartition("@")[2].split("?")[0]
        assert f"<password>@{host}" in found.fix


def test_encoded_ledger_credentials_are_accepted_and_masked_decoded() -> None:
    spec = "redis://:RedisPassw0rd%2FSlash%2BPlus@127.0.0.1:47379/0"
    assert load_settings({"ledger": spec}, base_env()).account.ledger == spec
    assert "RedisPassw0rd/Slash+Plus" in secret_candidates({"ledger": spec}, {})


@pytest.mark.parametrize("spec", [
    "file://ci:Secr3tFilePass@/srv/ledger.json", "github://x-access-token:ghs_Secr3tGhTok@o/r",
    "git+file://u:Secr3tGitFile@/srv/ledger.git"])
def test_credentials_in_a_ledger_that_takes_none_are_refused(spec: str) -> None:
    found = only_problem({"ledger": spec}, base_env(), "ledger")
    assert "takes no user name or password" in found.message
    assert "Secr3t" not in str(found)


def test_api_url_credentials_are_found_the_same_way() -> None:
    url = "https://x-access-token:Api/Secr3tToken99@api.streampixel.io/pixelStripeApi"
    assert "Api/Secr3tToken99" in secret_candidates({"api-url": url}, {})
    found = only_problem({"api-url": url}, base_env(), "api-url")
    assert "user name or password" in found.message
    assert "Secr3tToken99" not in str(found) and "Api/" not in str(found)


@pytest.mark.parametrize("spec", [
    "file:///tmp/led.json%0A::error%20title=Injected::x%0A::add-mask::x",
    "file:///tmp/led%0D.json", "file:///tmp/led%1B[31m.json", "file:///tmp/led%E2%80%A8.json",
    "git+file:///srv/l.git?ref=refs/notes/a%C2%85b",
    "redis://127.0.0.1:6379/0?ssl_ca_certs=/ca%0A::warning::x.pem",
])
def test_ledger_with_an_encoded_control_character_is_refused(spec: str) -> None:
    found = only_problem({"ledger": spec}, base_env(), "ledger")
    assert "control character or line break" in found.message
    assert "\n" not in str(found) and "\r" not in str(found)
    assert "::error" not in str(found)


def test_github_token_is_checked_without_echo() -> None:
    found = only_problem({"github-token": "${{ github.token }}"}, base_env(), "github-token")
    assert "placeholder" in found.message
    found = only_problem({"github-token": f"{TOKEN} {TOKEN}"}, base_env(), "github-token")
    assert "a space" in found.message


def test_key_equal_to_an_id_is_a_mix_up() -> None:
    found = only_problem({}, base_env(STREAMPIXEL_API_KEY=USER), "api-key")
    assert "`user-id`" in found.message
    assert USER not in str(found)


def test_short_key() -> None:
    assert "characters long" in only_problem({}, env_for("api-key", "abc12"), "api-key").message


def test_every_problem_is_reported_at_once() -> None:
    flags: Flags = {
        "api-key": "your-api-key", "user-id": "nothex", "project-id": "https://x.test/",
        "upload-id": '"abc"', "api-url": "http://example.test", "ledger": "nope://x",
        "github-token": "a b", "rate-limit-interval": "0", "max-wait": "-5", "timeout": "x",
        "retries": "99", "dry-run": "maybe", "strict-ids": "sure",
    }
    found = problems(flags, {"STREAMPIXEL_COMMAND": "publish"})
    distribute = {spec.name for spec in inputs_of(Command.DISTRIBUTE)}
    assert set(found) == distribute
    with pytest.raises(InvalidInput) as caught:
        load_settings(flags, {"STREAMPIXEL_COMMAND": "publish"})
    text = str(caught.value)
    assert all(f"`{name}`" in text for name in distribute)


def test_the_key_never_appears_even_when_pasted_into_another_input() -> None:
    # The classic mix-up: the key secret wired into user-id.
    found = problems({}, base_env(STREAMPIXEL_USER_ID=KEY))
    assert "user-id" in found
    # And into the ledger or the api-url, which are echoed for other mistakes.
    problems({"ledger": f"nope://{KEY}", "api-url": f"http://{KEY}.test/"}, base_env())


def test_registered_secrets_are_scrubbed_from_echoed_values() -> None:
    redact.register("OtherSecretValue99")
    try:
        found = only_problem({"ledger": "nope://OtherSecretValue99"}, base_env(), "ledger")
        assert "OtherSecretValue99" not in str(found)
    finally:
        redact.clear()


def test_long_values_are_echoed_as_short_excerpts() -> None:
    found = only_problem({"api-url": "http://example.test/" + "a" * 5000}, base_env(), "api-url")
    assert len(found.message) < 300


# --------------------------------------------------------------------------------------------
# secret_candidates: masks go up before anything is printed
# --------------------------------------------------------------------------------------------


def test_secret_candidates_cover_every_source_and_form() -> None:
    env = {"INPUT_API-KEY": f"{KEY}-a\n", "INPUT_API_KEY": f"{KEY}-b", "STREAMPIXEL_API_KEY":
           f" {KEY}-c ", "INPUT_GITHUB-TOKEN": TOKEN, "INPUT_USER-ID": "not-a-secret",
           "STREAMPIXEL_LEDGER": "redis://:RedisPassw0rd@127.0.0.1:6379/0"}
    found = secret_candidates({"api-key": f"{KEY}-d", "github-token": None}, env)
    for value in (f"{KEY}-a\n", f"{KEY}-a", f"{KEY}-b", f" {KEY}-c ", f"{KEY}-c", f"{KEY}-d",
                  TOKEN, "RedisPassw0rd"):
        assert value in found
    assert "not-a-secret" not in found
    assert "" not in found
    multi = secret_candidates({}, {"INPUT_API-KEY": "firstline1234\nsecondline5678"})
    assert {"firstline1234", "secondline5678"} <= set(multi)


# --------------------------------------------------------------------------------------------
# The event payload (repository_dispatch with a Streampixel webhook body)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    return tmp_path / "event.json"


def dispatch_env(path: Path, payload: Any, *, ids: bool = False, raw: str | None = None
                 ) -> dict[str, str]:
    path.write_text(raw if raw is not None else json.dumps(
        {"action": "streampixel", "client_payload": payload}))
    env = base_env(GITHUB_EVENT_PATH=str(path), GITHUB_EVENT_NAME="repository_dispatch",
                   GITHUB_ACTIONS="true")
    if not ids:
        del env["STREAMPIXEL_PROJECT_ID"], env["STREAMPIXEL_UPLOAD_ID"]
    return env


def webhook(event: str = "build.approved", **fields: Any) -> dict[str, Any]:
    body = {"event": event, "projectId": OTHER, "uploadId": UPLOAD,
            "fileUrl": "https://bucket.s3.amazonaws.com/b.zip", "status": "Approved",
            "objection": None, "timestamp": "2026-04-21T11:30:00.000Z"}
    body.update(fields)
    return body


def test_approved_payload_fills_the_ids(event_file: Path) -> None:
    s = load_settings({}, dispatch_env(event_file, webhook()))
    assert (s.target.project_id, s.target.upload_id) == (OTHER, UPLOAD)
    assert s.sources["project-id"] == s.sources["upload-id"] == "event"
    assert any("build.approved" in w for w in s.warnings)


def test_given_ids_win_over_the_payload(event_file: Path) -> None:
    env = dispatch_env(event_file, webhook())
    env["INPUT_UPLOAD-ID"] = OTHER
    s = load_settings({}, env)
    assert (s.target.project_id, s.target.upload_id) == (OTHER, OTHER)
    assert (s.sources["project-id"], s.sources["upload-id"]) == ("event", "INPUT_UPLOAD-ID")


def test_rejected_payload_fails_with_the_objection(event_file: Path) -> None:
    env = dispatch_env(event_file, webhook("build.rejected", status="Reject",
                                           objection="Missing .exe in the zip"))
    with pytest.raises(NotReady) as caught:
        load_settings({}, env)
    exc = caught.value
    assert "Missing .exe in the zip" in str(exc)
    assert UPLOAD in str(exc)
    assert exc.hint and exc.exit_code == 4
    secrets_absent(exc)


def test_rejected_payload_matters_only_for_its_own_build(event_file: Path) -> None:
    payload = webhook("build.rejected", objection="bad build")
    env = dispatch_env(event_file, payload, ids=True)
    env["STREAMPIXEL_UPLOAD_ID"] = OTHER  # e.g. a rollback to an older build
    assert load_settings({}, env).target.upload_id == OTHER
    env["STREAMPIXEL_UPLOAD_ID"] = UPLOAD.upper()  # the rejected build itself
    with pytest.raises(NotReady):
        load_settings({}, env)


def test_rejected_objection_is_one_line_scrubbed_and_short(event_file: Path) -> None:
    objection = f"bad\n::add-mask::x\r\n\x1b[31m {KEY} " + "y" * 5000
    env = dispatch_env(event_file, webhook("build.rejected", objection=objection))
    env["STREAMPIXEL_API_KEY"] = KEY
    with pytest.raises(NotReady) as caught:
        load_settings({}, env)
    text = str(caught.value)
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert "bad ::add-mask::x" in text
    assert len(text) < 500
    secrets_absent(caught.value)


@pytest.mark.parametrize(("upload", "expect"), [
    (12345, "not a string"), ({"$gt": ""}, "not a string"), (None, "empty"),
    (["a"], "not a string"), ("", "empty"),
])
def test_hostile_payload_values_are_not_taken(event_file: Path, upload: Any, expect: str
                                              ) -> None:
    env = dispatch_env(event_file, webhook(uploadId=upload))
    found = only_problem({}, env, "upload-id")
    assert expect in found.message


@pytest.mark.parametrize("upload", ["../../etc/passwd", "665a2b3c 4d5e6f7a8b9c0e1f",
                                    "a" * 100_000, "<script>alert(1)</script>",
                                    "665a2b3c4d5e6f7a8b9c0e1f\n::set-output name=x::y",
                                    "\ud800" * 30])
def test_hostile_payload_ids_are_validated_like_inputs(event_file: Path, upload: str) -> None:
    env = dispatch_env(event_file, webhook(uploadId=upload))
    found = only_problem({}, env, "upload-id")
    assert "repository_dispatch payload" in found.fix
    assert len(str(found)) < 600
    assert "\n" not in str(found)
    str(found).encode("utf-8")  # printable: no lone surrogates survive


def test_hostile_event_name_is_not_echoed(event_file: Path) -> None:
    env = dispatch_env(event_file, webhook(event="<img src=x>", uploadId=None))
    found = only_problem({}, env, "upload-id")
    assert "<img" not in str(found)
    assert "unrecognised event" in found.message


@pytest.mark.parametrize("raw", ["", "{not json", "[1, 2]", "[" * 100_000, "\xff\xfe",
                                 json.dumps({"client_payload": "x"}),
                                 json.dumps({"client_payload": {"foo": 1}}),
                                 json.dumps({"client_payload": {"event": 5, "uploadId": UPLOAD}})])
def test_unusable_event_files_do_not_fail_a_run_that_needs_no_payload(event_file: Path,
                                                                      raw: str) -> None:
    env = dispatch_env(event_file, None, ids=True, raw=raw)
    assert load_settings({}, env).target.upload_id == UPLOAD
    del env["STREAMPIXEL_UPLOAD_ID"]
    found = only_problem({}, env, "upload-id")
    assert "payload" in found.message


def test_an_oversized_event_file_is_not_read(event_file: Path) -> None:
    """Past 16 MiB the payload is not parsed at all (bounded memory), even when it would have
    held a usable webhook body."""
    body = {"action": "streampixel", "client_payload": webhook(), "pad": "x" * (16 << 20)}
    env = dispatch_env(event_file, None, raw=json.dumps(body))
    found = problems({}, env)
    assert set(found) == {"project-id", "upload-id"}, found
    assert all("the event payload file is too large to read" in problem.message
               for problem in found.values())


def test_ids_from_a_webhook_are_checked_like_inputs() -> None:
    account = load_settings({}, base_env()).account
    assert target_for(account, project_id=f" {OTHER.upper()} ", upload_id=UPLOAD) == Target(
        project_id=OTHER, upload_id=UPLOAD)
    with pytest.raises(InvalidInput) as caught:
        target_for(account, project_id="your-project-id", upload_id="665a2b3c")
    assert caught.value.title == "Unusable ids in the webhook"
    assert [p.input for p in caught.value.problems] == ["project-id", "upload-id"]
    assert "placeholder" in caught.value.problems[0].message


def test_missing_event_file_does_not_fail_the_run(tmp_path: Path) -> None:
    env = base_env(GITHUB_EVENT_PATH=str(tmp_path / "nope.json"))
    assert load_settings({}, env).target.project_id == PROJECT
    env["GITHUB_EVENT_PATH"] = str(tmp_path)  # a directory
    assert load_settings({}, env).target.project_id == PROJECT


def test_payload_ids_are_lower_cased_like_inputs(event_file: Path) -> None:
    s = load_settings({}, dispatch_env(event_file, webhook(projectId=OTHER.upper())))
    assert s.target.project_id == OTHER




# --------------------------------------------------------------------------------------------
# Properties: any text, anywhere
# --------------------------------------------------------------------------------------------

MARK = "Zq9Kx7WvMARK"
ALL_NAMES = [spec.name for spec in inputs_of(Command.DISTRIBUTE)]
PLACES = ["flag", "INPUT_hyphen", "INPUT_underscore"]
interesting = st.one_of(
    st.text(),
    st.text(alphabet="0123456789abcdefABCDEF \n\"'<>[]{}$%.:/smh-_xX", max_size=40),
    st.sampled_from(["true", "FALSE", "120", "15m", "1h", "0", "10", "none", "auto", "github",
                     "file:///tmp/x.json", "https://h.test", "http://127.0.0.1:1/", OTHER,
                     OTHER.upper(), "${{ secrets.X }}", "redis://:pw@h/0", "http://[::1"]),
)


def place(name: str, value: str, where: str) -> tuple[Flags, dict[str, str]]:
    env = base_env()
    if where == "flag":
        return {name: value}, env
    upper = name.upper()
    env[f"INPUT_{upper}" if where == "INPUT_hyphen" else f"INPUT_{upper.replace('-', '_')}"] = (
        value)
    return {}, env


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(ALL_NAMES), value=interesting, where=st.sampled_from(PLACES))
def test_any_text_for_any_input_loads_or_names_that_input(name: str, value: str,
                                                          where: str) -> None:
    flags, env = place(name, value, where)
    outcome = attempt(flags, env)
    if isinstance(outcome, Job):
        assert outcome.sources[name] in ("flag", f"INPUT_{name.upper()}",
                                         f"INPUT_{name.upper().replace('-', '_')}", "default",
                                         SPECS[name].env_name)
        assert KEY not in repr(outcome)
    else:
        assert isinstance(outcome, InvalidInput)
        assert {p.input for p in outcome.problems} == {name}
        secrets_absent(outcome)
        assert all(p.fix for p in outcome.problems)
        assert "\n" not in str(outcome) and "\r" not in str(outcome)


@settings(max_examples=200, deadline=None)
@given(before=st.text(max_size=20), after=st.text(max_size=20), where=st.sampled_from(PLACES),
       name=st.sampled_from(["api-key", "github-token"]))
def test_a_secret_is_never_echoed_whatever_it_looks_like(before: str, after: str, where: str,
                                                          name: str) -> None:
    secret = before + MARK + after
    flags, env = place(name, secret, where)
    # A second bad input makes sure echoing other values cannot leak it either.
    flags["ledger"] = f"nope://{secret}"
    try:
        load_settings(flags, env)
    except InvalidInput as exc:
        secrets_absent(exc, MARK)
    else:
        pytest.fail("the ledger is invalid")
    assert MARK in "".join(secret_candidates(flags, env))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    event=st.one_of(st.sampled_from(["build.approved", "build.rejected", "webhook.test"]),
                    json_values),
    project=st.one_of(st.just(OTHER), json_values),
    upload=st.one_of(st.just(UPLOAD), json_values),
    objection=json_values,
    ids_given=st.booleans(),
)
def test_any_payload_loads_or_fails_cleanly(event: Any, project: Any, upload: Any,
                                            objection: Any, ids_given: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "event.json"
        payload = {"event": event, "projectId": project, "uploadId": upload,
                   "objection": objection}
        env = dispatch_env(path, payload, ids=ids_given)
        outcome = attempt({}, env)
    if isinstance(outcome, Job):
        assert len(outcome.target.project_id) <= 128 and len(outcome.target.upload_id) <= 128
        return
    secrets_absent(outcome)
    str(outcome).encode("utf-8")  # no lone surrogates reach a log
    assert "\n" not in str(outcome)
    if isinstance(outcome, NotReady):
        assert event == "build.rejected"
    else:
        assert {p.input for p in outcome.problems} <= {"project-id", "upload-id"}
        assert not ids_given


# --------------------------------------------------------------------------------------------
# Exact wording: what each problem says and which fix it gives, where it came from
# --------------------------------------------------------------------------------------------

Reported = tuple[str, str, str]  # (input, message, fix)


def reported(flags: Flags, environ: Mapping[str, str],
             command: Command = Command.DISTRIBUTE) -> list[Reported]:
    with pytest.raises(InvalidInput) as caught:
        load(command, flags, environ)
    return [(p.input, p.message, p.fix) for p in caught.value.problems]


CORRECT_FLAG = " Correct the `--{}` argument."
IN_WORKFLOW = (" Correct the `{}` input in the workflow (or the secret it reads, usually "
               "`STREAMPIXEL_{}`).")
EXPRESSION_FIX = ("The value is the literal text `${{ … }}`: GitHub did not evaluate it (it only "
                  "expands expressions in workflow YAML, not in files, and not inside a secret's "
                  "value). Pass it through `with:` or `env:` in the workflow.")
VARIABLE_FIX = ("The value is an unexpanded variable reference: the shell or CI system did not "
                "substitute it. Use double quotes in the shell (`\"$VAR\"`) or set the value "
                "directly.")
UNQUOTE = "Remove the quotes or brackets around the value."
ONE_LINE = ("Give only the {}, on one line without spaces; whitespace around it is trimmed, "
            "whitespace inside is not.")
RECOPY = "Copy the value again from its source, or type it; remove the invisible character."
NOT_HEX = ("Copy the {} again; if your ids really have another format, set `strict-ids: "
           "false`.")


@pytest.mark.parametrize(("flags", "extra", "expect"), [
    pytest.param({}, {"INPUT_API-KEY": "your-api-key"}, (
        "api-key", "looks like a placeholder, not a real API key.",
        "Put the real API key there." + IN_WORKFLOW.format("api-key", "API_KEY")),
        id="placeholder-key-from-INPUT"),
    pytest.param({"user-id": "your-user-id"}, {}, (
        "user-id", "looks like a placeholder, not a real user id: 'your…r-id'.",
        "Put the real user id there." + CORRECT_FLAG.format("user-id")),
        id="placeholder-user-id-shortened"),
    pytest.param({}, {"STREAMPIXEL_PROJECT_ID": "<project-id>"}, (
        "project-id", "looks like a placeholder, not a real project id: '<project-id>'.",
        "Put the real project id there. Correct the `STREAMPIXEL_PROJECT_ID` variable or "
        "secret."), id="placeholder-project-from-env"),
    pytest.param({"upload-id": "[UPLOAD_ID]"}, {}, (
        "upload-id", "looks like a placeholder, not a real upload id: '[UPLOAD_ID]'.",
        "Put the real upload id there." + CORRECT_FLAG.format("upload-id")),
        id="placeholder-upload-id"),
    pytest.param({"github-token": "${{ secrets.GH }}"}, {}, (
        "github-token", "looks like a placeholder, not a real token.", EXPRESSION_FIX),
        id="expression-token"),
    pytest.param({}, {"INPUT_API_KEY": "${{ secrets.KEY }}"}, (
        "api-key", "looks like a placeholder, not a real API key.", EXPRESSION_FIX),
        id="expression-key"),
    pytest.param({}, {"STREAMPIXEL_USER_ID": "$USER_ID"}, (
        "user-id", "looks like a placeholder, not a real user id: '$USER_ID'.", VARIABLE_FIX),
        id="variable-user-id"),
    pytest.param({"api-url": "${{ vars.API_URL }}"}, {}, (
        "api-url", "looks like a placeholder, not a real api-url: '${{ vars.API_URL }}'.",
        EXPRESSION_FIX), id="expression-api-url"),
    pytest.param({"api-key": KEY[:4] + "\xa0" + KEY[4:]}, {}, (
        "api-key", "contains an invisible or control character (U+00A0).",
        RECOPY + CORRECT_FLAG.format("api-key")), id="control-in-key"),
    pytest.param({"user-id": USER[:4] + "\x00" + USER[4:]}, {}, (
        "user-id", "contains an invisible or control character (U+0000): '663d…8d9e'.",
        RECOPY + CORRECT_FLAG.format("user-id")), id="control-in-user-id"),
    pytest.param({"api-url": "https://h.test/x\u200b"}, {}, (
        "api-url", "contains an invisible or control character (U+200B): "
        "'https://h.test/x\\u200b'.", RECOPY + CORRECT_FLAG.format("api-url")),
        id="control-in-api-url"),
    pytest.param({"upload-id": UPLOAD[:4] + " " + UPLOAD[4:]}, {}, (
        "upload-id", "contains a space inside the value: '665a 2b3c4d5e6f7a8b9c0e1f'.",
        ONE_LINE.format("upload id") + CORRECT_FLAG.format("upload-id")), id="space-in-id"),
    pytest.param({"project-id": PROJECT[:4] + "\r" + PROJECT[4:]}, {}, (
        "project-id", "contains a line break inside the value: '6794\\r4b8a3f323be4b89a2272'.",
        ONE_LINE.format("project id") + CORRECT_FLAG.format("project-id")),
        id="carriage-return-in-id"),
    pytest.param({"github-token": TOKEN[:4] + "\t" + TOKEN[4:]}, {}, (
        "github-token", "contains a space inside the value.",
        ONE_LINE.format("token") + CORRECT_FLAG.format("github-token")), id="tab-in-token"),
    pytest.param({"api-key": f"'{KEY}'"}, {}, (
        "api-key", "is wrapped in quotes or brackets.", UNQUOTE + CORRECT_FLAG.format("api-key")),
        id="quoted-key"),
    pytest.param({"upload-id": f"({UPLOAD})"}, {}, (
        "upload-id", f"is wrapped in quotes or brackets: '({UPLOAD})'.",
        f"{UNQUOTE} Use '{UPLOAD}'." + CORRECT_FLAG.format("upload-id")), id="quoted-id"),
    pytest.param({"upload-id": f"{UPLOAD}\u201d"}, {}, (
        "upload-id", f"is wrapped in quotes or brackets: '{UPLOAD}\u201d'.",
        f"{UNQUOTE} Use '{UPLOAD}'." + CORRECT_FLAG.format("upload-id")),
        id="closing-quote-only"),
    pytest.param({"user-id": f"`{USER}`"}, {}, (
        "user-id", "is wrapped in quotes or brackets: '\\`663…d9e\\`'.",
        f"{UNQUOTE} Use '663d…8d9e'." + CORRECT_FLAG.format("user-id")), id="quoted-user-id"),
    pytest.param({"project-id": "''"}, {}, (
        "project-id", "is wrapped in quotes or brackets: '\\'\\''.",
        UNQUOTE + CORRECT_FLAG.format("project-id")), id="quotes-around-nothing"),
    pytest.param({"api-url": "'https://h.test/api'"}, {}, (
        "api-url", "is wrapped in quotes or brackets: '\\'https://h.test/api\\''.",
        UNQUOTE + CORRECT_FLAG.format("api-url")), id="quoted-api-url"),
    pytest.param({"api-key": "abcdefg"}, {}, (
        "api-key", "is only 7 characters long; an API key is longer.",
        "Copy the whole key." + CORRECT_FLAG.format("api-key")), id="key-7-characters"),
    pytest.param({"api-key": "k" * 1024 + "q"}, {}, (
        "api-key", "is 1025 characters long, more than any key.",
        "Give only the key." + CORRECT_FLAG.format("api-key")), id="key-1025-characters"),
    pytest.param({"github-token": "t" * 1024 + "q"}, {}, (
        "github-token", "is 1025 characters long, more than any key.",
        "Give only the key." + CORRECT_FLAG.format("github-token")), id="token-1025-characters"),
    pytest.param({"project-id": "a" * 256 + "b"}, {}, (
        "project-id", f"is longer than 256 characters: '{'a' * 48}…'.",
        "Give only the project id." + CORRECT_FLAG.format("project-id")), id="id-257-characters"),
    pytest.param({"project-id": "p1" * 64 + "x", "strict-ids": "false"}, {}, (
        "project-id", "is 129 characters long (at most 128).",
        "Give only the project id." + CORRECT_FLAG.format("project-id")),
        id="loose-id-129-characters"),
    pytest.param({"user-id": "www.example.test/" + USER}, {}, (
        "user-id", "is a URL, not an id: 'www.…8d9e'.",
        "Use the id from that URL: `user-id: 663d…8d9e`." + CORRECT_FLAG.format("user-id")),
        id="www-in-user-id"),
    pytest.param({"upload-id": "API.example.test/x"}, {}, (
        "upload-id", "is a URL, not an id: 'API.example.test/x'.",
        "Give only the upload id, not a URL." + CORRECT_FLAG.format("upload-id")),
        id="api-host-in-upload-id"),
    pytest.param({"upload-id": "Dashboard.streampixel.io/projectdetail/" + PROJECT}, {}, (
        "upload-id", "is a URL, not an id: 'Dashboard.streampixel.io/projectdetail/67944b8a3…'.",
        f"That is a project's dashboard URL: its id `{PROJECT}` belongs in `project-id`; put the "
        "upload id here." + CORRECT_FLAG.format("upload-id")), id="dashboard-in-upload-id"),
    pytest.param({"project-id": "https://dashboard.streampixel.io/ProjectDetail/"
                  + OTHER.upper() + "/" + PROJECT}, {}, (
        "project-id", "is a URL, not an id: 'https://dashboard.streampixel.io/ProjectDetail/0…'.",
        f"Use the id from that URL: `project-id: {PROJECT}`." + CORRECT_FLAG.format("project-id")),
        id="dashboard-in-project-id-takes-the-last-id"),
    pytest.param({"user-id": "https://x.test/u/" + USER.upper()}, {}, (
        "user-id", "is a URL, not an id: 'https://x.test/u/663D…8D9E'.",
        "Use the id from that URL: `user-id: 663d…8d9e`." + CORRECT_FLAG.format("user-id")),
        id="url-in-user-id"),
    pytest.param({"upload-id": UPLOAD[:-1]}, {}, (
        "upload-id", "is not 24 hexadecimal characters (it has 23 hex characters; a character "
        f"was lost or added): '{UPLOAD[:-1]}'.",
        NOT_HEX.format("upload id") + CORRECT_FLAG.format("upload-id")), id="23-hex"),
    pytest.param({"upload-id": "g" + UPLOAD[1:]}, {}, (
        "upload-id", f"is not 24 hexadecimal characters: 'g{UPLOAD[1:]}'.",
        NOT_HEX.format("upload id") + CORRECT_FLAG.format("upload-id")), id="not-hex"),
    pytest.param({}, {"INPUT_GITHUB-TOKEN": KEY}, (
        "api-key", "has the same value as `github-token`; two secrets are probably mixed up.",
        "Check that `api-key` gets the API key and `github-token` gets the token. Correct the "
        "`STREAMPIXEL_API_KEY` variable or secret."), id="key-is-the-token"),
    pytest.param({"project-id": KEY.upper(), "strict-ids": "false"}, {}, (
        "api-key", "has the same value as `project-id`; two secrets are probably mixed up.",
        "Check that `api-key` gets the API key and `project-id` gets the project id. Correct the "
        "`STREAMPIXEL_API_KEY` variable or secret."), id="key-is-the-project-id-in-capitals"),
    pytest.param({"upload-id": KEY, "strict-ids": "false"}, {}, (
        "api-key", "has the same value as `upload-id`; two secrets are probably mixed up.",
        "Check that `api-key` gets the API key and `upload-id` gets the upload id. Correct the "
        "`STREAMPIXEL_API_KEY` variable or secret."), id="key-is-the-upload-id"),
    pytest.param({"user-id": KEY, "strict-ids": "false"}, {}, (
        "api-key", "has the same value as `user-id`; two secrets are probably mixed up.",
        "Check that `api-key` gets the API key and `user-id` gets the user id. Correct the "
        "`STREAMPIXEL_API_KEY` variable or secret."), id="key-is-the-user-id"),
])
def test_each_problem_has_its_exact_message_and_fix(flags: Flags, extra: dict[str, str],
                                                    expect: Reported) -> None:
    assert reported(flags, base_env(**extra)) == [expect]


USE_BASE = f"Use the base URL, e.g. `{DEFAULT_API_URL}`."
ONLY_LOOPBACK = "Use https:// (plain http is allowed only for localhost, 127.0.0.0/8 and ::1)."


@pytest.mark.parametrize(("url", "message", "fix"), [
    ("https://u:p@h.test/api", "contains a user name or password (`…@host`); the API takes the "
     "key in the request body, not in the URL.", "Remove the `user:password@` part and pass the "
     "key as `api-key`. (An `@` that belongs to the path is written `%40`.)"),
    ("https://h.test:99999/api", "is not a valid URL: 'https://h.test:99999/api'.", USE_BASE),
    ("https://h.test:port/api", "is not a valid URL: 'https://h.test:port/api'.", USE_BASE),
    ("ftp://h.test/api", "must be an http(s) URL with a host: 'ftp://h.test/api'.", USE_BASE),
    ("https:///api", "must be an http(s) URL with a host: 'https:///api'.", USE_BASE),
    ("https://h.test/api/?x=1#f", "has a query or fragment: 'https://h.test/api/?x=1#f'.",
     "Use the base URL only: 'https://h.test/api'."),
    ("https://h.test/api?", "has a query or fragment: 'https://h.test/api?'.",
     "Use the base URL only: 'https://h.test/api'."),
    ("https://h.test/api#", "has a query or fragment: 'https://h.test/api#'.",
     "Use the base URL only: 'https://h.test/api'."),
    ("https://h.test/apiX/?q=1", "has a query or fragment: 'https://h.test/apiX/?q=1'.",
     "Use the base URL only: 'https://h.test/apiX'."),
    ("http://h.test/api", "uses plain http for a non-loopback host: 'http://h.test/api'; the key "
     "would travel unencrypted.", ONLY_LOOPBACK),
    ("HTTP://h.test/api", "uses plain http for a non-loopback host: 'HTTP://h.test/api'; the key "
     "would travel unencrypted.", ONLY_LOOPBACK),
    ("https://h.test/api/Projects/Upload-File/", "includes the endpoint path "
     "`/projects/upload-file`: 'https://h.test/api/Projects/Upload-File/'.",
     "Give the base URL: 'https://h.test/api'."),
    ("https://h.test/api/projects/distribute-file", "includes the endpoint path "
     "`/projects/distribute-file`: 'https://h.test/api/projects/distribute-file'.",
     "Give the base URL: 'https://h.test/api'."),
])
def test_api_url_problems_exactly(url: str, message: str, fix: str) -> None:
    assert reported({"api-url": url}, base_env()) == [("api-url", message, fix)]


def rule(inclusive: bool, high: int) -> str:
    return f"{'at least' if inclusive else 'more than'} 0 and at most {high} seconds"


@pytest.mark.parametrize(("name", "value", "message", "fix"), [
    ("dry-run", "yes", "must be true or false, got 'yes'.",
     "Use exactly `true` or `false` (also accepted: True, TRUE, False, FALSE; yes/no/1/0 are "
     "not)."),
    ("strict-ids", "tRUE", "must be true or false, got 'tRUE'.",
     "Use exactly `true` or `false` (also accepted: True, TRUE, False, FALSE; yes/no/1/0 are "
     "not)."),
    ("rate-limit-interval", "soon", "is not a duration: 'soon'.",
     f"Use seconds (`120`) or a unit: `90s`, `15m`, `1h`; the value must be {rule(False, 3600)}."),
    ("rate-limit-interval", "3600.5", f"is 3600.5 seconds; it must be {rule(False, 3600)}.",
     "Use a value in range, e.g. `120`."),
    ("max-wait", "7h", f"is 25200 seconds; it must be {rule(True, 21600)}.",
     "Use a value in range, e.g. `900`."),
    ("max-wait", "-0", "is not a duration: '-0'.",
     f"Use seconds (`900`) or a unit: `90s`, `15m`, `1h`; the value must be {rule(True, 21600)}."),
    ("timeout", "0", f"is 0 seconds; it must be {rule(False, 600)}.",
     "Use a value in range, e.g. `30`."),
    ("timeout", "10.01m", f"is 600.6 seconds; it must be {rule(False, 600)}.",
     "Use a value in range, e.g. `30`."),
    ("timeout", "1" * 33, f"is not a duration: '{'1' * 33}'.",
     f"Use seconds (`30`) or a unit: `90s`, `15m`, `1h`; the value must be {rule(False, 600)}."),
    ("retries", "3x", "must be a whole number from 0 to 10, got '3x'.",
     "Use e.g. `3` (extra attempts after transient failures)."),
    ("retries", "010", "must be a whole number from 0 to 10, got '010'.",
     "Use e.g. `3` (extra attempts after transient failures)."),
    ("command", "publish", "must be one of distribute, upload, reserve, got 'publish'.",
     "Use `distribute` (the default), `upload` or `reserve`."),
])
def test_setting_problems_exactly(name: str, value: str, message: str, fix: str) -> None:
    assert reported({name: value}, base_env()) == [(name, message, fix)]


@pytest.mark.parametrize(("name", "value", "parsed"), [
    ("rate-limit-interval", "3600", 3600.0), ("rate-limit-interval", "0.001", 0.001),
    ("rate-limit-interval", "60M", 3600.0), ("max-wait", "21600", 21600.0),
    ("max-wait", "6H", 21600.0), ("max-wait", "0s", 0.0), ("max-wait", "2S", 2.0),
    ("timeout", "600", 600.0), ("timeout", "0" * 31 + "5", 5.0), ("retries", "10", 10),
    ("retries", "0", 0),
])
def test_settings_at_their_bounds_are_taken(name: str, value: str, parsed: float) -> None:
    account = load(Command.DISTRIBUTE, {name: value}, base_env()).account
    assert getattr(account, name.replace("-", "_")) == parsed


DIRECT_ZIP = ("Give a direct https link to the packaged build's .zip that downloads without a "
              "login page, redirect or download button: a (presigned) link to an object in S3, "
              "Google Cloud Storage, R2, DigitalOcean Spaces or your own web server.")


def upload_env() -> dict[str, str]:
    env = base_env()
    del env["STREAMPIXEL_UPLOAD_ID"]
    return env


@pytest.mark.parametrize(("url", "message", "fix"), [
    ("http://b.test/b.zip", "uses plain http (b.test); Streampixel downloads builds over https.",
     "Use the https:// form of the link."),
    ("ftp://b.test/b.zip", "is not an https:// link.", DIRECT_ZIP),
    ("https:///b.zip", "is not an https:// link.", DIRECT_ZIP),
    ("https://[::1/b.zip", "is not a valid URL.", DIRECT_ZIP),
    ("https://drive.google.com/file/d/1/b.zip",
     "is a Google Drive page (drive.google.com), not a direct download.", DIRECT_ZIP),
    ("https://www.dropbox.com/s/x/b.zip?dl=0",
     "is a Dropbox sharing (`?dl=0`) page (www.dropbox.com), not a direct download.", DIRECT_ZIP),
    ("https://dropbox.com/s/x/b.zip?dl=1",
     "is a Dropbox sharing page (dropbox.com), not a direct download.", DIRECT_ZIP),
    ("https://Example.SharePoint.com/b.zip",
     "is a SharePoint page (example.sharepoint.com), not a direct download.", DIRECT_ZIP),
    ("https://mega.nz/file/b.zip", "is a MEGA page (mega.nz), not a direct download.",
     DIRECT_ZIP),
    ("https://github.com/o/r/blob/main/b.zip",
     "is a github.com file view page (github.com), not a direct download.", DIRECT_ZIP),
    ("https://gitlab.com/o/r/-/blob/main/b.zip",
     "is a gitlab.com file view page (gitlab.com), not a direct download.", DIRECT_ZIP),
    ("https://b.test/b.tar", "does not name a .zip file (the link's path must end in .zip; host "
     "b.test).", DIRECT_ZIP),
    ("https://b.test/b.tar?name=b.zip", "does not name a .zip file (the link's path must end in "
     ".zip; host b.test).", DIRECT_ZIP),
    ("your-file-url", "is not an https:// link.", DIRECT_ZIP),  # placeholder words: ids, key
    ("'https://b.test/b.zip'", "is wrapped in quotes or brackets.", UNQUOTE),
    ("https://b.test/b\tc.zip", "contains a space inside the value.", ONE_LINE.format("file-url")),
])
def test_file_url_problems_exactly(url: str, message: str, fix: str) -> None:
    assert reported({"file-url": url}, upload_env(), Command.UPLOAD) == [
        ("file-url", message, fix + CORRECT_FLAG.format("file-url"))]


@pytest.mark.parametrize(("url", "warned"), [
    ("https://b.test/build.ZIP?X-Amz-Signature=abc", True),
    ("https://b.test/build.zip", False),
    ("http://127.0.0.1:8/b.zip", False),
    ("http://localhost/b.zip", False),
    ("https://notbox.com/b.zip", False),  # box.com's name, but another domain
    ("https://gitlab.com/o/r/-/raw/main/b.zip", False),
    ("https://dl.dropboxusercontent.com/s/x/b.zip", False),
])
def test_file_urls_taken(url: str, warned: bool) -> None:
    job = load(Command.UPLOAD, {"file-url": url}, upload_env())
    assert (job.target.file_url, job.target.auto_release) == (url, True)
    query_note = ("file-url has a query string (a presigned link?). Streampixel's docs both list "
                  "presigned S3 links as supported and say a link must have no query string; if "
                  "the upload is refused with HTTP 400, use a link without one.")
    assert job.warnings == ((query_note,) if warned else ())


@pytest.mark.parametrize(("value", "auto"), [("false", False), ("TRUE", True), ("False", False)])
def test_auto_release(value: str, auto: bool) -> None:
    job = load(Command.UPLOAD, {"file-url": "https://b.test/b.zip", "auto-release": value},
               upload_env())
    assert job.target.auto_release is auto


NO_SECRET = ("The secret is empty or not available to this workflow (pull requests from forks "
             "and Dependabot get no secrets).")


def create_secret(name: str, variable: str) -> str:
    return (f"Create the `{variable}` secret (Settings → Secrets and variables → Actions) and pass "
            f"it: `{name}: ${{{{ secrets.{variable} }}}}`; outside GitHub set `{variable}` or "
            f"pass `--{name}`.")


def test_a_missing_key_names_each_source_and_similar_names_exactly() -> None:
    env = base_env()
    del env["STREAMPIXEL_API_KEY"]
    env.update({"INPUT_API-KEY": "", "STREAMPIXEL_APIKEY": "x", "sp_api_key": "x",
                "INPUT_APIKEY": "x", "SP-APIKEY": "x", "STREAMPIXEL__API__KEY": "x",
                "STREAMPIXEL" + "_" * 60 + "APIKEY": "x", "GITHUB_ACTOR": "octocat"})
    assert reported({}, env) == [("api-key", (
        "is empty or missing. Looked at: `--api-key` (not given), `INPUT_API-KEY` (empty), "
        "`INPUT_API_KEY` (not set), `STREAMPIXEL_API_KEY` (not set). " + NO_SECRET + " Found "
        "similar names: `INPUT_APIKEY`, `SP-APIKEY`, `STREAMPIXEL_APIKEY`, "
        "`STREAMPIXEL__API__KEY`."),  # the first five names; one is too long to show
        create_secret("api-key", "STREAMPIXEL_API_KEY")
        + " Rename to exactly `STREAMPIXEL_API_KEY`.")]


@pytest.mark.parametrize(("names", "shown"), [
    (["streampixel_api_key"], ["streampixel_api_key"]),
    (["Sp-Api-Key"], ["Sp-Api-Key"]),
    (["input_api-key"], ["input_api-key"]),
    (["STREAMPIXEL_API_KEYS", "API_KEY", "STREAMPIXEL-API-KEY-"], ["STREAMPIXEL-API-KEY-"]),
    (["A" + "_" * 70 + "B"], []),
])
def test_similar_names_of_a_missing_key(names: list[str], shown: list[str]) -> None:
    env = base_env(**dict.fromkeys(names, "x"))
    del env["STREAMPIXEL_API_KEY"]
    [(_, message, fix)] = reported({}, env)
    if shown:
        assert message.endswith(f"{NO_SECRET} Found similar names: "
                                + ", ".join(f"`{n}`" for n in shown) + ".")
        assert fix.endswith("Rename to exactly `STREAMPIXEL_API_KEY`.")
    else:
        assert message.endswith(NO_SECRET)
        assert fix == create_secret("api-key", "STREAMPIXEL_API_KEY")


@pytest.mark.parametrize(("actor", "dependabot"), [
    ("dependabot[bot]", True), ("dependabot-preview[bot]", True), ("Dependabot", False),
    ("octocat", False), (None, False)])
def test_a_missing_upload_id_exactly(actor: str | None, dependabot: bool) -> None:
    env = upload_env()
    if actor is not None:
        env["GITHUB_ACTOR"] = actor
    fix = (create_secret("upload-id", "STREAMPIXEL_UPLOAD_ID") + " Or trigger the workflow by "
           "repository_dispatch with the Streampixel webhook body as `client_payload` (it carries "
           "`uploadId`).")
    if dependabot:
        fix += " Runs started by Dependabot see only Dependabot secrets: add it there too."
    assert reported({"upload-id": " "}, env) == [("upload-id", (
        "is empty or missing. Looked at: `--upload-id` (empty), `INPUT_UPLOAD-ID` (not set), "
        "`INPUT_UPLOAD_ID` (not set), `STREAMPIXEL_UPLOAD_ID` (not set), the event payload (no "
        "event payload (GITHUB_EVENT_PATH is not set)). " + NO_SECRET), fix)]


def test_a_missing_key_on_a_fork_pull_request_exactly(event_file: Path) -> None:
    event_file.write_text(json.dumps({"pull_request": {
        "head": {"repo": {"full_name": "someone/fork"}},
        "base": {"repo": {"full_name": "owner/repo"}}}}))
    env = base_env(GITHUB_EVENT_PATH=str(event_file))
    del env["STREAMPIXEL_API_KEY"], env["STREAMPIXEL_UPLOAD_ID"]
    found = {name: (message, fix) for name, message, fix in reported({}, env)}
    fork = (" This run is for a pull request from a fork, and GitHub gives such runs no secrets. "
            "Run it on push or workflow_dispatch instead.")
    assert found["api-key"][1] == create_secret("api-key", "STREAMPIXEL_API_KEY") + fork
    assert found["upload-id"][0].endswith(
        ", the event payload (the event has no repository_dispatch `client_payload`). "
        + NO_SECRET)
    assert found["upload-id"][1].endswith("(it carries `uploadId`)." + fork)


@pytest.mark.parametrize(("flags", "environ", "masked"), [
    pytest.param({"api-key": " 'Key-1234567' "}, {},
                 [" 'Key-1234567' ", "'Key-1234567'", "Key-1234567"], id="quoted-key"),
    pytest.param({"api-key": "`XKey-12345X`"}, {}, ["`XKey-12345X`", "XKey-12345X"],
                 id="only-quotes-are-taken-off"),
    pytest.param({}, {"STREAMPIXEL_GITHUB_TOKEN": "abcdefgh abcdefg\n12345678"},
                 ["abcdefgh abcdefg\n12345678", "abcdefgh", "12345678"],
                 id="pieces-of-8-characters-or-more"),
    pytest.param({}, {"INPUT_FILE-URL": "https://b.test/b.zip?X-Amz-Signature=ab%2Fcd123&s="
                                        "12345678&dl=0&e=#frag"},
                 ["https://b.test/b.zip?X-Amz-Signature=ab%2Fcd123&s=12345678&dl=0&e=#frag",
                  "X-Amz-Signature=ab%2Fcd123&s=12345678&dl=0&e=",
                  "X-Amz-Signature=ab/cd123&s=12345678&dl=0&e=", "ab/cd123", "ab%2Fcd123",
                  "12345678"], id="presigned-file-url"),
    pytest.param({"ledger": "redis://:pass%2Fword@h/0"},
                 {"INPUT_API-URL": "https://u:pw12@h.test", "INPUT_USER-ID": "a://b"},
                 ["u:pw12", "pw12", ":pass%2Fword", ":pass/word", "pass%2Fword", "pass/word"],
                 id="credentials-in-urls"),
    pytest.param({"api-key": "k?x", "user-id": "user?id=12345678"}, {}, ["k?x"],
                 id="a-query-only-in-secrets"),
    pytest.param({"file-url": "https://b.test/b.zip?sig=abcdefgh?x=1#one#two"}, {},
                 ["https://b.test/b.zip?sig=abcdefgh?x=1#one#two", "sig=abcdefgh?x=1",
                  "abcdefgh?x=1", "abcdefgh%3Fx%3D1"], id="query-from-the-first-?-to-the-first-#"),
])
def test_secret_candidates_exactly(flags: Flags, environ: dict[str, str],
                                   masked: list[str]) -> None:
    assert secret_candidates(flags, environ) == masked


UPLOAD_ID_FIX = (create_secret("upload-id", "STREAMPIXEL_UPLOAD_ID") + " Or trigger the workflow "
                 "by repository_dispatch with the Streampixel webhook body as `client_payload` "
                 "(it carries `uploadId`).")
LOOKED_FOR_UPLOAD_ID = ("is empty or missing. Looked at: `--upload-id` (not given), "
                        "`INPUT_UPLOAD-ID` (not set), `INPUT_UPLOAD_ID` (not set), "
                        "`STREAMPIXEL_UPLOAD_ID` (not set), ")
NOT_A_WEBHOOK = ("the event payload (the repository_dispatch `client_payload` is not a Streampixel "
                 "webhook body (`event`, `projectId`, `uploadId`))")


@pytest.mark.parametrize(("raw", "why"), [
    pytest.param(b"{not json", "the event payload (the event payload file (GITHUB_EVENT_PATH) "
                 "could not be read as JSON)", id="not-json"),
    pytest.param(b"[1]", "the event payload (the event payload is not a JSON object)",
                 id="not-an-object"),
    pytest.param(json.dumps({"pull_request": {"head": {"repo": {"full_name": "a/b"}}}}).encode(),
                 "the event payload (the event has no repository_dispatch `client_payload`)",
                 id="no-client-payload-and-no-base-repo"),
    pytest.param(json.dumps({"pull_request": {"head": {"repo": {"full_name": "a/b"}}, "base": {
        "repo": {"full_name": "a/b"}}}}).encode(),
                 "the event payload (the event has no repository_dispatch `client_payload`)",
                 id="pull-request-from-the-same-repository"),
    pytest.param(json.dumps({"pull_request": {"head": {"repo": {"full_name": 7}}, "base": {
        "repo": {"full_name": 8}}}}).encode(),
                 "the event payload (the event has no repository_dispatch `client_payload`)",
                 id="pull-request-names-not-strings"),
    pytest.param(json.dumps({"client_payload": {"event": "build.approved", "other": 1}}).encode(),
                 NOT_A_WEBHOOK, id="no-id-fields"),
    pytest.param(json.dumps({"client_payload": {"projectId": OTHER, "uploadId": UPLOAD}}).encode(),
                 NOT_A_WEBHOOK, id="no-event-field"),
    pytest.param(json.dumps({"client_payload": {"event": "build.approved",
                                                "projectId": OTHER}}).encode(),
                 "the build.approved payload (the payload's `uploadId` is empty)",
                 id="only-a-project-id"),
    pytest.param(json.dumps({"client_payload": {"event": "Build Approved",
                                                "uploadId": 5}}).encode(),
                 "the unrecognised event payload (the payload's `uploadId` is not a string)",
                 id="unrecognised-event-name-and-a-number"),
])
def test_why_the_event_payload_gave_no_upload_id(event_file: Path, raw: bytes, why: str) -> None:
    event_file.write_bytes(raw)
    env = base_env(GITHUB_EVENT_PATH=str(event_file))
    del env["STREAMPIXEL_UPLOAD_ID"]
    assert reported({}, env) == [("upload-id", f"{LOOKED_FOR_UPLOAD_ID}{why}. {NO_SECRET}",
                                  UPLOAD_ID_FIX)]


def test_an_event_file_of_exactly_the_cap_is_read(event_file: Path) -> None:
    body = json.dumps({"client_payload": webhook(), "pad": ""})
    cap = 16 * 1024 * 1024
    event_file.write_text(body.replace('"pad": ""', '"pad": "' + "x" * (cap - len(body)) + '"'))
    assert event_file.stat().st_size == cap
    env = dispatch_env(event_file, None, raw=event_file.read_text())
    assert load_settings({}, env).target.upload_id == UPLOAD
    event_file.write_text(event_file.read_text() + " ")  # one byte over
    assert reported({}, env) == [
        (name, (f"is empty or missing. Looked at: `--{name}` (not given), `INPUT_{upper}` (not "
                f"set), `INPUT_{upper.replace('-', '_')}` (not set), `STREAMPIXEL_"
                f"{upper.replace('-', '_')}` (not set), the event payload (the event payload file "
                f"is too large to read). {NO_SECRET}"),
         create_secret(name, "STREAMPIXEL_" + upper.replace("-", "_")) + " Or trigger the "
         "workflow by repository_dispatch with the Streampixel webhook body as `client_payload` "
         f"(it carries `{key}`).")
        for name, upper, key in (("project-id", "PROJECT-ID", "projectId"),
                                 ("upload-id", "UPLOAD-ID", "uploadId"))]


def test_the_cap_counts_bytes_not_characters(event_file: Path) -> None:
    """Two bytes per character: 9 Mi characters are 18 MiB, over the 16 MiB cap."""
    body = {"client_payload": webhook(), "pad": "é" * (9 << 20)}
    env = dispatch_env(event_file, None, raw=json.dumps(body, ensure_ascii=False))
    assert set(problems({}, env)) == {"project-id", "upload-id"}


def test_a_utf16_event_file_is_read(event_file: Path) -> None:
    """JSON in UTF-16 or UTF-32 is still JSON: the file is read as bytes and decoded as JSON."""
    env = dispatch_env(event_file, webhook())
    event_file.write_bytes(event_file.read_text().encode("utf-16"))
    assert load_settings({}, env).target.upload_id == UPLOAD


def test_a_payload_with_only_a_project_id_fills_it(event_file: Path) -> None:
    env = dispatch_env(event_file, {"event": "build.approved", "projectId": OTHER})
    env["STREAMPIXEL_UPLOAD_ID"] = UPLOAD
    job = load_settings({}, env)
    assert (job.target.project_id, job.target.upload_id) == (OTHER, UPLOAD)
    assert (job.sources["project-id"], job.warnings) == (
        "event", ("project-id taken from the build.approved webhook payload",))
    assert job.webhook is not None and job.webhook_supplied


def test_ids_from_a_webhook_delivery_say_where_they_came_from() -> None:
    account = load_settings({}, base_env()).account
    with pytest.raises(InvalidInput) as caught:
        target_for(account, project_id="xyz", upload_id=" <upload-id> ")
    came_from = (" (This value came from the repository_dispatch payload's `{}`; fix the sender or "
                 "give `{}` explicitly.)")
    assert [(p.input, p.message, p.fix) for p in caught.value.problems] == [
        ("project-id", "is not 24 hexadecimal characters: 'xyz'.",
         NOT_HEX.format("project id") + came_from.format("projectId", "project-id")),
        ("upload-id", "looks like a placeholder, not a real upload id: '<upload-id>'.",
         "Put the real upload id there." + came_from.format("uploadId", "upload-id"))]


@pytest.mark.parametrize(("value", "fix"), [
    *((v, "Put the real project id there.") for v in (
        "'<your-project-id>'", "[ 'todo' ]", "XXX", "***", "...", "…", "___", "---", "0", "yourid",
        "Your_Project", "abc...def", "ab…cd", "<enter-token>", "<Paste It Here>", "[MY_PROJECT]",
        "{MY_PROJECT_2}", "<MY_PROJECT>", "zzzzzzzz", "ZzZzZzZz", "'zzzzzzzz'")),
    *((v, EXPRESSION_FIX) for v in ("${{ secrets.PROJECT }}", "'${{ vars.P }}'")),
    *((v, VARIABLE_FIX) for v in ("$PROJECT_ID", "${PROJECT_ID}", "%Project_Id%", "$env:PROJECT",
                                  "$Env:project")),
    *((v, NOT_HEX.format("project id")) for v in (
        "xx", "your1", "MY_PROJECT", "zzzzzzz", "zzzzzzzy", "$project",
        "%PROJECT", "$env:", "a.b.c", "${1", "x$PROJECT_ID", "X_PROJECT")),
    *((v, UNQUOTE) for v in ("(MY_PROJECT)", "<this>")),
])
def test_what_counts_as_a_placeholder_id(value: str, fix: str) -> None:
    [(name, message, got)] = reported({"project-id": value}, base_env())
    assert name == "project-id"
    if fix.startswith(("Copy the", UNQUOTE)):
        assert not message.startswith("looks like a placeholder")
        assert got.startswith(fix)
    else:
        assert message.startswith("looks like a placeholder, not a real project id: '")
        assert got == (fix + CORRECT_FLAG.format("project-id") if fix.startswith("Put") else fix)


@pytest.mark.parametrize(("name", "value", "placeholder"), [
    ("api-key", "your-key-goes-here", True), ("github-token", "your-token-here", False),
    ("api-url", "https://your.host/api", False), ("ledger", "none", False),
    ("github-token", "${{ github.token }}", True), ("ledger", "$LEDGER", True),
    ("api-url", "https://h.test/...", False),
])
def test_placeholder_words_count_only_for_the_key_and_ids(name: str, value: str,
                                                          placeholder: bool) -> None:
    outcome = attempt({name: value}, base_env())
    if placeholder:
        assert isinstance(outcome, InvalidInput)
        assert outcome.problems[0].message.startswith("looks like a placeholder")
    else:
        assert isinstance(outcome, Job)


def test_what_each_command_takes_and_the_values_of_the_rest() -> None:
    env = base_env(STREAMPIXEL_FILE_URL="https://b.test/b.zip", STREAMPIXEL_GITHUB_TOKEN=TOKEN,
                   STREAMPIXEL_AUTO_RELEASE="false", STREAMPIXEL_DRY_RUN="true",
                   STREAMPIXEL_LEDGER="none", STREAMPIXEL_RATE_LIMIT_INTERVAL="150",
                   STREAMPIXEL_MAX_WAIT="60", STREAMPIXEL_TIMEOUT="10", STREAMPIXEL_RETRIES="5",
                   STREAMPIXEL_STRICT_IDS="False")
    del env["STREAMPIXEL_UPLOAD_ID"]
    url = DEFAULT_API_URL

    def run(command: Command, **given: str) -> tuple[tuple[Any, ...], Target, bool]:
        job = load(command, {}, dict(env, **given))
        assert job.command is command
        return tuple(job.account), job.target, job.dry_run

    everything = (KEY, USER, url, "none", TOKEN, 150.0, 60.0, 10.0, 5, False)
    assert run(Command.DISTRIBUTE, STREAMPIXEL_UPLOAD_ID=UPLOAD) == (
        everything, Target(PROJECT, UPLOAD, "", True), True)
    assert run(Command.UPLOAD) == (
        everything, Target(PROJECT, "", "https://b.test/b.zip", False), True)
    assert run(Command.RESERVE) == (
        ("", USER, url, "none", TOKEN, 150.0, 60.0, 30.0, 0, False), Target(), True)
    assert run(Command.LISTEN) == (everything, Target(), False)
    assert run(Command.QUEUE) == (
        ("", USER, url, "none", TOKEN, 150.0, 0.0, 30.0, 0, False), Target(), False)
    assert run(Command.TEST_WEBHOOK) == (
        (KEY, USER, url, "none", "", 120.0, 0.0, 10.0, 0, False), Target(PROJECT), False)


@pytest.mark.parametrize(("interval", "api_url", "warned"), [
    ("119", DEFAULT_API_URL, True), ("1.5m", "https://api.streampixel.io", True),
    ("120", DEFAULT_API_URL, False), ("119", "https://api.example.test", False),
    ("119", "https://streampixel.io", False),
])
def test_an_interval_below_the_documented_one_is_warned_about(interval: str, api_url: str,
                                                               warned: bool) -> None:
    job = load(Command.DISTRIBUTE, {"rate-limit-interval": interval, "api-url": api_url},
               base_env())
    seconds = f"{job.account.rate_limit_interval:g}"
    assert job.warnings == ((f"rate-limit-interval {seconds}s is shorter than Streampixel's "
                             "documented 120s; expect 429 responses",) if warned else ())


def test_reserve_takes_no_ids_and_no_key() -> None:
    job = load(Command.RESERVE, {}, {"STREAMPIXEL_USER_ID": USER})
    assert (job.account.api_key, job.target, job.webhook, job.webhook_supplied) == (
        "", Target(), None, False)
    assert set(job.sources) == {spec.name for spec in inputs_of(Command.RESERVE)}


def test_an_endless_event_stream_is_read_only_up_to_the_cap(tmp_path: Path) -> None:
    """A pipe says nothing about its size: the payload is read up to 16 MiB and one byte, then
    given up on, however much more the writer would send."""
    fifo = tmp_path / "event.fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def write() -> None:
        with fifo.open("wb") as pipe:
            pipe.write(b" " * ((16 << 20) + 1))
            pipe.flush()
            done.wait()  # the pipe stays open: a reader that waits for its end never returns

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    env = upload_env()
    env["GITHUB_EVENT_PATH"] = str(fifo)
    try:
        [(name, message, _)] = reported({}, env)
    finally:
        done.set()
        writer.join()
    assert name == "upload-id"
    assert "the event payload (the event payload file is too large to read)" in message


LEDGER_FORMS = "Use one of the documented ledger forms (see the README)."


@pytest.mark.parametrize(("spec", "message", "fix"), [
    ("redis://[::1/0", "is not a valid URL: 'redis://[::1/0'.", LEDGER_FORMS),
    ("git+https://u:Pw12345678@[::1/x", "is not a valid URL: 'git+https://…@[::1/x'.",
     LEDGER_FORMS),
    ("file:///a b", "contains a space inside the value: 'file:///a b'.",
     ONE_LINE.format("ledger") + CORRECT_FLAG.format("ledger")),
    ("$LEDGER", "looks like a placeholder, not a real ledger: '$LEDGER'.", VARIABLE_FIX),
    ("nope://x", "unknown ledger `nope`.", "use one of: none, auto, file:///path/ledger.json, "
     "redis://…, rediss://…, github, github://owner/repo, git+file:///path/repo.git, "
     "git+https://host/repo.git."),
])
def test_ledger_problems_exactly(spec: str, message: str, fix: str) -> None:
    assert reported({"ledger": spec}, base_env()) == [("ledger", message, fix)]


@pytest.mark.parametrize(("flags", "expect"), [
    pytest.param({"api-key": "abcd1234"}, None, id="key-of-8-characters"),
    pytest.param({"api-key": "k" * 1023 + "q"}, None, id="key-of-1024-characters"),
    pytest.param({"github-token": "abcd"}, None, id="short-token"),
    pytest.param({"github-token": "tttttttt"}, None, id="token-of-one-repeated-character"),
    pytest.param({"project-id": "p1" * 64, "strict-ids": "false"}, None, id="loose-id-of-128"),
    pytest.param({"project-id": "a" * 255 + "b"}, (
        "project-id", "is not 24 hexadecimal characters (it has 256 hex characters; a character "
        f"was lost or added): '{'a' * 48}…'.",
        NOT_HEX.format("project id") + CORRECT_FLAG.format("project-id")), id="id-of-256"),
    pytest.param({"upload-id": UPLOAD[:-1].upper()}, (
        "upload-id", "is not 24 hexadecimal characters (it has 23 hex characters; a character "
        f"was lost or added): '{UPLOAD[:-1].upper()}'.",
        NOT_HEX.format("upload id") + CORRECT_FLAG.format("upload-id")), id="23-upper-case-hex"),
    pytest.param({"project-id": "'X-42X'", "strict-ids": "false"}, (
        "project-id", "is wrapped in quotes or brackets: '\\'X-42X\\''.",
        f"{UNQUOTE} Use 'X-42X'." + CORRECT_FLAG.format("project-id")), id="quoted-loose-id"),
])
def test_lengths_at_their_limits(flags: Flags, expect: Reported | None) -> None:
    if expect is None:
        job = load(Command.DISTRIBUTE, flags, base_env())
        [(name, value)] = [(n, v) for n, v in flags.items() if n != "strict-ids"]
        assert {"api-key": job.account.api_key, "github-token": job.account.github_token,
                "project-id": job.target.project_id}[name] == value
    else:
        assert reported(flags, base_env()) == [expect]


def test_a_key_with_its_own_problem_is_not_also_called_mixed_up() -> None:
    assert reported({"api-key": "abc12", "github-token": "abc12"}, base_env()) == [
        ("api-key", "is only 5 characters long; an API key is longer.",
         "Copy the whole key." + CORRECT_FLAG.format("api-key"))]


def test_an_invalid_strict_ids_is_reported_once_and_ids_are_judged_strictly() -> None:
    assert reported({"strict-ids": "no", "project-id": "proj-42"}, base_env()) == [
        ("project-id", "is not 24 hexadecimal characters: 'proj-42'.",
         NOT_HEX.format("project id") + CORRECT_FLAG.format("project-id")),
        ("strict-ids", "must be true or false, got 'no'.",
         "Use exactly `true` or `false` (also accepted: True, TRUE, False, FALSE; yes/no/1/0 are "
         "not).")]


def test_a_missing_input_does_not_stop_the_checks_of_the_others() -> None:
    env = base_env()
    del env["STREAMPIXEL_API_KEY"]
    assert [name for name, _, _ in reported({"timeout": "x", "strict-ids": "x"}, env)] == [
        "api-key", "timeout", "strict-ids"]


def test_a_missing_project_id_for_upload_exactly() -> None:
    env = upload_env()
    del env["STREAMPIXEL_PROJECT_ID"]
    env["GITHUB_EVENT_PATH"] = "/nonexistent/event.json"  # not read: upload takes no payload
    assert reported({"file-url": "https://b.test/b.zip"}, env, Command.UPLOAD) == [(
        "project-id",
        "is empty or missing. Looked at: `--project-id` (not given), `INPUT_PROJECT-ID` (not set), "
        "`INPUT_PROJECT_ID` (not set), `STREAMPIXEL_PROJECT_ID` (not set), the event payload (not "
        f"used by this command). {NO_SECRET}",
        create_secret("project-id", "STREAMPIXEL_PROJECT_ID") + " Or trigger the workflow by "
        "repository_dispatch with the Streampixel webhook body as `client_payload` (it carries "
        "`projectId`).")]


def test_a_payload_id_after_many_blanks_is_trimmed_not_lost(event_file: Path) -> None:
    """Capping before trimming left nothing but blanks: a crash (IndexError) in the id check."""
    job = load_settings({}, dispatch_env(event_file, webhook(uploadId=" " * 1100 + UPLOAD)))
    assert (job.target.upload_id, job.sources["upload-id"]) == (UPLOAD, "event")



FORK_PR = {"pull_request": {"head": {"repo": {"full_name": "someone/fork"}},
                            "base": {"repo": {"full_name": "owner/repo"}}}}
FORK_FIX = (" This run is for a pull request from a fork, and GitHub gives such runs no secrets. "
            "Run it on push or workflow_dispatch instead.")


@pytest.mark.parametrize("client_payload", [
    pytest.param({"foo": 1}, id="not-a-webhook-body"),
    pytest.param({"event": "build.approved", "projectId": OTHER}, id="a-webhook-body"),
])
def test_a_fork_is_named_whatever_the_client_payload(event_file: Path,
                                                     client_payload: dict[str, Any]) -> None:
    event_file.write_text(json.dumps({**FORK_PR, "client_payload": client_payload}))
    env = base_env(GITHUB_EVENT_PATH=str(event_file))
    del env["STREAMPIXEL_UPLOAD_ID"]
    [(name, _, fix)] = reported({}, env)
    assert (name, fix) == ("upload-id", UPLOAD_ID_FIX + FORK_FIX)


@pytest.mark.parametrize(("body", "expect"), [
    pytest.param(webhook(), Webhook("build.approved", {"projectId": OTHER, "uploadId": UPLOAD},
                                    {}, ""), id="approved"),
    pytest.param(webhook("build.rejected", projectId=5, uploadId=f"  {UPLOAD} ",
                         objection="Missing\n.exe"),
                 Webhook("build.rejected", {"uploadId": UPLOAD},
                         {"projectId": "the payload's `projectId` is not a string"},
                         "Missing .exe"), id="rejected-with-a-number-for-a-project"),
    pytest.param(webhook("x" * 65, projectId=" ", objection=7),
                 Webhook("unrecognised event", {"uploadId": UPLOAD},
                         {"projectId": "the payload's `projectId` is empty"}, ""),
                 id="event-name-too-long-blank-project-objection-not-text"),
])
def test_what_a_webhook_body_yields(event_file: Path, body: dict[str, Any],
                                    expect: Webhook) -> None:
    env = dispatch_env(event_file, body)
    env["STREAMPIXEL_PROJECT_ID"] = PROJECT
    job = load(Command.DISTRIBUTE, {"upload-id": OTHER}, env)
    assert job.webhook == expect
    assert job.webhook_supplied is False  # both ids were given: the payload supplied none


def test_webhook_supplied_says_whether_the_payload_gave_an_id(event_file: Path) -> None:
    env = dispatch_env(event_file, webhook(), ids=True)
    assert load(Command.DISTRIBUTE, {}, env).webhook_supplied is False
    del env["STREAMPIXEL_UPLOAD_ID"]
    assert load(Command.DISTRIBUTE, {}, env).webhook_supplied is True


def test_an_overlong_payload_id_is_reported_as_too_long(event_file: Path) -> None:
    env = dispatch_env(event_file, webhook(uploadId="a" * 300))
    assert reported({}, env) == [(
        "upload-id", f"is longer than 256 characters: '{'a' * 48}…'.",
        "Give only the upload id. (This value came from the repository_dispatch payload's "
        "`uploadId`; fix the sender or give `upload-id` explicitly.)")]


def test_a_key_pasted_into_a_long_payload_id_is_still_a_mix_up(event_file: Path) -> None:
    """The payload id is read up to 257 characters (one past the cap): a 257-character key
    followed by more text is recognised in it."""
    key = "k1" * 128 + "z"
    env = dispatch_env(event_file, webhook(uploadId=key + "-and-more"))
    env["STREAMPIXEL_API_KEY"] = key
    found = reported({}, env)
    assert [name for name, _, _ in found] == ["api-key", "upload-id"]
    assert found[0][1] == "has the same value as `upload-id`; two secrets are probably mixed up."
