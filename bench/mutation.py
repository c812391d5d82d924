"""Mutation score of the core: do the fast tests fail when the code is wrong?

    python bench/mutation.py                       # every module below (about an hour, 2 cores)
    python bench/mutation.py --module redact       # one module (repeat --module for more)
    python bench/mutation.py --keep                # keep the temporary copy, for `mutmut show`

Needs mutmut, pinned in the `mutation` extra: `pip install -e '.[mutation]'`. Not part of
`.ci/run` (too slow for 2 cores on every push). The tree is copied to a temporary directory
(tracked and untracked files, nothing git ignores) and mutated there: the working tree is never
touched. The table counts, per module: mutants, killed, survived, equivalent (each listed in
EQUIVALENT below with its reason) and the score, killed / (mutants - equivalent). The target is
at most 5 % surviving; the exit status is 1 when a module is above it.

Why mutmut (3.x), and not cosmic-ray:
- Speed on 2 cores. mutmut writes every mutant of a function into the copied source once,
  behind a trampoline that runs the variant named by the MUTANT_UNDER_TEST environment variable.
  Each mutant is then a fork of a process that has already imported pytest, running only the
  tests that called the mutated function (recorded in one "stats" run of the suite), and it
  stops at the first failure. cosmic-ray rewrites the file and runs the whole test command
  again for every mutant (a fresh interpreter and collection each time), with no per-mutant
  test selection: several times slower here for the same mutants.
- Tests that start subprocesses. The mutant is chosen through the environment, which child
  processes inherit, and the tests find the package by their own location (inside the copy);
  PYTHONPATH is set to the copy as well. So the action, the emulator and the CLI processes the
  tests start run the mutant too. The one limit: mutmut learns which tests cover a function
  in-process, so a test that reaches a function only through a child process is not chosen for
  that function's mutants (a mutant no chosen test covers is reported as "no tests").

Operators: all of mutmut's (numbers, comparisons and arithmetic swapped, booleans flipped,
`is`/`in` and `not` changed, call arguments dropped or replaced by None, assignments set to
None, `break`/`continue`, string methods swapped, ternaries forced down one arm), but one: string
literals that contain a space are left alone. Those are prose (messages, hints, log lines);
mutmut would wrap them in `XX`, which survives any substring check and says nothing about the
code. Strings without a space (keys, names, encodings, protocol values) are mutated.

Timeouts count as killed (the mutant made a test hang, and the test failed it).
"""

from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "src/streampixel_distribute"
#: module -> (the package files it stands for, the tests that judge its mutants). Each module
#: gets its own mutmut run with its own tests: the in-process tests aimed at it (seconds, not a
#: minute, per surviving mutant), none that starts the action, a container, nektos/act or
#: gitlab-ci-local. mutmut runs, for each mutant, those of them that called the mutated function.
MODULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "coordinator": (("coordinator.py",), ("tests/test_coordinator.py",)),
    "api": (("api.py",), ("tests/test_api_client.py", "tests/test_api_responses.py")),
    "answers": (("answers.py",), ("tests/test_api_responses.py", "tests/test_upload.py")),
    "redact": (("redact.py",), ("tests/test_redact.py", "tests/test_runner_commands.py")),
    "settings": (("settings/*.py",), ("tests/test_settings.py", "tests/test_action_contract.py")),
    "ledger/file": (("ledger/file.py",), ("tests/test_ledger_file.py",
                                          "tests/test_ledger_contract.py::file and not git")),
}
TARGET_SURVIVING = 5.0  # percent of the mutants that are not equivalent
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


@dataclass(frozen=True)
class Equivalent:
    """A surviving mutant no test can kill: the program behaves the same. Matched by file,
    function and the text of the line before and after (line numbers are for reading)."""

    file: str
    line: int
    function: str
    original: str
    mutated: str
    reason: str


_START = "start = -(-8 * pad // 6)  # the first character with no bit of the padding"
_FORMS = 'forms = {secret, urllib.parse.quote(raw, safe=""), urllib.parse.quote_plus(raw)}'
_SAME_FOR_PADS = "the same start for pad 0, 1 and 2, the only values pad takes"
_READ = "text = scrub(text[: limit * 4 + 64 + longest])[: limit * 4 + 64]"
_WIDER = ("a wider window to scrub: the text is cut to the same bound right after, and the "
          "window already holds every form that starts within it")
_REDACT = (
    Equivalent("redact.py", 24, "_encoded_forms",
               'raw = secret.encode("utf-8", "surrogateescape")',
               'raw = secret.encode("UTF-8", "surrogateescape")',
               "codec names are case-insensitive"),
    Equivalent("redact.py", 26, "_encoded_forms",
               'raw = secret.encode("utf-8", "surrogatepass")',
               'raw = secret.encode("UTF-8", "surrogatepass")',
               "codec names are case-insensitive"),
    Equivalent("redact.py", 27, "_encoded_forms", _FORMS, _FORMS.replace('safe=""', 'safe="XXXX"'),
               "quote never encodes letters: safe='XXXX' is safe=''"),
    Equivalent("redact.py", 32, "_encoded_forms", "for pad in range(3):", "for pad in range(4):",
               "pad 3 is pad 0 shifted by one whole base64 group: the same middle again"),
    Equivalent("redact.py", 34, "_encoded_forms", _START,
               _START.replace("-8 * pad", "-9 * pad"), _SAME_FOR_PADS),
    Equivalent("redact.py", 34, "_encoded_forms", _START,
               _START.replace("// 6)", "// 7)"), _SAME_FOR_PADS),
    Equivalent("redact.py", 83, "one_line",
               "longest = len(_forms[0]) if _forms else 0  # kept longest first",
               "longest = len(_forms[0]) if _forms else 1  # kept longest first", _WIDER),
    Equivalent("redact.py", 86, "one_line", _READ, _READ.replace("limit * 4 + 64 + longest",
                                                                 "limit * 5 + 64 + longest"),
               _WIDER),
    Equivalent("redact.py", 86, "one_line", _READ, _READ.replace("64 + longest",
                                                                 "65 + longest"), _WIDER),
)
_SAME_START = ("no other live slot starts where ours does: slots never overlap at their start, "
               "and ours is left out by its holder id")
