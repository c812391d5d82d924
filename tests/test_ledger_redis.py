"""The Redis ledger against real redis-server processes: clocks, expiry, auth, TLS, failures.

The contract itself (slots, peek, not_before…) runs in test_ledger_contract.py for `redis`,
`redis-auth` and `redis-tls`; here is what only Redis has.
"""

from __future__ import annotations

import itertools
import json
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streampixel_distribute import redact
from streampixel_distribute.errors import LedgerError
from streampixel_distribute.ledger import LedgerContext, open_ledger
from streampixel_distribute.ledger.queue import Holder
from streampixel_distribute.ledger.redis import (
    NAMESPACE,
    QUEUE_SUFFIX,
    RedisLedger,
    _time_refused,
    load_script,
)
from support.redis_server import CLOSE, REDIS_PASSWORD, RedisServer, ScriptedRedis, start_redis

INTERVAL = 60.0
TOL = 0.5  # clock conversion error bound, as registered for the contract


def new_key() -> str:
    return f"sp-test-{uuid.uuid4().hex}"


def open_redis(spec: str, now: object = time.time) -> RedisLedger:
    ledger = open_ledger(spec, LedgerContext(now=now))  # type: ignore[arg-type]
    assert isinstance(ledger, RedisLedger)
    return ledger


def assert_no_secret(error: LedgerError, *secrets: str) -> None:
    for text in (str(error), error.detail, error.hint, error.title, repr(error)):
        for secret in secrets:
            assert secret not in text
            assert urllib.parse.quote(secret, safe="") not in text


# -- clocks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("skewed_first", [False, True])
def test_runner_clock_skew_does_not_matter(redis_server: RedisServer, skewed_first: bool) -> None:
    """Two runners whose clocks differ by 30 s still get slots one interval apart in real time.

    A ledger on the callers' clocks would let the fast runner see next_free as already past and
    take a slot right on top of the slow runner's.
    """
    skew = 30.0
    honest = open_redis(redis_server.url())
    skewed = open_redis(redis_server.url(), now=lambda: time.time() + skew)
    key, interval = new_key(), 10.0  # shorter than the skew, the case a caller clock gets wrong
    order = [(skewed, skew), (honest, 0.0)] if skewed_first else [(honest, 0.0), (skewed, skew)]
    real_slots = []
    for _round in range(2):
        for ledger, offset in order:
            real_slots.append(ledger.reserve(key, interval) - offset)  # back to the real clock
    gaps = [b - a for a, b in itertools.pairwise(real_slots)]
    assert gaps == pytest.approx([interval] * 3, abs=TOL)
    honest.close()
    skewed.close()


def test_slots_are_on_the_callers_clock(redis_server: RedisServer) -> None:
    """A caller living an hour in the past gets slots an hour in the past: its own clock."""
    lag = -3600.0
    ledger = open_redis(redis_server.url(), now=lambda: time.time() + lag)
    key = new_key()
    before = time.time() + lag
    slot = ledger.reserve(key, INTERVAL)
    assert before - TOL <= slot <= time.time() + lag + TOL
    not_before = time.time() + lag + 500
    assert ledger.reserve(new_key(), INTERVAL, not_before) >= not_before
    ledger.close()


def test_time_fallback_outside_the_script(redis_server: RedisServer) -> None:
    """Where TIME is refused inside scripts, the client reads TIME first and passes it in."""
    ledger = open_redis(redis_server.url())
    ledger._time_in_script = False  # what a refusal switches to (the trigger is tested below)
    key = new_key()
    before = time.time()
    first = ledger.reserve(key, INTERVAL)
    assert before - TOL <= first <= time.time() + TOL
    assert ledger.reserve(key, INTERVAL) == pytest.approx(first + INTERVAL, abs=TOL)
    assert ledger.peek(key, INTERVAL) == pytest.approx(first + 2 * INTERVAL, abs=TOL)
    ledger.close()


@pytest.mark.parametrize(
    ("message", "refused"),
    [
        # Redis 3.2-4.x with verbatim script replication, word for word:
        ("Error running script (call to f_0123): @user_script:1: @user_script: 1: Write commands "
         "not allowed after non deterministic commands. Call redis.replicate_commands() at the "
         "start of your script in order to switch to single commands replication mode.", True),
        ("ERR unknown command 'TIME'", True),
        ("ERR command TIME not allowed in scripts", True),
        ("WRONGTYPE Operation against a key holding the wrong kind of value", False),
        ("NOPERM this user has no permissions to run the 'set' command", False),
    ],
)
def test_which_script_errors_mean_time_is_refused(message: str, refused: bool) -> None:
    assert _time_refused(message) is refused


