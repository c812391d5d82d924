"""Trigger Streampixel build distribution from CI, one account-wide rate-limit slot at a time."""

import time as _time

__version__ = "0.1.0"

#: CPU seconds the process had spent when the package was first imported: the interpreter's own
#: start-up, a measure of how fast this machine runs Python right now (load, instrumentation).
STARTUP_CPU = _time.process_time()
