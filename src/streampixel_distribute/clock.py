"""Time, injected: the coordinator asks a Clock for `time()` and `sleep()` so tests never sleep.

`SystemClock.sleep` wakes early when a cancellation signal arrives and raises `Cancelled`, so a
cancelled job stops waiting at once and still writes its outputs.
"""

from __future__ import annotations

import signal
import threading
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


class SystemClock:
    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._signum = 0
        self._shielded = False

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        self.check()
        if seconds > 0 and self._cancel.wait(seconds):
            self.check()

    def check(self) -> None:
        """Raise `Cancelled` if a cancellation signal has arrived."""
        if self._cancel.is_set():
            name = signal.Signals(self._signum).name
            raise Cancelled(self._signum, f"received {name}")

    def cancel(self, signum: int) -> None:
        self._signum = signum
        self._cancel.set()

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


class FakeClock:
    """A clock for tests: `sleep` advances time instantly and records what was slept."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
