"""Large transient arrays from the system allocator (:mod:`ballot_dask.buffers`)."""

from __future__ import annotations

import numpy as np
import pytest

from ballot_dask.buffers import empty_buffer, full_buffer, least_of


@pytest.mark.parametrize(
    ("shape", "dtype"),
    [
        ((3, 5), np.float64),
        ((1 << 20, 3), np.float64),
        ((1 << 21,), np.int32),
        ((0, 7), np.float32),
    ],
)
def test_buffers_are_writable_aligned_c_arrays_of_their_shape(shape, dtype) -> None:
    out = empty_buffer(shape, dtype)
    assert out.shape == shape and out.dtype == np.dtype(dtype)
    assert out.flags.c_contiguous and out.flags.aligned and out.flags.writeable
    out[...] = 7
    assert np.all(out == 7)
    # a large one outlives the function that made it (its memory goes with its last view)
    view = out.reshape(-1)[: max(out.size // 2, 0)]
    del out
    view[:] = 3
    assert np.all(view == 3)


@pytest.mark.parametrize("shape", [(4, 6), (1100, 1100)])
def test_full_buffer_is_np_full(shape) -> None:
    out = full_buffer(shape, np.inf)
    assert out.shape == shape and out.dtype == np.float64 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, np.full(shape, np.inf))
    ints = full_buffer(shape, -1, np.int64)
    assert ints.dtype == np.int64 and np.all(ints == -1)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_least_of_is_the_stacked_minimum_nan_and_inf_included(count) -> None:
    rng = np.random.default_rng(count)
    arrays = [rng.normal(size=(1100, 1100)) for _ in range(count)]
    arrays[0][0, :3] = [np.inf, np.nan, -np.inf]
    arrays[-1][1, 1] = np.nan
    out = least_of(arrays)
    np.testing.assert_array_equal(out, np.min(arrays, axis=0))
    assert not any(np.shares_memory(out, a) for a in arrays)