_COORDINATOR: tuple[Equivalent, ...] = (
    Equivalent("coordinator.py", 53, "Log.warning",
               'def warning(self, message: str, title: str = "") -> None: ...',
               'def warning(self, message: str, title: str = "XXXX") -> None: ...',
               "a Protocol's method body never runs: callers reach the Log implementations, whose "
               'own defaults apply'),
    Equivalent("coordinator.py", 54, "Log.notice",
               'def notice(self, message: str, title: str = "") -> None: ...',
               'def notice(self, message: str, title: str = "XXXX") -> None: ...',
               "a Protocol's method body never runs: callers reach the Log implementations, whose "
               'own defaults apply'),
    Equivalent("coordinator.py", 138, "Coordinator.__init__",
               'self.holder = holder or Holder("")',
               'self.holder = holder or Holder(None)',
               'self.holder is only read through _replace(id=...), which sets the id; the other '
               'fields keep their defaults'),
    Equivalent("coordinator.py", 138, "Coordinator.__init__",
               'self.holder = holder or Holder("")',
               'self.holder = holder or Holder("XXXX")',
               'self.holder is only read through _replace(id=...), which replaces the id'),
    Equivalent("coordinator.py", 147, "Coordinator.__init__",
               'self._ledger_time = 0.0  # how long the last reservation took to store',
               'self._ledger_time = None  # how long the last reservation took to store',
               '_ledger_time is only read by _move_up and _wait_until, which run only after '
               '_reserve has set it'),
    Equivalent("coordinator.py", 147, "Coordinator.__init__",
               'self._ledger_time = 0.0  # how long the last reservation took to store',
               'self._ledger_time = 1.0  # how long the last reservation took to store',
               '_ledger_time is only read by _move_up and _wait_until, which run only after '
               '_reserve has set it'),
    Equivalent("coordinator.py", 175, "Coordinator.reserve",
               'slot = self._turn(None, 0.0, self.clock.time() + self.account.max_wait)',
               'slot = self._turn(None, 1.0, self.clock.time() + self.account.max_wait)',
               'not_before 0 or 1 s past the epoch: earliest = max(not_before, now + lead) is now '
               'or later either way'),
    Equivalent("coordinator.py", 182, "Coordinator.run",
               'not_before = 0.0',
               'not_before = 1.0',
               'not_before 0 or 1 s past the epoch: earliest = max(not_before, now + lead) is now '
               'or later either way'),
    Equivalent("coordinator.py", 254, "Coordinator._turn",
               'not_before = 0.0',
               'not_before = 1.0',
               'not_before 0 or 1 s past the epoch: earliest = max(not_before, now + lead) is now '
               'or later either way'),
    Equivalent("coordinator.py", 276, "Coordinator._reserve",
               'def _reserve(self, not_before: float, deadline: float, *, setup: float = 0.0,',
               'def _reserve(self, not_before: float, deadline: float, *, setup: float = 1.0,',
               'the one caller (_turn) always passes setup'),
    Equivalent("coordinator.py", 277, "Coordinator._reserve",
               'hold: float = 0.0) -> float:',
               'hold: float = 1.0) -> float:',
               'the one caller (_turn) always passes hold'),
    Equivalent("coordinator.py", 292, "Coordinator._reserve",
               'for attempt in range(1, MAX_LATE_SLOTS + 1):',
               'for attempt in range(1, MAX_LATE_SLOTS + 2):',
               'the loop always leaves by the break at attempt == MAX_LATE_SLOTS: the bound one '
               'higher is never reached'),
    Equivalent("coordinator.py", 294, "Coordinator._reserve",
               'eta = max(now, earliest, peeked)',
               'eta = max(earliest, peeked)',
               'earliest = max(not_before, now + lead) with lead >= 0 (elapsed times plus a '
               'max(0, ...)): never below now'),
    Equivalent("coordinator.py", 316, "Coordinator._reserve",
               'lead, now, peeked = 1.5 * (stored - asked), stored, 0.0',
               'lead, now, peeked = 1.5 * (stored - asked), stored, 1.0',
               'peeked 0 or 1 s past the epoch: below now, which eta = max(now, earliest, peeked) '
               'already includes'),
    Equivalent("coordinator.py", 380, "Coordinator._wait_until",
               'slot = self._sleep_until(self._ledger_time, slot, call, move=False)',
               'slot = self._sleep_until(self._ledger_time, slot, None, move=False)',
               'with move=False _sleep_until never calls _move_up, the only reader of call'),
    Equivalent("coordinator.py", 380, "Coordinator._wait_until",
               'slot = self._sleep_until(self._ledger_time, slot, call, move=False)',
               'slot = self._sleep_until(self._ledger_time, slot, call, move=None)',
               'move is only tested for truth: None acts as False'),
    Equivalent("coordinator.py", 384, "Coordinator._wait_until",
               'self._sleep_until(0.0, ready, call, move=False)',
               'self._sleep_until(0.0, ready, None, move=False)',
               'with move=False _sleep_until never calls _move_up, the only reader of call'),
    Equivalent("coordinator.py", 384, "Coordinator._wait_until",
               'self._sleep_until(0.0, ready, call, move=False)',
               'self._sleep_until(0.0, ready, call, move=None)',
               'move is only tested for truth: None acts as False'),
    *(Equivalent("coordinator.py", 384, "Coordinator._wait_until",
                 'self._sleep_until(0.0, ready, call, move=False)', mutated,
                 'our slot has begun: _move_up takes only a slot given back between now and ours, '
                 'so it finds none; it reads the queue once per step where the heartbeat would')
      for mutated in ('self._sleep_until(0.0, ready, call, )',
                      'self._sleep_until(0.0, ready, call, move=True)')),
    Equivalent("coordinator.py", 340, "Coordinator._ahead",
               'if s.at < slot and s.until > now and not s.released and not self._mine(s)]',
               'if s.at <= slot and s.until > now and not s.released and not self._mine(s)]',
               _SAME_START),
    Equivalent("coordinator.py", 402, "Coordinator._previous_end",
               'if s.at < slot and not s.released and not self._mine(s))])',
               'if s.at <= slot and not s.released and not self._mine(s))])',
               _SAME_START),
    Equivalent("coordinator.py", 377, "Coordinator._sleep_until",
               'if slot - lead - self.clock.time() <= 0:',
               'if slot - lead + self.clock.time() <= 0:',
               'a shortcut: when slot - lead <= now the loop runs zero times and grouped is False '
               '(slot - now <= lead <= 3 < GROUP_THRESHOLD), so skipping it changes nothing'),
    Equivalent("coordinator.py", 377, "Coordinator._sleep_until",
               'if slot - lead - self.clock.time() <= 0:',
               'if slot + lead - self.clock.time() <= 0:',
               'a shortcut: when slot - lead <= now the loop runs zero times and grouped is False '
               '(slot - now <= lead <= 3 < GROUP_THRESHOLD), so skipping it changes nothing'),
    Equivalent("coordinator.py", 377, "Coordinator._sleep_until",
               'if slot - lead - self.clock.time() <= 0:',
               'if slot - lead - self.clock.time() < 0:',
               'a shortcut: at exactly 0 the loop below runs zero times and grouped is False, so '
               'skipping it changes nothing'),
    Equivalent("coordinator.py", 392, "Coordinator._sleep_until",
               'ahead = self._ahead(slot, refresh=False if move else not first)',
               'ahead = self._ahead(slot, refresh=None)',
               'with move=True refresh is False, and None is as false; with move=False (the last '
               'PREPARE_LEAD s, under GROUP_THRESHOLD) no heartbeat is shown'),
    Equivalent("coordinator.py", 392, "Coordinator._sleep_until",
               'ahead = self._ahead(slot, refresh=False if move else not first)',
               'ahead = self._ahead(slot, refresh=False if (move) or True else not first)',
               'refresh becomes False always: the same with move=True; with move=False (the last '
               'PREPARE_LEAD s, under GROUP_THRESHOLD) no heartbeat is shown'),
    Equivalent("coordinator.py", 392, "Coordinator._sleep_until",
               'ahead = self._ahead(slot, refresh=False if move else not first)',
               'ahead = self._ahead(slot, refresh=False if move else first)',
               'changes only the move=False branch, the last PREPARE_LEAD s before the slot, '
               'shorter than GROUP_THRESHOLD: no heartbeat is shown there'),
    Equivalent("coordinator.py", 399, "Coordinator._sleep_until",
               'first = False',
               'first = None',
               'first is only read as `not first`: None acts as False'),
    Equivalent("coordinator.py", 408, "Coordinator._move_up",
               'if not any(s.released and earliest <= s.at < slot for s in '
               'self.progress.queue.values()):',
               'if not any(s.released and earliest <= s.at <= slot for s in '
               'self.progress.queue.values()):',
               "no other slot starts at our slot's start: slots never overlap (each starts at or "
               'after the end of the one before)'),
    Equivalent("coordinator.py", 416, "Coordinator._move_up",
               'if moved is None or moved >= slot:',
               'if moved is None or moved > slot:',
               'advance hands out a released slot before ours in the queue, which starts before '
               'ours (slots never overlap): moved < slot whenever it is not None'),
)
_INTERPRET = "return interpret(status, headers, raw, now=time.time(), endpoint=DISTRIBUTE_FILE)"
_NO_REDIRECT = "allow_redirects=False,  # a redirect must never carry the key to another host"
_CHUNKS = "for chunk in response.iter_content(chunk_size=16384):"
_WHOLE_CHUNKS = ("the body streams in whole 16 KiB chunks until it ends: the same bytes are "
                 "read and cut to MAX_BODY_BYTES")
