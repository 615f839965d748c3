"""Stopping a command cleanly on a signal: Ctrl-C, SIGTERM (``timeout``, ``kill``) or SIGHUP become an exception
that runs every ``finally`` block (temporary files removed), then one line and exit status 128 + the signal.

Kept apart from the commands and free of heavy imports, so that an entry point can install it before torch loads.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Callable, Optional, Union


class Interrupted(BaseException):
    """A signal asked the command to stop. Raised wherever the program is, so that the ``finally`` blocks remove
    every temporary file; a BaseException like ``KeyboardInterrupt``, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: Signals that stop the command cleanly (exit status 128 + the signal's number: 130, 143, 129).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))
Handler = Union[Callable[[int, Optional[FrameType]], None], int, None]


def stop_on_signals() -> dict[int, Handler]:
    """Make ``STOP_SIGNALS`` raise ``Interrupted`` (their default handlers would exit at once, leaving temporary
    files, or print a traceback); returns the handlers to put back with ``restore_handlers``. Signals the process
    ignores (``nohup``, background jobs) stay ignored; outside the main thread, where Python cannot handle signals,
    nothing changes. Once one arrives the others are ignored, so a second Ctrl-C cannot cut the clean-up short."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    caught = [sig for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN]

    def stop(signum: int, frame: Optional[FrameType]) -> None:
        for sig in caught:
            signal.signal(sig, signal.SIG_IGN)
        raise Interrupted(signum)

    return {sig: signal.signal(sig, stop) for sig in caught}


def restore_handlers(previous: dict[int, Handler]) -> None:
    """Put back the handlers ``stop_on_signals`` replaced (``main`` also runs inside other programs and tests)."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def report_stop(command: str, stop: Interrupted, done: str) -> int:
    """Say in one line which signal stopped ``command`` and what it left (``done``); the exit status to return."""
    print(f"{command}: stopped by {signal.Signals(stop.signum).name}; {done}", file=sys.stderr)
    return 128 + stop.signum
