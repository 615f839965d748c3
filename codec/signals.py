"""Stopping a command cleanly on a signal: Ctrl-C, SIGTERM (``timeout``, ``kill``) or SIGHUP become an exception
that runs every ``finally`` block (temporary files removed), then one line and exit status 128 + the signal.

Kept apart from the commands and free of heavy imports, so that an entry point (``run_command``) can take the
signals before torch loads. While the command's modules import, a signal is only remembered: raising an exception
from inside an import printed tracebacks from deep in torch, was swallowed by import machinery (the command then ran
to the end as if nothing had come), or crossed torch's C++ and aborted the process (exit status 134).
"""

from __future__ import annotations

import importlib
import os
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


_pending: list[int] = []  # a stop signal that came while the command was starting, to act on once it has loaded


def _remember(signum: int, frame: Optional[FrameType]) -> None:
    if not _pending:
        _pending.append(signum)


def run_command(name: str, module: str, stopped: str) -> int:
    """A console command's entry point: imports ``module`` (seconds, with torch) and runs its ``main()`` with the
    stop signals raising ``Interrupted``.

    A signal during the imports is remembered and acted on once they are done: one line ("it was still starting,
    nothing was written") and 128 + the signal. One that reaches this function while the command runs (a command
    that does not catch ``Interrupted`` itself) ends it with one line saying ``stopped``. Once the command has
    returned, a late signal is remembered and ignored: the work is done, and its status stands.
    """
    caught = [sig for sig in STOP_SIGNALS if signal.getsignal(sig) != signal.SIG_IGN]
    for sig in caught:
        signal.signal(sig, _remember)
    command = importlib.import_module(module).main
    started = False
    try:
        stop_on_signals()
        if _pending:
            raise Interrupted(_pending[0])
        started = True
        return command()
    except Interrupted as exc:
        return report_stop(name, exc, stopped if started else "it was still starting, nothing was written")
    finally:
        for sig in caught:
            signal.signal(sig, _remember)


def exit_with_parent() -> None:
    """End this worker process as soon as its parent is gone, even when the parent was killed with SIGKILL and could
    not shut its workers down: an idle worker would otherwise wait on its queue forever, and a busy one finish its
    item for nobody (each holds hundreds of MB). The parent's sentinel becomes readable when it exits."""
    import multiprocessing.connection  # here, not at the top: entry points import this module before any handler

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def ignore_interrupts() -> None:
    """In a worker process: leave Ctrl-C, which the terminal sends to the whole process group, to the parent, which
    stops its workers itself; each worker would otherwise print its own KeyboardInterrupt traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