_API = (
    Equivalent("api.py", 67, "StreampixelClient.distribute", _INTERPRET,
               "return interpret(status, headers, raw, now=time.time(), )",
               "DISTRIBUTE_FILE is interpret's default endpoint"),
    Equivalent("api.py", 88, "StreampixelClient.post", _NO_REDIRECT,
               _NO_REDIRECT.replace("False", "None"),
               "requests follows redirects only when allow_redirects is truthy"),
    Equivalent("api.py", 135, "_read_capped", "size = 0", "size = 1", _WHOLE_CHUNKS),
    Equivalent("api.py", 136, "_read_capped", _CHUNKS, _CHUNKS.replace("16384", "None"),
               "chunks as they arrive instead of 16 KiB: the same bytes, cut to MAX_BODY_BYTES"),
    Equivalent("api.py", 136, "_read_capped", _CHUNKS, _CHUNKS.replace("16384", "16385"),
               "four chunks pass MAX_BODY_BYTES either way; the result is cut to it"),
    Equivalent("api.py", 139, "_read_capped", "if size >= MAX_BODY_BYTES:",
               "if size > MAX_BODY_BYTES:",
               "at most one more 16 KiB chunk is read, and the result is cut to MAX_BODY_BYTES"),
)
_HANDLER = "handler = _redirect if 300 <= status < 400 else \\"
_NOT_READY = ('NotReady, title="Build not ready", hint="The upload has no build URL yet '
              '(Streampixel is still downloading, extracting or "')
