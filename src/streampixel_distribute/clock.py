"""Time, injected: the coordinator asks a Clock for `time()` and `sleep()` so tests never sleep
(tests/support/clock.py has the fake one). Also the one way times and waits are written.

`SystemClock.sleep` wakes early when a cancellation signal arrives and raises `Cancelled`, so a
cancelled job stops waiting at once and still writes its outputs.
"""

from __future__ import annotations

import math
import signal
import time
from types import FrameType
from typing import Protocol

from .errors import Cancelled


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Sleep; may raise `Cancelled`."""
        ...

    def shield(self) -> None:
        """From now on a cancellation signal is only recorded (the last words are written)."""
        ...


class SystemClock:
    def __init__(self) -> None:
        self._cancelled = False
        self._signum = 0
        self._shielded = False

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.check()
        if seconds > 0:
            # A cancellation signal raises out of the sleep (see install_signal_handlers).
            time.sleep(seconds)
            self.check()

    def check(self) -> None:
        """Raise `Cancelled` if a cancellation signal has arrived."""
        if self._cancelled:
            name = signal.Signals(self._signum).name
            raise Cancelled(self._signum, f"received {name}")

    def cancel(self, signum: int) -> None:
        self._signum = signum
        self._cancelled = True

    def shield(self) -> None:
        """From now on a signal is only recorded: the outputs are being written."""
        self._shielded = True

    def install_signal_handlers(self) -> None:
        """SIGTERM (a cancelled CI job) and SIGINT end waits promptly instead of killing us."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.cancel(signum)
            if not self._shielded:
                # Raising here also interrupts a request in flight, not only a sleep.
                raise Cancelled(signum, f"received {signal.Signals(signum).name}")

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)


def iso(ts: float | None, *, millis: bool = False) -> str:
    """`2026-12-01T12:04:00Z` (UTC), or "" for no time."""
    if ts is None:
        return ""
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
    return f"{text}.{int(ts % 1 * 1000):03d}Z" if millis else f"{text}Z"


def hms(seconds: float) -> str:
    """A wait as people say it: `0 s`, `45 s`, `2 min 01 s`, `1 h 5 min`."""
    whole = max(0, math.ceil(seconds - 0.001))
    if whole < 60:
        return f"{whole} s"
    minutes, sec = divmod(whole, 60)
    return f"{minutes} min {sec:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def from_now(seconds: float) -> str:
    """`now`, or `in 2 min 01 s`."""
    return "now" if seconds < 0.5 else f"in {hms(seconds)}"


def backoff(attempt: int, *, unit: float, cap: float) -> float:
    """Exponential backoff: `unit` doubled per attempt, at most `cap`; callers add jitter."""
    return min(cap, unit * 2.0 ** max(0, attempt))