def test_the_packaged_script_reserves_on_the_server_clock(redis_server: RedisServer) -> None:
    """The script shipped as package data, run by the real server: peek stores nothing, reserve
    stores next_free and the queue with an expiry, and both answer on the server's own clock."""
    client, key = redis_server.client(), NAMESPACE + new_key()
    keys = [key, key + QUEUE_SUFFIX]
    script = client.register_script(load_script())
    interval_us, delay_us = 60_000_000, 5_000_000

    def call(op: int, delay: int = 0, arg: str = "", at: int | str = "") -> tuple[int, int]:
        now, result, queue = script(keys=keys, args=[interval_us, delay, op, at, arg])
        assert queue == b""
        return int(now), int(result)

    server_now, slot = call(1, delay_us)
    seconds, micros = client.time()
    assert abs(seconds * 1_000_000 + micros - server_now) < 5_000_000  # the server's clock
    assert slot == server_now + delay_us
    assert client.get(key) is None and client.get(keys[1]) is None  # peek stored nothing
    by = json.dumps({"id": "0123456789ab", "cmd": "upload", "origin": "acme run 1"})
    now, first = call(0, arg=by)
    assert first == now
    assert int(client.get(key) or 0) == first + interval_us
    stored = json.loads(client.get(keys[1]) or b"{}")
    assert stored == {"v": 1, "slots": [{"at": str(first), "until": str(first + interval_us),
                                         "by": json.loads(by)}]}
    for name in keys:
        assert 0 < client.pttl(name) <= 2 * interval_us // 1000  # it expires once long past
    _, second = call(0)
    assert second == first + interval_us
    # A caller-supplied server time (managed services that refuse TIME in scripts) is used as is.
    fixed = now + 10_000_000_000
    assert call(1, at=fixed) == (fixed, fixed)


#: The script of the releases before the queue: one key, four arguments.
OLD_SCRIPT = """
local interval, min_delay, peek = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3] == "1"
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = now + min_delay
local raw = redis.call("GET", KEYS[1])
if raw then
  local next_free = tonumber(raw)
  if next_free == nil then return redis.error_reply("CORRUPT") end
  if next_free > slot then slot = next_free end
end
if not peek then
  local next_free = slot + interval
  redis.call("SET", KEYS[1], string.format("%.0f", next_free), "PX",
             math.max(1000, math.ceil((next_free - now + interval) / 1000)))
end
return {now, slot}
"""


def test_a_rolling_upgrade_works_both_ways(redis_server: RedisServer) -> None:
    """Jobs of the release before queues and of this one share an account: each reads the
    other's next_free; this one shows the older job's slot as held by a job of an older release
    and never gives back across it."""
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    old = client.register_script(OLD_SCRIPT)
    us = 1_000_000
    first = ledger.reserve(key, INTERVAL, holder=Holder("0123456789ab", "distribute"))
    _, older = (int(v) for v in old(keys=[NAMESPACE + key], args=[int(INTERVAL * us), 0, 0]))
    mine = ledger.reserve(key, INTERVAL, holder=Holder("abcdef012345", "upload"))
    assert mine == pytest.approx(first + 2 * INTERVAL, abs=0.5)  # after the older job's
    shown = ledger.queue(key, INTERVAL)
    assert [s.holder.id if s.holder else None for s in shown] == [
        "0123456789ab", None, "abcdef012345"]  # the older job's slot, held by "someone"...
    assert [s.at - first for s in shown] == pytest.approx([0, INTERVAL, 2 * INTERVAL], abs=0.5)
    _, next_old = (int(v) for v in old(keys=[NAMESPACE + key], args=[int(INTERVAL * us), 0, 0]))
    assert next_old / us == pytest.approx(older / us + 2 * INTERVAL, abs=0.5)
    # ...but an older job's reservation after ours stops our give-back from rolling back.
    assert ledger.give_back(key, "abcdef012345") == "marked"
    assert ledger.queue(key, INTERVAL)[-1].holder is None  # shown as an older release's


# -- storage --------------------------------------------------------------------------------------


