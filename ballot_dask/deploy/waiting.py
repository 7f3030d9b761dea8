"""Waiting for the workers of a cluster the command started, with a bounded time and a
one-line account of what went wrong."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["WorkersDidNotStart", "wait_for_workers"]


class WorkersDidNotStart(TimeoutError):
    """The workers did not join within ``--wait-workers``, or the resource manager refused
    them; the message says what it reported."""


def wait_for_workers(
    client: Any,
    n_workers: int,
    timeout: float,
    *,
    report: Callable[[], str],
    refused: Callable[[], str | None] = lambda: None,
    poll: float = 1.0,
) -> None:
    """Return once ``n_workers`` workers have joined ``client``'s scheduler.

    Parameters
    ----------
    client : distributed.Client
        A client of the cluster's scheduler.
    n_workers : int
        How many workers to wait for.
    timeout : float
        Seconds to wait at most (``--wait-workers``).
    report : callable
        Called on a time-out: what the resource manager says of the workers (their jobs'
        states and pending reasons), one line.
    refused : callable, optional
        Called between waits: a message when the resource manager refused the workers (a
        job that cannot be submitted), which ends the wait at once.
    poll : float, default=1.0
        Seconds between two checks of ``refused``.

    Raises
    ------
    WorkersDidNotStart
        On a refusal, or when the time runs out.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            client.wait_for_workers(n_workers, timeout=max(0.1, min(poll, left)))
            return
        except TimeoutError:
            pass
        reason = refused()
        if reason:
            raise WorkersDidNotStart(reason)
        if time.monotonic() >= deadline:
            joined = len(client.scheduler_info(n_workers=-1).get("workers", {}))
            raise WorkersDidNotStart(
                f"--wait-workers: {joined} of {n_workers} workers joined within "
                f"{timeout:g} s; {report()}"
            )
