"""The hashed locks still say what pyproject.toml says.

requirements.txt is what the image installs (`pip install --require-hashes`): every runtime
requirement of pyproject.toml (its dependencies and the user-facing extras) pinned at a version the
specifier allows, every package those need in turn pinned too, and nothing that nothing requires.
The graph comes from the installed distributions' own metadata, which is exact only where the
installed version is the locked one: scripts/test.sh installs the lock into the test venv first.
When a test here fails, `bash scripts/lock.sh` writes the locks anew (see CONTRIBUTING.md).
"""

from __future__ import annotations

import re
from importlib import metadata

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from support.lock import (
    BUILD_LOCK,
    RELEASE_LOCK,
    ROOT,
    RUNTIME_LOCK,
    Lock,
    applies,
    pyproject,
    read_lock,
)
from support.tools import missing

# Extras that are not part of the product: the image does not serve them.
DEVELOPMENT_EXTRAS = ("test", "lint", "mutation")
FIX = "run `bash scripts/lock.sh` (CONTRIBUTING.md: Locked dependencies)"


def runtime_requirements() -> list[Requirement]:
    """pyproject.toml's dependencies and every extra a user can ask for (`redis`, `listen`, …)."""
    project = pyproject()["project"]
    assert isinstance(project, dict)
    extras: dict[str, list[str]] = project["optional-dependencies"]
    served = [r for extra, reqs in extras.items() if extra not in DEVELOPMENT_EXTRAS for r in reqs]
    names = [*project["dependencies"], *served]
    return [Requirement(name) for name in names]


def pin_problems(lock: Lock, requirements: list[Requirement], via: str,
                 extra: str = "") -> list[str]:
    problems = []
    for requirement in requirements:
        if not applies(requirement, lock.python, extra):
            continue
        pin = lock.pins.get(canonicalize_name(requirement.name))
        if pin is None:
            problems.append(f"{requirement} ({via}) is not in {lock.path.name}")
        elif not requirement.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{requirement} ({via}) but {lock.path.name} has {pin.version}")
    return problems


def test_every_runtime_requirement_is_pinned_within_its_specifier() -> None:
    lock = read_lock(RUNTIME_LOCK)
    assert "pyproject.toml" in lock.command and "--generate-hashes" in lock.command, lock.command
    assert pin_problems(lock, runtime_requirements(), "pyproject.toml") == [], FIX


def test_the_lock_holds_every_transitive_requirement_and_nothing_else() -> None:
    lock = read_lock(RUNTIME_LOCK)
    installed = {name: _installed_version(name) for name in lock.pins}
    stale = {name: f"{found} (locked {lock.pins[name].version})"
             for name, found in installed.items() if found != lock.pins[name].version}
    if stale:
        missing(f"the test venv does not hold the lock's versions, so their metadata cannot be "
                f"read: {stale}; `pip install --require-hashes --no-deps -r requirements.txt` "
                f"(scripts/test.sh does)")
    problems: list[str] = []
    reached: set[NormalizedName] = set()
    todo = [(req, "pyproject.toml") for req in runtime_requirements()]
    while todo:
        requirement, via = todo.pop()
        problems += pin_problems(lock, [requirement], via)
        name = canonicalize_name(requirement.name)
        if not applies(requirement, lock.python) or name not in lock.pins:
            continue
        extras = ("", *sorted(requirement.extras))
        if name in reached and not requirement.extras:
            continue
        reached.add(name)
        for line in metadata.requires(name) or []:
            needed = Requirement(line)
            if any(applies(needed, lock.python, extra) for extra in extras):
                todo.append((needed, f"required by {name}"))
    problems += [f"{name}=={lock.pins[name].version} is in {lock.path.name} but nothing requires"
                 f" it" for name in sorted(set(lock.pins) - reached)]
    assert problems == [], FIX


def _installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def test_every_pin_carries_hashes_and_the_image_requires_them() -> None:
    for path in (RUNTIME_LOCK, BUILD_LOCK, RELEASE_LOCK):
        lock = read_lock(path)
        assert lock.pins, path
        assert [name for name, pin in lock.pins.items() if not pin.hashes] == [], path
    # The Dockerfile's install of each lock refuses an unhashed or unpinned package.
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    installs = [line for line in dockerfile.splitlines() if re.search(r"pip install .*-r ", line)]
    assert len(installs) == 2, installs  # the build tools, the runtime
    for line in installs:
        assert "--require-hashes" in line and "--only-binary=:all:" in line, line


def test_the_locks_are_compiled_for_the_image_python() -> None:
    """Markers in a lock are evaluated for the Python that compiled it: the image's."""
    base = re.search(r"^FROM docker\.io/library/python:(\d+\.\d+)-slim@sha256:[0-9a-f]{64} ",
                     (ROOT / "Dockerfile").read_text(), re.M)
    assert base is not None, "the Dockerfile pins python:X.Y-slim by digest"
    release = (ROOT / ".github/workflows/release.yml").read_text()
    assert re.findall(r'python-version: "(\d+\.\d+)"', release) == [base[1]], \
        "release.yml builds with the image's Python"
    for path in (RUNTIME_LOCK, BUILD_LOCK, RELEASE_LOCK):
        assert read_lock(path).python == base[1], f"{path.name}: {FIX}"


def test_the_build_locks_satisfy_the_build_system() -> None:
    build, release = read_lock(BUILD_LOCK), read_lock(RELEASE_LOCK)
    system = pyproject()["build-system"]
    assert isinstance(system, dict)
    requires = [Requirement(r) for r in system["requires"]]
    assert pin_problems(build, [*requires, Requirement("build")], "[build-system]") == [], FIX
    # release.yml builds with release.txt: the same frontend and backend as everyone else.
    assert {n: p.version for n, p in release.pins.items() if n in build.pins} == \
        {n: p.version for n, p in build.pins.items()}, FIX
    assert "twine" in release.pins