_BY_STATUS_400 = "400 is in _BY_STATUS, so the fallback never sees it"
_ANSWERS = (
    Equivalent("answers.py", 83, "parse_retry_after", 'match = _TRY_AGAIN.search(message or "")',
               'match = _TRY_AGAIN.search(message or "XXXX")',
               "'XXXX' holds no 'try again in': no match, as with ''"),
    Equivalent("answers.py", 131, "_read", 'text = raw.decode("utf-8", "replace")',
               'text = raw.decode("UTF-8", "replace")', "codec names are case-insensitive"),
    Equivalent("answers.py", 134, "_read",
               "parsed = json.loads(text) if text.strip() else None",
               "parsed = json.loads(text) if (text.strip()) or True else None",
               "json.loads of blank text raises ValueError, caught: body stays None"),
    Equivalent("answers.py", 164, "interpret", _HANDLER, _HANDLER.replace("< 400", "<= 400"),
               _BY_STATUS_400),
    Equivalent("answers.py", 164, "interpret", _HANDLER, _HANDLER.replace("< 400", "< 401"),
               _BY_STATUS_400),
    Equivalent("answers.py", 170, "_redirect",
               'location = answer.headers.get("Location") or answer.headers.get("location") '
               'or ""',
               'location = answer.headers.get("Location") or answer.headers.get("location") '
               'or "XXXX"',
               "'XXXX' has no host either: both read '(no location)'"),
    Equivalent("answers.py", 207, "_bad_request", 'NotReady, title="Build not ready",',
               "NotReady, title=None,", "NotReady's default title is 'Build not ready'"),
    Equivalent("answers.py", 207, "_bad_request", _NOT_READY,
               _NOT_READY.replace('title="Build not ready", ', ""),
               "NotReady's default title is 'Build not ready'"),
)
_EVENT_PATH = 'path = environ.get("GITHUB_EVENT_PATH", "")'
_ONLY_WITH_PATH = "read_event runs only once GITHUB_EVENT_PATH is set and not empty"
_FORK_TRUTH = "the fork note is only tested for truth: None adds nothing, as '' does"
_TOO_LARGE = 'return EventInfo(None, "the event payload file is too large to read", "")'
_NOT_OBJECT = 'return EventInfo(None, "the event payload is not a JSON object", "")'
_AFTER_PROBLEM = "returned after a problem is added: load raises InvalidInput, the value is unused"
_TRUTH = "tested for truth only: None is False"
_SECRET_QUOTES = "a secret's fix never shows the unquoted value (`not secret`)"
_LEDGER_PROBLEM = ('problem = Problem("ledger", f"is not a valid URL: '
                   '{echo(urls.hide_userinfo(value))}.",')
_INTERIM = "the input of this interim Problem is never read: add() names `ledger` itself"
_STRICT = 'strict_value = values.get("strict-ids", "true")'
_EVERY_COMMAND = "every command takes strict-ids: values always holds it, its default at least"
_QSL = "for _name, value in urllib.parse.parse_qsl(query, keep_blank_values=True):"
_BLANKS = "blank values are dropped by the length filter anyway"
_TAIL = 'return fix_from(BY_NAME[name], self.sources.get(name, ""))'
_HAS_SOURCE = "every checked value has its source recorded (load, target_for): no default"
_ORDER = "raise InvalidInput(sorted(checker.problems, key=lambda p: order.get(p.input, 99)))"
_IN_TABLE = "every problem names an input of the table: the fallback rank is never used"
_API_URL = 'api_url=str(parsed.get("api-url", DEFAULT_API_URL)),'
_UNUSABLE = """f"({hook.unusable.get(spec.payload_key, 'no value')})")"""
_TAKEN_OR_NOT = ("shown only for an id a payload may supply, and read_event records each of those "
                 "as taken or as unusable")
_DRY_RUN = 'return Job(command, account, target, bool(parsed.get("dry-run", False)),'
_PAIR = "while len(inner) >= 2 and _QUOTE_PAIRS.get(inner[0]) == inner[-1]:"
_EMPTY_PAIR = ("a two-character pair strips to ''; neither '' nor a lone pair of quotes or "
               "brackets matches any placeholder rule")
_DEFAULT_SOURCE = ("unreachable: only a default has the source 'default' (every other value "
                   "names its own), and no default fails a check")
