"""The guard that makes CI test the built wheel (tests/support/product.py), on real directories,
and the console script the wheel installs."""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

from streampixel_distribute import __version__
from support import product


def installed_copy(tmp_path: Path) -> Path:
    """This checkout's package as an install puts it: site-packages/streampixel_distribute."""
    target = tmp_path / "site-packages" / product.PACKAGE
    shutil.copytree(product.SOURCE, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def test_a_faithful_install_passes(tmp_path: Path) -> None:
    here = installed_copy(tmp_path)
    (here / "__pycache__").mkdir(exist_ok=True)
    (here / "__pycache__" / "cli.cpython-313.pyc").write_bytes(b"bytecode is not compared")
    assert product.installed_package_problems(here, here) == []


def test_the_source_tree_is_refused() -> None:
    problems = product.installed_package_problems(product.SOURCE, product.SOURCE)
    assert problems == [f"the tests import the source tree ({product.SOURCE}), not an installed "
                        "wheel"]


def test_a_stale_or_incomplete_wheel_is_refused(tmp_path: Path) -> None:
    here = installed_copy(tmp_path)
    cli = here / "cli.py"
    cli.write_text(cli.read_text() + "\n# changed after the wheel was built\n")
    assert "a stale or foreign wheel" in " ".join(product.installed_package_problems(here, here))
    shutil.rmtree(here)
    here = installed_copy(tmp_path)
    next(here.glob("schema/*.json")).unlink()  # package data the build left out
    assert "a stale or foreign wheel" in " ".join(product.installed_package_problems(here, here))


def test_children_importing_another_package_are_refused(tmp_path: Path) -> None:
    here = installed_copy(tmp_path)
    problems = product.installed_package_problems(here, product.SOURCE)
    assert problems == [f"the tests import {here} but the processes they start import "
                        f"{product.SOURCE}"]


def test_the_product_command_runs_the_package_the_tests_import() -> None:
    assert product.child_package_dir() == product.package_dir()
    done = subprocess.run(product.command("--version"), env=product.env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout) == (0, f"streampixel-distribute {__version__}\n")


def test_the_console_script_is_installed() -> None:
    """What `pipx run streampixel-distribute` and `pip install` users run."""
    script = Path(sysconfig.get_path("scripts")) / "streampixel-distribute"
    done = subprocess.run([str(script), "--help"], env=product.env(), capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: streampixel-distribute ")
