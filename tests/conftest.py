"""Test fixtures live in tests/support/, one module per real server the tests start.

Modules that others import come first, so pytest can rewrite their asserts before any import.
"""

pytest_plugins = [
    "support.runner",
    "support.ledger_contract",
    "support.emulator",
    "support.container",
    "support.act",
    "support.listener",
    "support.git_server",
    "support.redis_server",
]
