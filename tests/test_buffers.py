"""Large transient arrays from the system allocator (:mod:`ballot_dask.buffers`)."""

from __future__ import annotations

import numpy as np
import pytest

from ballot_dask.buffers import empty_buffer


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
