"""A local stand-in for the Streampixel API: a real HTTP server for demos, tests, offline pipelines.

It answers `.../projects/distribute-file`, `.../projects/upload-file` and
`.../projects/test-webhook` under any path prefix with the documented status codes and `message`
strings, enforces the per-user write rate limit, runs a fake build pipeline that sends webhook
events (to loopback URLs only), and exposes `/_emulator/...` control endpoints so a test can
inspect what it received and inject faults. See docs/emulator.md.

Modules: `seed` (demo data, seed format), `state` (state and the API's rules), `faults`,
`webhooks` (pipeline events, deliveries), `http` (handler, control endpoints), `cli` (`main`).
Only the standard library is used, so the emulator starts fast in a subprocess, and nothing from
the rest of this package: a stand-in that shared the client's code could share its bugs.
"""

from .cli import main
from .messages import (
    MSG_BAD_AUTO_RELEASE,
    MSG_BAD_FILE_URL,
    MSG_NO_URL,
    MSG_QUEUED,
    MSG_TRIGGERED,
    rate_limit_message,
)  # fmt: skip
from .seed import DEMO, DemoAccount, SeedError
from .state import Config, Emulator

__all__ = [
    "DEMO",
    "MSG_BAD_AUTO_RELEASE",
    "MSG_BAD_FILE_URL",
    "MSG_NO_URL",
    "MSG_QUEUED",
    "MSG_TRIGGERED",
    "Config",
    "DemoAccount",
    "Emulator",
    "SeedError",
    "main",
    "rate_limit_message",
]