def test_a_damaged_queue_costs_the_display_not_the_reservation(redis_server: RedisServer) -> None:
    """Entries of the stored queue that cannot be read are skipped, a queue that is not JSON at
    all is shown as one span held by someone unknown, and reserving goes on as before."""
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    holders = [Holder("0123456789ab", "upload"), Holder("abcdef012345", "distribute")]
    first, second = (ledger.reserve(key, INTERVAL, holder=h) for h in holders)
    queue_key = NAMESPACE + key + QUEUE_SUFFIX
    stored = json.loads(client.get(queue_key) or b"{}")
    stored["slots"] = [7, "slot", {"at": "soon", "until": "later"}, {"by": {"id": "0" * 12}},
                       *stored["slots"]]
    client.set(queue_key, json.dumps(stored), keepttl=True)
    shown = ledger.queue(key, INTERVAL)
    assert [s.holder for s in shown] == holders
    assert [s.at for s in shown] == pytest.approx([first, second], abs=TOL)
    client.set(queue_key, "{not json", keepttl=True)
    shown = ledger.queue(key, INTERVAL)
    assert [(s.holder, s.released) for s in shown] == [(None, False)]
    assert (shown[0].at, shown[0].until) == pytest.approx((second, second + INTERVAL), abs=TOL)
    assert ledger.reserve(key, INTERVAL) == pytest.approx(second + INTERVAL, abs=TOL)
    ledger.close()
    client.close()


def test_key_is_namespaced_and_expires(redis_server: RedisServer) -> None:
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    ledger.peek(key, INTERVAL)
    assert client.exists(NAMESPACE + key) == 0  # peek stores nothing
    ledger.reserve(key, INTERVAL)
    assert client.exists(NAMESPACE + key) == 1
    assert client.exists(key) == 0
    ttl = client.pttl(NAMESPACE + key)
    # next_free - now + interval = 2 intervals after the first reservation.
    assert 0 < ttl <= 2 * INTERVAL * 1000
    assert ttl > INTERVAL * 1000
    for _ in range(2):
        ledger.reserve(key, INTERVAL)
    ttl = client.pttl(NAMESPACE + key)
    assert 3 * INTERVAL * 1000 < ttl <= 4 * INTERVAL * 1000
    ledger.close()
    client.close()


def test_script_cache_flush_is_survived(redis_server: RedisServer) -> None:
    """A restarted or failed-over Redis has forgotten the script: EVALSHA -> NOSCRIPT -> reload."""
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    first = ledger.reserve(key, INTERVAL)
    client.script_flush()
    assert ledger.reserve(key, INTERVAL) == pytest.approx(first + INTERVAL, abs=TOL)
    ledger.close()
    client.close()


@pytest.mark.parametrize("damage", ["text", "hash"])
def test_something_else_under_the_key_is_reported(redis_server: RedisServer, damage: str) -> None:
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    if damage == "text":
        client.set(NAMESPACE + key, "not a number")
    else:
        client.hset(NAMESPACE + key, "field", "1")
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(key, INTERVAL)
    assert caught.value.title == "Rate-limit ledger corrupt"
    assert NAMESPACE in caught.value.hint
    ledger.close()
    client.close()


# -- credentials ----------------------------------------------------------------------------------


def test_description_has_no_credentials(redis_server_auth: RedisServer) -> None:
    url = redis_server_auth.url(db=3) + "?socket_timeout=2"
    ledger = open_redis(url)
    assert ledger.description == f"redis://127.0.0.1:{redis_server_auth.port}/3"
    user_url = f"rediss://someone:{REDIS_PASSWORD}@[::1]:6380/2?ssl_cert_reqs=none"
    assert open_redis(user_url).description == "rediss://[::1]:6380/2"


@pytest.mark.parametrize("password", ["wrong-Pw-55d1c2e7", ""])
def test_bad_or_missing_password(redis_server_auth: RedisServer, password: str) -> None:
    ledger = open_redis(redis_server_auth.url(password=password or ""))
    if not password:  # an explicit "" means "no password" to url(); make sure none is sent
        ledger = open_redis(f"redis://127.0.0.1:{redis_server_auth.port}/0")
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(new_key(), INTERVAL)
    error = caught.value
    assert error.exit_code == 7
    assert error.title == "Rate-limit ledger refused"
    assert f"127.0.0.1:{redis_server_auth.port}" in error.detail
    assert "password in the ledger URL secret" in error.hint
    assert_no_secret(error, REDIS_PASSWORD, *([password] if password else []))


def test_password_for_a_server_without_one_is_harmless(redis_server: RedisServer) -> None:
    """redis-py ignores Redis's "no password is set" answer: a leftover password still works."""
    password = "unneeded-Pw-0b9f"
    ledger = open_redis(redis_server.url(password=password))
    before = time.time()
    assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
    assert password not in ledger.description
    ledger.close()


def _user(redis_server: RedisServer, name: str, password: str) -> Iterator[tuple[str, str]]:
    """An ACL user on the open server for the length of a test."""
    client = redis_server.client()
    client.acl_setuser(name, enabled=True, passwords=[f"+{password}"], keys=["*"],
                       commands=["+@all"])
    yield name, password
    client.acl_deluser(name)
    client.close()


