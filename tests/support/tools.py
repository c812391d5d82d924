"""Programs the tests need (redis-server, openssl, podman, …): a missing one skips a test on a
developer's machine, and fails it under CI, where `.ci/run` installs everything and a skip would
hide a test that never ran."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        missing(f"`{name}` is not installed (apt-get install -y {package})")
    return path