_SETTINGS = (
    Equivalent("settings/event.py", 43, "read_event", _EVENT_PATH,
               _EVENT_PATH.replace('"")', "None)"), _ONLY_WITH_PATH),
    Equivalent("settings/event.py", 43, "read_event", _EVENT_PATH,
               _EVENT_PATH.replace('"")', ")"), _ONLY_WITH_PATH),
    Equivalent("settings/event.py", 43, "read_event", _EVENT_PATH,
               _EVENT_PATH.replace('"")', '"XXXX")'), _ONLY_WITH_PATH),
    Equivalent("settings/event.py", 49, "read_event", _TOO_LARGE,
               _TOO_LARGE.replace('"")', "None)"), _FORK_TRUTH),
    Equivalent("settings/event.py", 53, "read_event", '"as JSON", "")', '"as JSON", None)',
               _FORK_TRUTH),
    Equivalent("settings/event.py", 55, "read_event", _NOT_OBJECT,
               _NOT_OBJECT.replace('"")', "None)"), _FORK_TRUTH),
    Equivalent("settings/event.py", 86, "read_event", '"",', '"XXXX",',
               "why_not is read only when there is no webhook body; here there is one"),
    Equivalent("settings/event.py", 86, "read_event", '"",', "None,",
               "why_not is read only when there is no webhook body; here there is one"),
    Equivalent("settings/checks.py", 269, "Checker.seconds", "return 0.0", "return 1.0",
               _AFTER_PROBLEM),
    Equivalent("settings/checks.py", 281, "Checker.count", "return 0", "return 1",
               _AFTER_PROBLEM),
    Equivalent("settings/checks.py", 257, "Checker.flag", "return False", "return True",
               _AFTER_PROBLEM + " (an invalid strict-ids is judged strictly either way)"),
    Equivalent("settings/checks.py", 211, "Checker.api_url", "inner_ok=False):",
               "inner_ok=None):", _TRUTH),
    Equivalent("settings/checks.py", 287, "Checker.file_url", "inner_ok=False):",
               "inner_ok=None):", _TRUTH),
    Equivalent("settings/checks.py", 287, "Checker.file_url", "inner_ok=False):",
               "inner_ok=True):", _SECRET_QUOTES),
    Equivalent("settings/checks.py", 167, "Checker.secret",
               "if not self.quotes(name, value, inner_ok=False):",
               "if not self.quotes(name, value, inner_ok=None):", _TRUTH),
    Equivalent("settings/checks.py", 167, "Checker.secret",
               "if not self.quotes(name, value, inner_ok=False):",
               "if not self.quotes(name, value, inner_ok=True):", _SECRET_QUOTES),
    Equivalent("settings/checks.py", 210, "Checker.api_url",
               "if not self.common(name, value, words=False) or not self.quotes(name, value,",
               "if not self.common(name, value, words=None) or not self.quotes(name, value,",
               _TRUTH),
    Equivalent("settings/checks.py", 286, "Checker.file_url",
               "if not self.common(name, value, words=False) or not self.quotes(name, value,",
               "if not self.common(name, value, words=None) or not self.quotes(name, value,",
               _TRUTH),
    Equivalent("settings/checks.py", 306, "Checker.ledger",
               'if not self.common("ledger", value, words=False):',
               'if not self.common("ledger", value, words=None):', _TRUTH),
    Equivalent("settings/checks.py", 311, "Checker.ledger", _LEDGER_PROBLEM,
               _LEDGER_PROBLEM.replace('Problem("ledger"', "Problem(None"), _INTERIM),
    Equivalent("settings/checks.py", 311, "Checker.ledger", _LEDGER_PROBLEM,
               _LEDGER_PROBLEM.replace('"ledger"', '"XXledgerXX"'), _INTERIM),
    Equivalent("settings/checks.py", 311, "Checker.ledger", _LEDGER_PROBLEM,
               _LEDGER_PROBLEM.replace('"ledger"', '"LEDGER"'), _INTERIM),
    Equivalent("settings/checks.py", 322, "Checker.not_mixed_up",
               'if values.get(other, "").lower() == key.lower():',
               'if values.get(other, "XXXX").lower() == key.lower():',
               "a key equal to 'xxxx' in any case is refused as a placeholder first, which skips "
               "this check"),
    Equivalent("settings/checks.py", 59, "placeholder_kind", _PAIR,
               _PAIR.replace(">= 2", "> 2"), _EMPTY_PAIR),
    Equivalent("settings/checks.py", 59, "placeholder_kind", _PAIR,
               _PAIR.replace(">= 2", ">= 3"), _EMPTY_PAIR),
    Equivalent("settings/checks.py", 109, "Checker.tail", _TAIL,
               _TAIL.replace('name, "")', "name, None)"), _HAS_SOURCE),
    Equivalent("settings/checks.py", 109, "Checker.tail", _TAIL,
               _TAIL.replace('name, "")', "name, )"), _HAS_SOURCE),
    Equivalent("settings/checks.py", 109, "Checker.tail", _TAIL,
               _TAIL.replace('name, "")', 'name, "XXXX")'), _HAS_SOURCE),
    Equivalent("settings/__init__.py", 183, "_check", _STRICT,
               _STRICT.replace('"true")', "None)"), _EVERY_COMMAND),
    Equivalent("settings/__init__.py", 183, "_check", _STRICT,
               _STRICT.replace('"true")', ")"), _EVERY_COMMAND),
    Equivalent("settings/__init__.py", 183, "_check", _STRICT,
               _STRICT.replace('"true")', '"XXtrueXX")'), _EVERY_COMMAND),
    Equivalent("settings/__init__.py", 183, "_check", _STRICT,
               _STRICT.replace('"true")', '"TRUE")'), _EVERY_COMMAND),
    Equivalent("settings/__init__.py", 202, "_check",
               "elif spec.kind is Kind.SECONDS and spec.bounds is not None:",
               "elif spec.kind is Kind.SECONDS or spec.bounds is not None:",
               "only the seconds inputs have bounds"),
    Equivalent("settings/__init__.py", 124, "load", _ORDER,
               _ORDER.replace("p.input, 99)", "p.input, None)"), _IN_TABLE),
    Equivalent("settings/__init__.py", 124, "load", _ORDER,
               _ORDER.replace("p.input, 99)", "p.input, )"), _IN_TABLE),
    Equivalent("settings/__init__.py", 124, "load", _ORDER,
               _ORDER.replace("p.input, 99)", "p.input, 100)"), _IN_TABLE),
    Equivalent("settings/__init__.py", 117, "load", _UNUSABLE,
               _UNUSABLE.replace("'no value'", "None"), _TAKEN_OR_NOT),
    Equivalent("settings/__init__.py", 117, "load", _UNUSABLE,
               _UNUSABLE.replace("'no value'", ""), _TAKEN_OR_NOT),
    Equivalent("settings/__init__.py", 141, "load", _DRY_RUN,
               _DRY_RUN.replace("False)", "None)"), "bool(None) is False, as the default is"),
    Equivalent("settings/__init__.py", 141, "load", _DRY_RUN,
               _DRY_RUN.replace(", False)", ", )"), "bool(None) is False, as the default is"),
    Equivalent("settings/__init__.py", 127, "load", _API_URL,
               _API_URL.replace("DEFAULT_API_URL)", "None)"),
               "every command takes api-url: parsed always holds it"),
    Equivalent("settings/__init__.py", 127, "load", _API_URL,
               _API_URL.replace(", DEFAULT_API_URL)", ", )"),
               "every command takes api-url: parsed always holds it"),
    Equivalent("settings/sources.py", 150, "_query_pieces", _QSL,
               _QSL.replace("=True", "=None"), _BLANKS),
    Equivalent("settings/sources.py", 150, "_query_pieces", _QSL,
               _QSL.replace("keep_blank_values=True", ""), _BLANKS),
    Equivalent("settings/sources.py", 150, "_query_pieces", _QSL,
               _QSL.replace("=True", "=False"), _BLANKS),
    Equivalent("settings/sources.py", 151, "_query_pieces",
               'pieces += [value, urllib.parse.quote(value, safe="")]',
               'pieces += [value, urllib.parse.quote(value, safe="XXXX")]',
               "quote never encodes letters: safe='XXXX' is safe=''"),
    Equivalent("settings/sources.py", 94, "fix_from", "if spec.required_for or spec.secret:",
               "if spec.required_for and spec.secret:", _DEFAULT_SOURCE),
    Equivalent("settings/sources.py", 97, "fix_from", 'return ""', 'return "XXXX"',
               _DEFAULT_SOURCE),
    Equivalent("settings/sources.py", 124, "missing_problem",
               'if environ.get("GITHUB_ACTOR", "").startswith("dependabot"):',
               'if environ.get("GITHUB_ACTOR", "XXXX").startswith("dependabot"):',
               "'XXXX' does not start with 'dependabot' either"),
)
_GH = 'return environ.get("RUNNER_ENVIRONMENT", "").strip().lower() == "github-hosted"'
_KIND = 'kind = next((name for test, name in _KINDS if test(mode)), "a special file")'
_CHUNK = "chunk = os.read(fd, min(1 << 20, MAX_BYTES + 1 - size))"
_TMP = 'tmp = directory / f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"'
_TMP_OPEN = "fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | _NOFOLLOW,"
_READ_OPEN = "fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | _NOFOLLOW | _NONBLOCK)"
_LOCK_OPEN = "fd = os.open(self.lock_path, flags | os.O_CREAT | os.O_EXCL, NEW_FILE_MODE)"
_NO_KIND = "every Linux file type but a regular file is in _KINDS: the default is never used"
_CLOEXEC = "os.open makes every descriptor close-on-exec anyway"
_SHARED = "only ever tested for truth: None takes the shared lock, as False does"
_GONE = "the temporary file is renamed or removed before the call returns: only its name differs"
_LEDGER_FILE = (
    Equivalent("ledger/file.py", 81, "is_github_hosted", _GH, _GH.replace('"")', '"XXXX")'),
               "an unset variable reads 'xxxx', which is not 'github-hosted' either"),
    Equivalent("ledger/file.py", 135, "FileLedger._check_place", "directory_missing = False",
               "directory_missing = None", "only ever tested for truth: None is false as False is"),
    Equivalent("ledger/file.py", 142, "FileLedger._check_place",
               "mode, directory_missing = None, True", "mode, directory_missing = None, False",
               "ENOTDIR from lstat: a parent is no directory, so directory.stat() below sets True"),
    Equivalent("ledger/file.py", 185, "FileLedger.peek", "with self._locked(exclusive=False):",
               "with self._locked(exclusive=None):", _SHARED),
    Equivalent("ledger/file.py", 190, "FileLedger.queue", "with self._locked(exclusive=False):",
               "with self._locked(exclusive=None):", _SHARED),
    Equivalent("ledger/file.py", 245, "FileLedger._refused",
               "reason = exc.strerror or type(exc).__name__",
               "reason = exc.strerror or type(None).__name__",
               "every OSError the os module raises carries a strerror: the fallback never runs"),
    Equivalent("ledger/file.py", 263, "FileLedger._not_regular", _KIND,
               _KIND.replace('"a special file")', ")"), _NO_KIND),
    Equivalent("ledger/file.py", 263, "FileLedger._not_regular", _KIND,
               _KIND.replace('"a special file")', "None)"), _NO_KIND),
    Equivalent("ledger/file.py", 282, "FileLedger._open_lock", _LOCK_OPEN,
               _LOCK_OPEN.replace("NEW_FILE_MODE)", ")"),
               "_check_lock sets a created lock's mode outright (fchmod) before it is used"),
    Equivalent("ledger/file.py", 290, "FileLedger._open_lock", "created = False",
               "created = None", "only ever tested for truth: None is false as False is"),
    Equivalent("ledger/file.py", 340, "FileLedger._read_bytes", _READ_OPEN,
               _READ_OPEN.replace("O_RDONLY |", "O_RDONLY &"),
               f"O_RDONLY is 0 either way, and {_CLOEXEC}"),
    Equivalent("ledger/file.py", 352, "FileLedger._read_bytes", _CHUNK,
               _CHUNK.replace("1 << 20", "2 << 20"),
               "a bigger chunk changes only how many reads are made"),
    Equivalent("ledger/file.py", 352, "FileLedger._read_bytes", _CHUNK,
               _CHUNK.replace("1 << 20", "1 << 21"),
               "a bigger chunk changes only how many reads are made"),
    Equivalent("ledger/file.py", 352, "FileLedger._read_bytes", _CHUNK,
               _CHUNK.replace("1 - size", "1 + size"),
               "only the last read of a file over the limit grows: the same files read or refused"),
    Equivalent("ledger/file.py", 352, "FileLedger._read_bytes", _CHUNK,
               _CHUNK.replace("+ 1 - size", "+ 2 - size"),
               "one byte more of a file over the limit is read: the same files read or refused"),
    Equivalent("ledger/file.py", 403, "FileLedger._write", _TMP,
               _TMP.replace("token_hex(4)", "token_hex(None)"), _GONE),
    Equivalent("ledger/file.py", 403, "FileLedger._write", _TMP,
               _TMP.replace("token_hex(4)", "token_hex(5)"), _GONE),
    Equivalent("ledger/file.py", 407, "FileLedger._write", "NEW_FILE_MODE)", ")",
               "the temporary file's mode is set outright (fchmod) before anything is written"),
    Equivalent("ledger/file.py", 406, "FileLedger._write", _TMP_OPEN,
               _TMP_OPEN.replace("O_CLOEXEC | _NOFOLLOW", "O_CLOEXEC & _NOFOLLOW"),
               f"O_EXCL already refuses a link (EEXIST), and {_CLOEXEC}"),
    Equivalent("ledger/file.py", 406, "FileLedger._write", _TMP_OPEN,
               _TMP_OPEN.replace("O_EXCL | os.O_CLOEXEC", "O_EXCL & os.O_CLOEXEC"),
               "the temporary name holds the pid and 32 random bits: no file is there to refuse"),
    Equivalent("ledger/file.py", 424, "FileLedger._write",
               "dir_fd = os.open(directory, os.O_RDONLY | _DIRECTORY)",
               "dir_fd = os.open(directory, os.O_RDONLY & _DIRECTORY)",
               "it is the directory the file was just renamed into: O_DIRECTORY changes nothing"),
)
EQUIVALENT = (*_REDACT, *_COORDINATOR, *_API, *_ANSWERS, *_SETTINGS, *_LEDGER_FILE)