@pytest.fixture
def acl_user(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    """A user with special characters in its password."""
    yield from _user(redis_server, "ledger-user", "p@ss:w/rd%41 #x")


def test_percent_encoded_password_works_and_stays_hidden(
    redis_server: RedisServer, acl_user: tuple[str, str]
) -> None:
    name, password = acl_user
    url = f"redis://{name}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{redis_server.port}/0"
    ledger = open_redis(url)
    before = time.time()
    assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
    assert password not in ledger.description
    assert redact.scrub(f"x {password} y") == f"x {redact.MASK} y"  # registered for masking
    ledger.close()


@pytest.fixture
def slash_user(redis_server: RedisServer) -> Iterator[tuple[str, str]]:
    """A user whose password has a `/`."""
    yield from _user(redis_server, "slash-user", "RedisPassw0rd/Slash+Plus")


def test_an_unencoded_password_is_refused_before_parsing_and_never_shown(
    redis_server: RedisServer, slash_user: tuple[str, str]
) -> None:
    """redis-py reads `redis://:RedisPassw0rd/Slash+Plus@host/0` as host `` and port
    `RedisPassw0rd`, and its error quoted both halves of the password."""
    name, password = slash_user
    where = f"127.0.0.1:{redis_server.port}/0"
    for user in ("", name):
        with pytest.raises(LedgerError) as caught:
            open_redis(f"redis://{user}:{password}@{where}")
        error = caught.value
        assert error.exit_code == 7
        assert_no_secret(error, password, "RedisPassw0rd", "Slash+Plus")
        assert "not percent-encoded" in error.detail
        assert "`/` as `%2F`" in error.hint
        assert f":<password>@{where}" in error.hint
    ledger = open_redis(f"redis://{name}:{urllib.parse.quote(password, safe='')}@{where}")
    before = time.time()
    assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
    assert ledger.description == f"redis://{where}"
    ledger.close()


def test_missing_permissions_name_the_commands(
    redis_server: RedisServer, acl_user: tuple[str, str]
) -> None:
    name, password = acl_user
    redis_server.client().acl_setuser(name, enabled=True, commands=["-set"])
    url = f"redis://{name}:{urllib.parse.quote(password, safe='')}@127.0.0.1:{redis_server.port}/0"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert caught.value.title == "Rate-limit ledger refused"
    assert "+set" in caught.value.hint
    assert_no_secret(caught.value, password)


# -- reachability ---------------------------------------------------------------------------------


def test_server_down_fails_at_once(redis_down_url: str) -> None:
    port = urllib.parse.urlsplit(redis_down_url).port
    with pytest.raises(LedgerError) as caught:
        open_redis(redis_down_url).reserve(new_key(), INTERVAL)
    error = caught.value
    assert error.exit_code == 7
    assert f"Redis at 127.0.0.1:{port} unreachable" in error.detail
    assert "Connection refused" in error.detail
    assert "host and port" in error.hint
    assert_no_secret(error, REDIS_PASSWORD)


def test_unresolvable_host() -> None:
    with pytest.raises(LedgerError) as caught:
        # .invalid never resolves (RFC 2606); the lookup is the local resolver's, no traffic out.
        open_redis("redis://redis.nonexistent.invalid:6379/0").reserve(new_key(), INTERVAL)
    assert "unreachable" in caught.value.detail


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (kernel backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_silent_server_times_out_with_a_ledger_error(silent_port: int) -> None:
    url = f"redis://127.0.0.1:{silent_port}/0?socket_timeout=0.3&socket_connect_timeout=0.3"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert "no answer within 0.3 s" in caught.value.detail


@pytest.fixture
def full_backlog_port() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: the kernel drops further
    SYNs, so a connect there hangs (a Redis too overloaded to accept)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        queued: list[socket.socket] = []
        try:
            while len(queued) < 16:
                sock = socket.socket()
                sock.settimeout(0.2)
                try:
                    sock.connect(("127.0.0.1", port))
                except TimeoutError:
                    sock.close()
                    break
                queued.append(sock)
            else:
                pytest.fail("the listen backlog never filled up")
            yield port
        finally:
            for sock in queued:
                sock.close()


def test_a_redis_that_accepts_no_connection_times_out(full_backlog_port: int) -> None:
    url = (f"redis://:{REDIS_PASSWORD}@127.0.0.1:{full_backlog_port}/0"
           "?socket_timeout=5&socket_connect_timeout=0.3")
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert caught.value.detail == (f"Redis at 127.0.0.1:{full_backlog_port} unreachable: "
                                   "no connection within 0.3 s")
    assert "host and port" in caught.value.hint
    assert_no_secret(caught.value, REDIS_PASSWORD)


def test_a_tls_handshake_without_answer_times_out(silent_port: int) -> None:
    url = (f"rediss://127.0.0.1:{silent_port}/0"
           "?socket_timeout=5&socket_connect_timeout=0.3&ssl_cert_reqs=none")
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert "unreachable: no connection within 0.3 s" in caught.value.detail
    assert "ssl_certfile" in caught.value.hint  # a server wanting a certificate may look so
    assert "A server without TLS never answers the handshake: use redis://" in caught.value.hint


def test_tls_to_a_server_that_does_not_speak_it_fails_the_handshake(
    scripted: Callable[..., ScriptedRedis],
) -> None:
    """rediss:// to a port whose server hangs up on the TLS hello: named as a failed handshake."""
    server = scripted([b"+OK\r\n"])
    url = f"rediss://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0?ssl_cert_reqs=none"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert caught.value.detail.startswith(
        f"Redis at 127.0.0.1:{server.port} unreachable: TLS handshake failed: ")
    assert "host and port" in caught.value.hint
    assert server.commands == [[]]  # the hello is no command: nothing was run
    assert_no_secret(caught.value, REDIS_PASSWORD)


def test_default_timeouts_are_short() -> None:
    """Without URL options an unreachable Redis costs seconds, not the OS's minutes."""
    endpoint = open_redis("redis://127.0.0.1:6379/0").endpoint
    assert 0 < endpoint.connect_timeout <= 5
    assert 0 < endpoint.socket_timeout <= 5
    endpoint = open_redis("redis://127.0.0.1:6379/0?socket_timeout=0.5&socket_connect_timeout=2"
                          ).endpoint
    assert (endpoint.socket_timeout, endpoint.connect_timeout) == (0.5, 2)


# -- URLs, TLS, no client library ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hint_part"),
    [
        ("redis://127.0.0.1:notaport/0", "redis://[:password@]host:port/db"),
        ("redis://127.0.0.1:6379/0?no_such_option=1", "Remove it"),
        ("redis://127.0.0.1:6379/0?max_connections=5", "socket_timeout, socket_connect_timeout"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "?socket_timeout=5"),
        ("redis://127.0.0.1:6379/0?socket_connect_timeout=0", "?socket_connect_timeout=5"),
        ("redis://127.0.0.1:6379/0?socket_timeout=1&socket_timeout=2", "Keep one"),
        ("redis://127.0.0.1:6379/0?ssl_ca_certs=/ca.pem", "Use rediss://"),
        ("redis://127.0.0.1:6379/zero", "/0, /1"),
        ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=maybe", "optional or none"),
        ("rediss://127.0.0.1:6379/0?ssl_check_hostname=perhaps", "ssl_check_hostname=false"),
        ("rediss://127.0.0.1:6379/0?ssl_ca_certs=/nonexistent/ca.pem", "readable PEM file"),
        ("rediss://127.0.0.1:6379/0?ssl_keyfile=/k.pem", "ssl_certfile"),
    ],
)
def test_invalid_urls(url: str, hint_part: str) -> None:
    with pytest.raises(LedgerError) as caught:
        open_redis(url)
    assert hint_part in caught.value.hint


def test_the_redis_ledger_refuses_a_url_of_another_kind() -> None:
    """Only `open_ledger`'s registry sends URLs here; built directly, it still checks."""
    with pytest.raises(LedgerError) as caught:
        RedisLedger("http://127.0.0.1:6379/0", LedgerContext())
    assert caught.value.detail == "not a Redis URL: http://127.0.0.1:6379/0"
    assert "redis://[:password@]host:port/db" in caught.value.hint


def test_a_refused_option_is_not_printed() -> None:
    """redis-py took `?password=` too; refused now, and its value must not reach the message."""
    secret = "Query-Pw-5e0c1d2b"
    with pytest.raises(LedgerError) as caught:
        open_redis(f"redis://127.0.0.1:6379/0?socket_timeout=2&password={secret}")
    assert "`password`" in caught.value.detail
    assert "Remove it" in caught.value.hint
    assert_no_secret(caught.value, secret)


def test_tls_with_an_untrusted_certificate(redis_server_tls: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{redis_server_tls.port}/0"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert "ssl_ca_certs" in caught.value.hint


def test_tls_without_verification_when_asked(redis_server_tls: RedisServer) -> None:
    ledger = open_redis(f"rediss://127.0.0.1:{redis_server_tls.port}/0?ssl_cert_reqs=none")
    before = time.time()
    assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
    ledger.close()


def test_plain_client_against_tls_port_is_unreachable(redis_server_tls: RedisServer) -> None:
    url = f"redis://127.0.0.1:{redis_server_tls.port}/0?socket_timeout=1"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert "rediss://" in caught.value.hint


IMPORT_CHECK = r"""
import json, sys
if sys.argv[2] == "blocked":
    sys.modules["redis"] = None  # what `import redis` meets where redis-py is not installed
from streampixel_distribute.ledger import LedgerContext, open_ledger
ledger = open_ledger(sys.argv[1], LedgerContext())
slot = ledger.reserve("sp-import-check-" + sys.argv[2], 60.0)
ledger.close()
print(json.dumps({"slot": slot, "loaded": sorted(
    name for name, module in sys.modules.items()
    if module is not None and (name == "redis" or name.startswith("redis.")))}))
"""


@pytest.mark.parametrize("redis_py", ["installed", "blocked"])
def test_the_ledger_does_not_import_redis_py(redis_server: RedisServer, redis_py: str) -> None:
    """Every parallel job paid 250-300 ms of start-up for `import redis`: the ledger speaks RESP
    itself, and works where redis-py is not installed."""
    done = subprocess.run([sys.executable, "-c", IMPORT_CHECK, redis_server.url(), redis_py],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    assert abs(result["slot"] - time.time()) < 30


BUILTIN_HASHES_BLOCKED = r"""
import json, sys
for name in ("_sha1", "_sha2", "_sha256"):
    sys.modules[name] = None  # as on an interpreter without CPython's built-in hash modules
from streampixel_distribute.ledger import LedgerContext, account_key, open_ledger
key = account_key("https://api.example.test/pixelStripeApi", "user-1")
ledger = open_ledger(sys.argv[1], LedgerContext())
slot = ledger.reserve(key, 60.0)
ledger.close()
print(json.dumps({"key": key, "sha": ledger._sha, "slot": slot,
                  "hashlib": "hashlib" in sys.modules}))
"""


def test_without_the_builtin_hash_modules_jobs_still_share_the_account(
    redis_server: RedisServer,
) -> None:
    """Where CPython's own SHA modules are missing, hashlib takes over: the account key (the
    ledger entry every job of the account must share) and the script's SHA come out the same."""
    from streampixel_distribute.ledger import account_key

    done = subprocess.run([sys.executable, "-c", BUILTIN_HASHES_BLOCKED, redis_server.url()],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert child["hashlib"] is True  # the fallback really ran
    key = account_key("https://api.example.test/pixelStripeApi", "user-1")
    assert child["key"] == key
    ledger = open_redis(redis_server.url())
    assert child["sha"] == ledger._sha
    # This process sees the child's reservation under the same key.
    assert ledger.peek(key, 60.0) == pytest.approx(child["slot"] + 60.0, abs=TOL)
    ledger.close()


# -- what the server sends: bounded, checked -------------------------------------------------------


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedRedis]]:
    servers: list[ScriptedRedis] = []

    def start(*replies: list[bytes | None]) -> ScriptedRedis:
        servers.append(ScriptedRedis(list(replies)))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (b"$2147483648\r\n", "2147483648-byte string"),
        (b"*100000000\r\n", "array of 100000000 elements"),
        (b"*1\r\n" * 10 + b":1\r\n", "4 deep"),
        (b"+" + b"x" * 100_000, "line longer than"),
        (b"*8\r\n" + (b"$60000\r\n" + b"y" * 60_000 + b"\r\n") * 8, "60000-byte string"),
        (b"%1\r\n+a\r\n+b\r\n", "not RESP2"),
        (b":12x\r\n", "malformed number"),
        (b"*2\r\n:1\r\n" + CLOSE, "closed the connection"),
        (b"+" + b"x" * 20_000 + b"\r\n", "line longer than"),
        (b"$3\r\nabcXY\r\n", "string without its line end"),
        (b"$-1\r\n", "unexpected answer to the reservation script: None"),
        (b"*-1\r\n", "unexpected answer to the reservation script: None"),
        (b":1\r\n", "unexpected answer to the reservation script: 1"),
        (b"*3\r\n$3\r\nabc\r\n:1\r\n$0\r\n\r\n", "unexpected answer to the reservation script"),
    ],
    ids=["huge-string", "huge-array", "deep", "endless-line", "reply-budget", "resp3",
         "bad-number", "cut-short", "long-line", "unterminated-string", "null-string",
         "null-array", "integer", "not-a-number"],
)
def test_a_hostile_server_cannot_make_the_client_read_without_bound(
    scripted: Callable[..., ScriptedRedis], reply: bytes, detail: str
) -> None:
    """Oversized lengths are refused from their header, before anything that large is read (the
    old client waited for the announced bytes until its timeout)."""
    server = scripted([reply], [b"*3\r\n:1\r\n:1\r\n$0\r\n\r\n"])
    with pytest.raises(LedgerError) as caught:
        open_redis(server.url()).reserve(new_key(), INTERVAL)
    assert detail in caught.value.detail
    assert server.connections == 1  # a new connection that fails is not retried
    assert f"Redis at 127.0.0.1:{server.port}" in caught.value.detail
    if detail != "closed the connection":
        assert "a Redis server's" in caught.value.hint


