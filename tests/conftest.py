"""Test fixtures live in tests/support/, one module per real server the tests start."""

pytest_plugins = [
    "support.container",
    "support.emulator",
    "support.listener",
    "support.runner",
    "support.ledger_contract",
    "support.git_server",
    "support.redis_server",
]