# -- the run ----------------------------------------------------------------------------------

#: Runs inside the copy: mutmut with prose strings left alone (module docstring).
BOOT = r"""
import sys
import libcst as cst
from mutmut.mutation import mutators

def strings_but_prose(node):
    if isinstance(node, cst.SimpleString) and " " in node.value:
        return
    yield from mutators.operator_string(node)

ops = mutators.mutation_operators
ops[:] = [(kind, strings_but_prose if op is mutators.operator_string else op)
          for kind, op in ops]
from mutmut.__main__ import cli
sys.argv = ["mutmut", "run", "--max-children", sys.argv[1]]
cli()
"""

#: Runs inside the copy afterwards: every mutant's status, and the diff of those not killed.
COLLECT = r"""
import json, sys
from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.file_utils import walk_mutatable_files

found = []
for path in walk_mutatable_files():
    data = SourceFileMutationData(path=path)
    data.load()
    for name, code in sorted(data.exit_code_by_key.items()):
        status = status_by_exit_code[code]
        diff = "" if status == "killed" else get_diff_for_mutant(name, path=path)
        found.append({"path": str(path), "name": name, "status": status, "diff": diff})
json.dump(found, sys.stdout)
"""


def copy_tree(destination: Path) -> None:
    """Tracked and untracked files, as the working tree has them; nothing git ignores."""
    listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def configure(copy: Path, patterns: tuple[str, ...], tests: tuple[str, ...]) -> None:
    also = sorted(p.name for p in copy.iterdir() if p.name not in ("src", "tests"))
    config = {
        "source_paths": [PACKAGE],
        "only_mutate": [f"{PACKAGE}/{pattern}" for pattern in patterns],
        "pytest_add_cli_args_test_selection": list(dict.fromkeys(t.split("::", 1)[0]
                                                                   for t in tests)),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", *_keywords(tests)],
        "also_copy": also,
        "use_git_change_detection": False,
    }
    lines = ["", "[tool.mutmut]"] + [f"{key} = {json.dumps(value)}" for key, value in
                                      config.items()]
    with (copy / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


def _keywords(tests: tuple[str, ...]) -> list[str]:
    """`file::word` in a module's tests: only that file's tests whose id holds `word` (`-k`);
    the other files' tests all run (a `-k` applies to every file, and `not git` would drop
    `test_github_…` from them)."""
    scoped = [f"(not {Path(file).name} or ({word}))"
              for file, _, word in (t.partition("::") for t in tests if "::" in t)]
    return ["-k", " and ".join(scoped)] if scoped else []


#: Imported by every Python process of the run: it lies in the copy's `mutants/src`, where
#: the tests point their child processes (PYTHONPATH) to find the package. mutmut records which
#: tests call which function by running the suite once with MUTANT_UNDER_TEST=stats; a child
#: process (the action, the CLI) inheriting that value would try to record too and fail, lacking
#: mutmut's state, so children of that run use the original functions. With a mutant's name,
#: children run the mutant, as the test's own process does.
SITECUSTOMIZE = """
import os
if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    os.environ["MUTANT_UNDER_TEST"] = ""
"""


def run_mutmut(copy: Path, children: int, log: Path) -> None:
    source = copy / "mutants" / "src"
    source.mkdir(parents=True)  # mutmut adds the package next to it, and keeps this file
    (source / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(source), PYTHONDONTWRITEBYTECODE="1")
    env.pop("CI", None)  # a missing tool skips its test here, as on a developer's machine
    with log.open("wb") as out:
        done = subprocess.run([sys.executable, "-c", BOOT, str(children)], cwd=copy, env=env,
                              stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise SystemExit(f"mutmut failed (exit {done.returncode}); the end of {log}:\n{tail}")


def collect(copy: Path) -> list[dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", COLLECT], cwd=copy, capture_output=True,
                          text=True, check=True)
    found: list[dict[str, Any]] = json.loads(done.stdout)
    return found


# -- reading the results ------------------------------------------------------------------------


@dataclass
class Mutant:
    name: str
    file: str  # inside the package, e.g. `ledger/file.py`
    function: str  # `Class.method` or `function`
    status: str
    line: int = 0
    original: str = ""
    mutated: str = ""
    equivalent: Equivalent | None = None


def function_of(name: str) -> str:
    """`Coordinator._reserve` for `….coordinator.xǁCoordinatorǁ_reserve__mutmut_3`."""
    mangled = name.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    if mangled.startswith("x\u01c1"):
        return ".".join(mangled.split("\u01c1")[1:3])
    return mangled.removeprefix("x_")


def changed_lines(diff: str) -> tuple[int, str, str, str]:
    """(position of the first changed line inside the function, that line, all lines before,
    all lines after), whitespace-trimmed and joined by one space."""
    before: list[str] = []
    after: list[str] = []
    first = 0
    position = 0
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        hunk = re.match(r"@@ -(\d+)", line)
        if hunk:
            position = int(hunk.group(1)) - 1
            continue
        if line.startswith("-"):
            before.append(line[1:].strip())
            first = first or position + 1
        elif line.startswith("+"):
            after.append(line[1:].strip())
        if not line.startswith("+"):
            position += 1
    return first, (before or [""])[0], " ".join(before), " ".join(after)


def function_spans(path: Path) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    spans[f"{node.name}.{item.name}"] = _span(item)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            spans[node.name] = _span(node)
    return spans


def _span(node: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[int, int]:
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    return start, node.end_lineno or node.lineno


def locate(source: list[str], span: tuple[int, int] | None, offset: int, text: str) -> int:
    """The file line of a mutation: the line of the function that reads `text`, nearest to
    where the diff puts it."""
    if span is None:
        return 0
    guess = span[0] + offset - 1
    candidates = [number for number in range(span[0], span[1] + 1)
                  if source[number - 1].strip() == text]
    return min(candidates, key=lambda n: abs(n - guess)) if candidates else guess


def read(found: list[dict[str, Any]]) -> list[Mutant]:
    mutants: list[Mutant] = []
    spans: dict[str, dict[str, tuple[int, int]]] = {}
    sources: dict[str, list[str]] = {}
    for entry in found:
        file = entry["path"].split(PACKAGE + "/", 1)[-1]
        if file not in spans:
            path = ROOT / PACKAGE / file
            spans[file] = function_spans(path)
            sources[file] = path.read_text(encoding="utf-8").splitlines()
        mutant = Mutant(entry["name"], file, function_of(entry["name"]), entry["status"])
        if entry["diff"]:
            offset, text, mutant.original, mutant.mutated = changed_lines(entry["diff"])
            mutant.line = locate(sources[file], spans[file].get(mutant.function), offset, text)
        mutants.append(mutant)
    return mutants


def apply_equivalents(mutants: list[Mutant]) -> list[Equivalent]:
    """Mark the survivors listed in EQUIVALENT; return the entries that matched nothing."""
    used: set[Equivalent] = set()
    for mutant in mutants:
        if mutant.status in KILLED:
            continue
        for entry in EQUIVALENT:
            if (entry.file, entry.function, entry.original, entry.mutated) == (
                    mutant.file, mutant.function, mutant.original, mutant.mutated):
                mutant.equivalent = entry
                used.add(entry)
                break
    return [entry for entry in EQUIVALENT if entry not in used]


def module_of(file: str, chosen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> str:
    for module, patterns in chosen.items():
        if any(fnmatch.fnmatchcase(file, pattern) for pattern in patterns[0]):
            return module
    return file


def report(mutants: list[Mutant], chosen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]],
           elapsed: float) -> int:
    rows: dict[str, dict[str, int]] = {m: {"mutants": 0, "killed": 0, "survived": 0,
                                            "equivalent": 0} for m in chosen}
    for mutant in mutants:
        row = rows.setdefault(module_of(mutant.file, chosen),
                              {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0})
        row["mutants"] += 1
        if mutant.status in KILLED:
            row["killed"] += 1
        elif mutant.equivalent is not None:
            row["equivalent"] += 1
        else:
            row["survived"] += 1
    print(f"\n{'module':<14} {'mutants':>8} {'killed':>7} {'survived':>9} {'equivalent':>11} "
          f"{'score':>7}")
    above: list[str] = []
    totals = {"mutants": 0, "killed": 0, "survived": 0, "equivalent": 0}
    for module, row in rows.items():
        for key in totals:
            totals[key] += row[key]
        print(_row(module, row))
        judged = row["mutants"] - row["equivalent"]
        if judged and 100.0 * row["survived"] / judged > TARGET_SURVIVING:
            above.append(module)
    print(_row("all", totals))
    print(f"\nwall time {elapsed / 60:.1f} min; score = killed / (mutants - equivalent); "
          "timeouts count as killed")

    survivors = [m for m in mutants if m.status not in KILLED and m.equivalent is None]
    if survivors:
        print(f"\nsurvivors ({len(survivors)}):")
        for m in sorted(survivors, key=lambda m: (m.file, m.line)):
            print(f"  {m.file}:{m.line} {m.function}: `{m.original}` -> `{m.mutated}` "
                  f"[{m.status}] {m.name}")
    equivalents = [m for m in mutants if m.equivalent is not None]
    if equivalents:
        print(f"\nequivalent ({len(equivalents)}):")
        for m in sorted(equivalents, key=lambda m: (m.file, m.line)):
            assert m.equivalent is not None
            print(f"  {m.file}:{m.line} `{m.original}` -> `{m.mutated}`: {m.equivalent.reason}")
    if above:
        print(f"\nabove {TARGET_SURVIVING:g} % surviving: {', '.join(above)}")
        return 1
    return 0


def _row(module: str, row: dict[str, int]) -> str:
    judged = row["mutants"] - row["equivalent"]
    score = f"{100.0 * row['killed'] / judged:6.1f}%" if judged else "     -"
    return (f"{module:<14} {row['mutants']:>8} {row['killed']:>7} {row['survived']:>9} "
            f"{row['equivalent']:>11} {score:>7}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--module", action="append", choices=sorted(MODULES),
                        help="only this module (repeatable); default: all")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 2,
                        help="mutants tested at once (default: one per CPU)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary copy and print where it is")
    args = parser.parse_args(argv)
    try:
        import mutmut  # noqa: F401 - only to say how to install it
    except ImportError:
        print("mutmut is not installed: pip install -e '.[mutation]'", file=sys.stderr)
        return 2
    chosen = {m: MODULES[m] for m in (args.module or MODULES)}
    started = time.monotonic()
    mutants: list[Mutant] = []
    for module, (patterns, tests) in chosen.items():
        copy = Path(tempfile.mkdtemp(prefix="spd-mutation-"))
        try:
            copy_tree(copy)
            configure(copy, patterns, tests)
            log = copy / "mutmut.log"
            print(f"mutating {module} in {copy} (log: {log}) ...", flush=True)
            run_mutmut(copy, args.max_children, log)
            mutants += read(collect(copy))
        finally:
            if args.keep:
                print(f"kept: {copy} (cd there; `python -m mutmut show NAME`)")
            else:
                shutil.rmtree(copy, ignore_errors=True)
    unmatched = apply_equivalents(mutants)
    code = report(mutants, chosen, time.monotonic() - started)
    chosen_files = {m.file for m in mutants}
    stale = [e for e in unmatched if e.file in chosen_files]
    if stale:
        print("\nEQUIVALENT entries that matched no surviving mutant (the code changed, or a "
              "test kills them now; remove or update them):")
        for entry in stale:
            print(f"  {entry.file}:{entry.line} `{entry.original}` -> `{entry.mutated}`")
    return code


if __name__ == "__main__":
    sys.exit(main())