@pytest.mark.parametrize(
    "reply",
    [b"-ERR the script did something odd\r\n",
     b"*3\r\n-ERR the script did something odd\r\n:1\r\n$0\r\n\r\n"],
    ids=["error", "error-in-array"],
)
def test_an_error_the_ledger_does_not_know_points_at_the_servers_log(
    scripted: Callable[..., ScriptedRedis], reply: bytes
) -> None:
    """An error reply, even one inside an array, is reported once the whole reply is read: the
    connection stays in step, and the next command on it gets its own answer."""
    server = scripted([reply, b"*3\r\n:5000000\r\n:7000000\r\n$0\r\n\r\n"])
    ledger = open_redis(server.url(), now=lambda: 100.0)
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(new_key(), INTERVAL)
    assert caught.value.detail == (f"Redis at 127.0.0.1:{server.port} failed: "
                                   "ERR the script did something odd")
    assert "Redis server's log" in caught.value.hint
    assert ledger.reserve(new_key(), INTERVAL) == pytest.approx(102.0)
    assert server.connections == 1
    ledger.close()


def test_a_redis_that_refuses_time_in_scripts_gets_the_time_passed_in(
    scripted: Callable[..., ScriptedRedis],
) -> None:
    """Redis 3.2-4.x with verbatim script replication refuses a write after TIME in a script:
    the client then reads TIME itself, passes it in, and keeps doing so on that server."""
    refusal = (b"-ERR Error running script (call to f_0123): @user_script:1: @user_script: 1: "
               b"Write commands not allowed after non deterministic commands.\r\n")
    time_reply = b"*2\r\n$10\r\n1700000000\r\n$6\r\n250000\r\n"
    server = scripted([refusal,
                       time_reply, b"*3\r\n:1700000000250000\r\n:1700000002250000\r\n$0\r\n\r\n",
                       time_reply, b"*3\r\n:1700000000250000\r\n:1700000004250000\r\n$0\r\n\r\n"])
    ledger, key = open_redis(server.url(), now=lambda: 100.0), new_key()
    assert ledger.reserve(key, INTERVAL) == pytest.approx(102.0)
    assert ledger.reserve(key, INTERVAL) == pytest.approx(104.0)
    sent = server.commands[0]
    assert [command[0] for command in sent] == ["EVALSHA", "TIME", "EVALSHA", "TIME", "EVALSHA"]
    # EVALSHA sha 2 key queue-key interval min-delay op server-time holder
    assert [command[8] for command in sent if command[0] == "EVALSHA"] == [
        "", "1700000000250000", "1700000000250000"]
    ledger.close()


