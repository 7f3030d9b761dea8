"""Progress of a fit on the command line.

On a terminal: one aligned line per Lloyd iteration (objective, its relative change, the
center shift, the exact repair's band, passes over X and the cost blocks, time), and a Dask
progress bar for any pass that runs longer than a couple of seconds.  Elsewhere (a batch job's
log): plain timestamped log lines from the ``ballot_dask`` logger.  Everything goes to stderr;
the results go to stdout.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from .lloyd import LloydState

__all__ = ["IterationDisplay", "PassProgress", "cli_logging"]

logger = logging.getLogger("ballot_dask")


@contextmanager
def cli_logging(mode: str, stream: TextIO | None = None) -> Iterator[None]:
    """Within the block, the ``ballot_dask`` logger writes to ``stream`` (stderr): INFO lines
    with a timestamp for ``mode="log"``, warnings only for ``"quiet"``, and for ``"tty"``
    (the terminal display replaces the log lines) warnings and the line saying that the
    kernels are being compiled (:mod:`ballot_dask.ahead`: up to a minute with nothing else
    on the terminal).  The logger is restored on exit."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if mode == "tty":
        handler.addFilter(_warnings_or_compiling)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if mode == "quiet" else logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def _warnings_or_compiling(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or record.name == "ballot_dask.ahead"


class IterationDisplay:
    """The per-iteration lines on a terminal (a ``LloydState`` callback)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self._header = False

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __call__(self, state: LloydState) -> None:
        if not self._header:
            self._write(
                f"{'iter':>5} {'objective':>15} {'change':>10} {'shift':>10} {'band':>8} "
                f"{'passes x/cost':>14} {'time':>8}"
            )
            self._header = True
        history = state.objective_history
        change = (
            (history[-1] - history[-2]) / abs(history[-2])
            if len(history) > 1 and history[-2]
            else float("nan")
        )
        passes = f"{state.passes.get('x', 0)}/{state.passes.get('cost', 0)}"
        band = "-" if state.band_size is None else str(state.band_size)
        done = " converged" if state.converged else ""
        self._write(
            f"{state.iteration:>5} {history[-1]:>15.8g} {change:>10.2e} {state.shift:>10.3g} "
            f"{band:>8} {passes:>14} {time.perf_counter() - self.start:>7.1f}s{done}"
        )

    def note(self, text: str) -> None:
        self._write(text)


class PassProgress:
    """Computes the engine's rounds on a distributed ``client`` (see
    :func:`~ballot_dask.dask_blocks.observe_rounds`); a round still running after ``after``
    seconds gets Dask's progress bar on ``stream``, cleared when it ends."""

    def __init__(self, client: Any, *, after: float = 2.0, stream: TextIO | None = None):
        self.client = client
        self.after = after
        self.stream = stream or sys.stderr

    def __call__(self, tasks: list[Any]) -> list[Any]:
        from distributed import wait

        futures = self.client.compute(tasks, optimize_graph=False)
        try:
            wait(futures, timeout=self.after)
        except TimeoutError:
            _bar(futures, self.client, self.stream)
        return self.client.gather(futures)


def _bar(futures: list[Any], client: Any, stream: TextIO) -> None:
    """Dask's text progress bar over ``futures`` and everything they depend on, on
    ``stream``; returns when they are done."""
    from distributed.diagnostics.progressbar import TextProgressBar

    class _Bar(TextProgressBar):
        def _draw_bar(self, remaining: int, all: int, **kwargs: Any) -> None:
            frac = (1 - remaining / all) if all else 1.0
            bar = "#" * int(self.width * frac)
            stream.write(
                f"\r  pass [{bar:<{self.width}}] {100 * frac:3.0f}% of {all} tasks "
                f"| {self.elapsed:.1f} s"
            )
            stream.flush()

        def _draw_stop(self, **kwargs: Any) -> None:
            stream.write("\33[2K\r")
            stream.flush()

    _Bar(futures, scheduler=client.scheduler.address, width=30)
