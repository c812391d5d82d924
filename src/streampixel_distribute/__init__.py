"""Trigger Streampixel build distribution from CI, one account-wide rate-limit slot at a time."""

import time as _time

__version__ = "0.1.0"

#: When the package was first imported: how long the rest of start-up takes on this machine,
#: under its present load, tells how long importing the HTTP stack will (commands.py).
STARTED = _time.perf_counter()
