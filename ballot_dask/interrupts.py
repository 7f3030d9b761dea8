"""Interrupts that are never lost on the way.

Python runs a signal handler between two bytecodes of the main thread, wherever they are.  A
``KeyboardInterrupt`` raised there inside a garbage-collector callback (``distributed``
registers one), a ``__del__`` or a weak-reference callback is printed ("Exception ignored
in ...") and dropped, and the program carries on: an interrupted ``ballot-dask fit`` would
then finish and write its output as if nothing had happened.  The handlers installed by
:func:`signals_as_interrupt` therefore also record the interrupt, and the code that must not
go on after one (the next Lloyd iteration, the move of a finished output into place) asks
:func:`raise_if_interrupted` first.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_requested = threading.Event()
_depth = 0  # blocks of signals_as_interrupt entered, nested


@contextmanager
def signals_as_interrupt(*signums: int) -> Iterator[None]:
    """Within the block, each of ``signums`` (e.g. ``signal.SIGINT``, ``signal.SIGTERM``)
    raises ``KeyboardInterrupt`` in the main thread and is remembered until the outermost
    such block ends (:func:`raise_if_interrupted`).  A signal the process ignores (SIGINT in
    a background job of a script) stays ignored; outside the main thread (where no signal
    handler can be set) the block changes nothing."""
    global _depth
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        _requested.set()
        raise KeyboardInterrupt

    if _depth == 0:
        _requested.clear()
    previous = {
        signum: signal.signal(signum, interrupt)
        for signum in signums
        if signal.getsignal(signum) is not signal.SIG_IGN
    }
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if _depth == 0:
            _requested.clear()


def raise_if_interrupted() -> None:
    """Raise ``KeyboardInterrupt`` when a signal of an enclosing :func:`signals_as_interrupt`
    block arrived, even if the exception its handler raised was swallowed."""
    if _requested.is_set():
        raise KeyboardInterrupt
