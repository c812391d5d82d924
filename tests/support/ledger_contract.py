"""The ledger contract, parametrized over every registered backend (pytest plugin).

A support module that can stand up a backend registers it once, at import time:

    from support.ledger_contract import LedgerBackend, LedgerTarget, register

    def _git_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
        server = request.getfixturevalue("git_server")   # any fixture, any scope
        return LedgerTarget(spec=server.url, environ={...}, github_token=..., secrets=(token,))

    register(LedgerBackend("git-file", _git_target, clock_tolerance=0.0))

Every test that asks for the `ledger_backend` fixture then runs once per storing backend
(tests/test_ledger_contract.py); `racing_ledger_backend` once per storing backend with
`race=True` (tests/test_ledger_race.py); `nonstoring_ledger_backend` once per backend with
`stores=False` (`none`), which only promises never to block. The parametrization
happens at collection time (`pytest_generate_tests`), so a module registered later in
`pytest_plugins` still counts.

A target is plain data (a spec and a context), so the race test can rebuild the ledger in
separate processes with `open_ledger(target.spec, target.context())`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from streampixel_distribute.ledger import Ledger, LedgerContext, Now, open_ledger


@dataclass(frozen=True)
class LedgerTarget:
    """How to open one backend instance: everything a separate process needs."""

    spec: str
    environ: Mapping[str, str] = field(default_factory=dict)
    github_token: str = ""
    #: Strings that must never appear in `description` or error text (passwords, tokens).
    secrets: tuple[str, ...] = ()

    def context(self, now: Now = time.time) -> LedgerContext:
        return LedgerContext(environ=dict(self.environ), github_token=self.github_token, now=now)

    def open(self, now: Now = time.time) -> Ledger:
        return open_ledger(self.spec, self.context(now))


@dataclass(frozen=True)
class LedgerBackend:
    name: str
    #: Builds a fresh target for one test; may request fixtures through `request`.
    setup: Callable[[pytest.FixtureRequest, Path], LedgerTarget]
    #: False for `none`: nothing is stored, so only "never blocks" applies.
    stores: bool = True
    #: Seconds a returned slot may be off when the backend converts from its own clock (Redis
    #: `TIME`): the conversion error is bounded by the round trip, not by clock skew.
    clock_tolerance: float = 0.0
    #: False for variants that share another backend's reservation code (Redis with a password,
    #: with TLS): the 32-process race test runs once per reservation algorithm, not per transport.
    race: bool = True
    marks: tuple[pytest.MarkDecorator, ...] = ()


#: Every backend the contract runs against. Append with `register`.
BACKENDS: list[LedgerBackend] = []


def register(backend: LedgerBackend) -> LedgerBackend:
    if any(b.name == backend.name for b in BACKENDS):
        raise ValueError(f"ledger backend {backend.name!r} registered twice")
    BACKENDS.append(backend)
    return backend


#: Float noise of epoch-second arithmetic (an ulp near 1.7e9 is about 2.4e-7 s).
EPS = 1e-3


@dataclass
class BackendUnderTest:
    """One backend, one test: opens ledgers on a fresh target and closes them afterwards."""

    backend: LedgerBackend
    target: LedgerTarget
    opened: list[Ledger] = field(default_factory=list)

    @property
    def tolerance(self) -> float:
        return self.backend.clock_tolerance + EPS

    def open(self, now: Now = time.time) -> Ledger:
        ledger = self.target.open(now)
        self.opened.append(ledger)
        return ledger

    @staticmethod
    def new_key() -> str:
        """A key no other test uses: backends on session-wide servers stay independent."""
        return f"sp-test-{uuid.uuid4().hex}"


_SELECTIONS: dict[str, Callable[[LedgerBackend], bool]] = {
    "ledger_backend": lambda b: b.stores,
    "racing_ledger_backend": lambda b: b.stores and b.race,
    "nonstoring_ledger_backend": lambda b: not b.stores,
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name, wanted in _SELECTIONS.items():
        if name in metafunc.fixturenames:
            params = [pytest.param(b, id=b.name, marks=b.marks) for b in BACKENDS if wanted(b)]
            metafunc.parametrize(name, params, indirect=True)


def _under_test(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    backend: LedgerBackend = request.param
    under_test = BackendUnderTest(backend, backend.setup(request, tmp_path))
    yield under_test
    for ledger in under_test.opened:
        ledger.close()


@pytest.fixture
def ledger_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    yield from _under_test(request, tmp_path)


@pytest.fixture
def racing_ledger_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[BackendUnderTest]:
    yield from _under_test(request, tmp_path)


@pytest.fixture
def nonstoring_ledger_backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[BackendUnderTest]:
    yield from _under_test(request, tmp_path)


# -- the backends that need no server ------------------------------------------------------------


def _file_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    return LedgerTarget(spec=(tmp_path / "ledger.json").as_uri())


def _none_target(request: pytest.FixtureRequest, tmp_path: Path) -> LedgerTarget:
    return LedgerTarget(spec="none")


register(LedgerBackend("file", _file_target))
register(LedgerBackend("none", _none_target, stores=False))