def test_a_password_changed_while_the_job_runs_is_reported_as_refused(tmp_path: Path) -> None:
    """The password is rotated and the connection dropped: the reconnect's refused AUTH is
    reported as refused credentials with their fix, not as a lost connection."""
    server = start_redis(tmp_path / "rotating", password=REDIS_PASSWORD)
    try:
        ledger, key = open_redis(server.url()), new_key()
        ledger.reserve(key, INTERVAL)
        admin = server.client()
        admin.config_set("requirepass", "rotated-Pw-91c3e2")
        assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # the ledger's
        with pytest.raises(LedgerError) as caught:
            ledger.reserve(key, INTERVAL)
        admin.close()
        ledger.close()
    finally:
        server.stop()
    assert caught.value.title == "Rate-limit ledger refused"
    assert "refused the credentials" in caught.value.detail
    assert "password in the ledger URL secret" in caught.value.hint
    assert_no_secret(caught.value, REDIS_PASSWORD, "rotated-Pw-91c3e2")


def test_a_dropped_connection_is_reopened_once(redis_server: RedisServer) -> None:
    """Redis (its `timeout` setting), a proxy or a failover may close an idle connection."""
    ledger, key, client = open_redis(redis_server.url()), new_key(), redis_server.client()
    first = ledger.reserve(key, INTERVAL)
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1  # the ledger's
    assert ledger.reserve(key, INTERVAL) == pytest.approx(first + INTERVAL, abs=TOL)
    ledger.close()
    client.close()


