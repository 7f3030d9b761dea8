"""The in-memory engine's band budget: a quarter of the available memory, read again after
``_BUDGET_SECONDS``."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from ballot_dask import blocks as engine
from ballot_dask.blocks import RowBlocks


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now


def test_the_budget_is_a_quarter_of_the_available_memory_read_again_after_a_while(
    monkeypatch,
):
    readings: list[int] = []
    available = [8 << 30]

    def virtual_memory():
        readings.append(available[0])
        return SimpleNamespace(available=available[0])

    clock = _Clock()
    monkeypatch.setattr(engine.psutil, "virtual_memory", virtual_memory)
    monkeypatch.setattr(engine, "time", clock)
    blocks = RowBlocks(np.zeros((10, 2)))
    assert blocks.band_budget() == 2 << 30
    available[0] = 4 << 30
    clock.now += 0.5 * engine._BUDGET_SECONDS
    assert blocks.band_budget() == 2 << 30  # (within the interval: the last reading)
    assert len(readings) == 1
    clock.now += 0.5 * engine._BUDGET_SECONDS
    assert blocks.band_budget() == 1 << 30
    assert len(readings) == 2
    # another engine (another fit) reads it at once
    assert RowBlocks(np.zeros((10, 2))).band_budget() == 1 << 30
    assert len(readings) == 3
