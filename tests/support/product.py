"""The one way tests start the product, and the check that it is the installed package.

`command(*args)` is `python -m streampixel_distribute …` with the interpreter running the tests,
and `env(base)` leaves PYTHONPATH out: a child imports the same installed package as the tests
themselves. That is the wheel under scripts/test.sh (a clean venv holding the built wheel) and an
editable install on a developer's machine; never the source tree by path.

Under CI (`CI=true`, as `.ci/run` sets it) the session fixture `_the_installed_package` stops the
run at once unless the tests and their children import the package from the installed wheel, and
that wheel holds exactly this checkout's files.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

import pytest

from support.tools import in_ci

PACKAGE = "streampixel_distribute"
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "src" / PACKAGE


def command(*args: str, program: list[str] | None = None) -> list[str]:
    """The product's command line: what `streampixel-distribute ARGS` runs; `program` replaces
    `-m streampixel_distribute` (e.g. `-c CODE` that plants a bug, then runs the product)."""
    return [sys.executable, *(program or ["-m", PACKAGE]), *args]


def env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment: `base` (default: this process's) without PYTHONPATH, except under
    bench/mutation.py (MUTANT_UNDER_TEST set), whose PYTHONPATH leads children to the mutant."""
    full = dict(os.environ if base is None else base)
    if "MUTANT_UNDER_TEST" not in os.environ:
        full.pop("PYTHONPATH", None)
    return full


def package_dir() -> Path:
    """Where `import streampixel_distribute` resolves in this process."""
    return Path(str(resources.files(PACKAGE))).resolve()


def child_package_dir() -> Path:
    """Where it resolves in a child started the way the tests start the product."""
    code = f"import {PACKAGE}, pathlib; print(pathlib.Path({PACKAGE}.__file__).parent.resolve())"
    done = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True,
                          text=True, timeout=60, check=True, cwd=ROOT)
    return Path(done.stdout.strip())


def _digests(top: Path) -> dict[str, str]:
    return {str(p.relative_to(top)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(top.rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def installed_package_problems(here: Path, child: Path) -> list[str]:
    """Why the package the tests import is not this checkout's built wheel (empty: it is)."""
    problems = []
    if here != child:
        problems.append(f"the tests import {here} but the processes they start import {child}")
    if here.is_relative_to(SOURCE.parent):
        problems.append(f"the tests import the source tree ({here}), not an installed wheel")
    elif _digests(here) != _digests(SOURCE):
        problems.append(f"the installed package ({here}) is not built from this checkout's "
                        f"{SOURCE.relative_to(ROOT)}: a stale or foreign wheel")
    return problems


@pytest.fixture(scope="session", autouse=True)
def _the_installed_package() -> None:
    if in_ci():
        problems = installed_package_problems(package_dir(), child_package_dir())
        if problems:
            pytest.exit("CI runs the tests against the built wheel: " + "; ".join(problems)
                        + ". Run `bash scripts/test.sh`: it builds the wheel and installs it"
                        " into a clean venv whose python runs pytest.", returncode=3)
