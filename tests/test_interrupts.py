"""Interrupts are never lost: a signal whose KeyboardInterrupt is swallowed (raised inside a
garbage-collector callback) still stops the next iteration and the move of an output into
place."""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from ballot_dask.interrupts import raise_if_interrupted, signals_as_interrupt
from ballot_dask.storage import atomic_output


def _until_the_handler_runs() -> None:
    """Run bytecodes (at one of which Python runs a pending signal's handler, whose exception
    ends this loop) for at most 10 s."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        pass


def _swallowed_signal(signum: int, monkeypatch: pytest.MonkeyPatch) -> list[BaseException]:
    """Deliver ``signum`` to this process from inside a garbage-collector callback, where
    Python runs its handler and then drops the handler's exception, as ``distributed``'s
    own callback once made an interrupted fit carry on; returns what was dropped."""
    dropped: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda info: dropped.append(info.exc_value))

    def callback(phase: str, info: dict) -> None:
        if phase == "start" and not dropped:
            os.kill(os.getpid(), signum)
            _until_the_handler_runs()

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)
    return dropped


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_raises_keyboard_interrupt_and_is_remembered(signum: int) -> None:
    before = signal.getsignal(signum)
    with signals_as_interrupt(signum):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            _until_the_handler_runs()
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    # the handler is restored and the interrupt forgotten once the block ends
    assert signal.getsignal(signum) is before
    raise_if_interrupted()


def test_a_swallowed_interrupt_is_raised_at_the_next_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with signals_as_interrupt(signal.SIGTERM):
        raise_if_interrupted()  # nothing yet
        dropped = _swallowed_signal(signal.SIGTERM, monkeypatch)
        assert len(dropped) == 1 and isinstance(dropped[0], KeyboardInterrupt)
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()


def test_an_inner_block_keeps_the_outer_blocks_interrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    with signals_as_interrupt(signal.SIGINT):
        with signals_as_interrupt(signal.SIGTERM):
            _swallowed_signal(signal.SIGTERM, monkeypatch)
        # the SLURM block ended (its cluster closed); the fit's block still knows
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
    raise_if_interrupted()


def test_an_output_is_not_moved_into_place_after_a_swallowed_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "fit.zarr"
    with signals_as_interrupt(signal.SIGTERM):
        with pytest.raises(KeyboardInterrupt):
            with atomic_output(out) as tmp:
                tmp.mkdir()
                (tmp / "labels").write_text("written")
                _swallowed_signal(signal.SIGTERM, monkeypatch)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary directory is gone too


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with signals_as_interrupt(signal.SIGINT, signal.SIGTERM):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert callable(signal.getsignal(signal.SIGTERM))
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_outside_the_main_thread_the_block_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen: list[object] = []

    def run() -> None:
        with signals_as_interrupt(signal.SIGTERM):
            seen.append(signal.getsignal(signal.SIGTERM))
            raise_if_interrupted()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert seen == [before]
