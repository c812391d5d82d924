"""Test fixtures live in tests/support/, one module per real server the tests start.

Modules that others import come first, so pytest can rewrite their asserts before any import.
"""

pytest_plugins = [
    "support.product",
    "support.runner",
    "support.ledger_contract",
    "support.emulator",
    "support.container",
    "support.act",
    "support.listener",
    "support.git_server",
    "support.redis_server",
]

from collections.abc import Iterator  # noqa: E402 - after the plugin list, read first

import pytest  # noqa: E402

from streampixel_distribute import redact  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_redact_registry() -> Iterator[None]:
    """Secrets registered by one test must not mask (and so hide leaks in) the next."""
    redact.clear()
    yield
    redact.clear()