def test_a_connection_dropped_again_after_reopening_fails(
    scripted: Callable[..., ScriptedRedis],
) -> None:
    script_reply = b"*3\r\n:1000000\r\n:1000000\r\n$0\r\n\r\n"
    server = scripted([script_reply, CLOSE], [CLOSE])
    ledger = open_redis(server.url())
    ledger.reserve(new_key(), INTERVAL)
    with pytest.raises(LedgerError) as caught:
        ledger.reserve(new_key(), INTERVAL)
    assert "unreachable: the server closed the connection" in caught.value.detail
    assert server.connections == 2  # one reconnect, no more


def test_no_retry_after_a_timeout(scripted: Callable[..., ScriptedRedis]) -> None:
    """The script may have run when the answer is late: a retry could take a second slot."""
    server = scripted([None], [b"*3\r\n:1\r\n:1\r\n$0\r\n\r\n"])
    with pytest.raises(LedgerError) as caught:
        open_redis(server.url("socket_timeout=0.3")).reserve(new_key(), INTERVAL)
    assert "no answer within 0.3 s" in caught.value.detail
    assert [c[0] for c in server.commands[0]] == ["EVALSHA"]
    assert server.connections == 1


def test_a_redis_before_6_gets_the_password_alone(scripted: Callable[..., ScriptedRedis]) -> None:
    """Redis before 6.0 has no users: AUTH with a user name is a syntax error there."""
    server = scripted([b"-ERR wrong number of arguments for 'auth' command\r\n",
                       b"+OK\r\n", b"*3\r\n:5000000\r\n:7000000\r\n$0\r\n\r\n"])
    ledger = open_redis(f"redis://someone:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0",
                        now=lambda: 100.0)
    assert ledger.reserve(new_key(), INTERVAL) == pytest.approx(102.0)
    sent = server.commands[0]
    assert sent[0] == ["AUTH", "someone", REDIS_PASSWORD]
    assert sent[1] == ["AUTH", REDIS_PASSWORD]
    assert sent[2][0] == "EVALSHA"


# -- more server set-ups: database, replica, certificates ------------------------------------------


def test_a_database_the_server_does_not_have(redis_server: RedisServer) -> None:
    with pytest.raises(LedgerError) as caught:
        open_redis(redis_server.url(db=99)).reserve(new_key(), INTERVAL)
    assert "has no database 99" in caught.value.detail
    assert "/0 to /15" in caught.value.hint


def test_the_database_in_the_path_is_used(redis_server: RedisServer) -> None:
    ledger, key, client = open_redis(redis_server.url(db=5)), new_key(), redis_server.client(db=5)
    ledger.reserve(key, INTERVAL)
    assert client.exists(NAMESPACE + key) == 1
    assert redis_server.client(db=0).exists(NAMESPACE + key) == 0
    ledger.close()
    client.close()


def test_a_read_only_replica_is_named(redis_server: RedisServer, tmp_path: Path) -> None:
    replica = start_redis(tmp_path / "replica",
                          extra=[f"replicaof {redis_server.host} {redis_server.port}"])
    try:
        with pytest.raises(LedgerError) as caught:
            open_redis(replica.url()).reserve(new_key(), INTERVAL)
    finally:
        replica.stop()
    assert "read-only replica" in caught.value.detail
    assert "primary" in caught.value.hint


def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    """A Redis with `tls-auth-clients yes` (its default) wants a client certificate."""
    server = start_redis(tmp_path / "mtls", tls=True, client_certs=True)
    try:
        assert server.ca_file is not None
        cert, key = server.ca_file, server.ca_file.with_name("key.pem")
        base = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={server.ca_file}"
        with pytest.raises(LedgerError) as caught:
            open_redis(base).reserve(new_key(), INTERVAL)
        # Named as such when the server's alert is read, a dropped connection otherwise.
        assert re.search("client certificate|unreachable", caught.value.detail)
        assert "ssl_certfile" in caught.value.hint
        ledger = open_redis(f"{base}&ssl_certfile={cert}&ssl_keyfile={key}")
        before = time.time()
        assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
        ledger.close()
    finally:
        server.stop()


def test_tls_host_name_must_match_unless_told(redis_server_tls: RedisServer) -> None:
    """The test certificate names 127.0.0.1 only: `localhost` does not match it."""
    url = f"rediss://localhost:{redis_server_tls.port}/0?ssl_ca_certs={redis_server_tls.ca_file}"
    with pytest.raises(LedgerError) as caught:
        open_redis(url).reserve(new_key(), INTERVAL)
    assert "does not trust" in caught.value.detail
    assert "ssl_check_hostname=false" in caught.value.hint
    ledger = open_redis(url + "&ssl_check_hostname=false")
    before = time.time()
    assert before - TOL <= ledger.reserve(new_key(), INTERVAL) <= time.time() + TOL
    ledger.close()
