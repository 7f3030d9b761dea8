"""Reference solvers and data for the assignment tests.

References: POT's network simplex ``ot.emd`` for equality capacities and scipy's HiGHS
(``linprog``) on the dense transport LP for interval capacities (n not divisible by k,
size_min / size_max), both on ``C = ot.dist(X, centers)`` (squared Euclidean).
"""

from __future__ import annotations

import numpy as np
import ot
import scipy.sparse as sp
from scipy.optimize import linprog
from sklearn.datasets import make_blobs

from ballot_dask import AssignmentResult, Capacities
from ballot_dask.blocks import RowBlocks, sampled_rows

# --------------------------------------------------------------------------- references


def reference_cost(X: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return ot.dist(np.asarray(X, dtype=np.float64), np.asarray(centers, dtype=np.float64))


def emd_optimum(C: np.ndarray, sizes: np.ndarray) -> tuple[float, np.ndarray]:
    """POT's network simplex with equality marginals: (optimal cost, plan)."""
    n = C.shape[0]
    # the network simplex compares reduced costs with absolute thresholds: solve on costs
    # brought to [0, 1] (same optimum), report the cost of the plan on the original ones
    low, spread = float(C.min()), float(C.max() - C.min())
    unit = (C - low) / spread if spread > 0 else np.zeros_like(C)
    P = ot.emd(
        np.ones(n),
        np.asarray(sizes, dtype=np.float64),
        np.ascontiguousarray(unit),
        numItermax=10**7,
    )
    np.testing.assert_allclose(P.sum(axis=0), sizes, atol=1e-9)  # emd converged
    return float((P * C).sum()), P


def lp_matrices(n: int, k: int, lower: np.ndarray, upper: np.ndarray):
    """Variables F (n*k, row major): row sums == 1, lower <= column sums <= upper."""
    A_eq = sp.kron(sp.eye(n), np.ones((1, k)), format="csr")
    cols = sp.kron(np.ones((1, n)), sp.eye(k), format="csr")
    A_ub = sp.vstack([cols, -cols], format="csr")
    b_ub = np.concatenate([upper, -np.asarray(lower)]).astype(np.float64)
    return A_eq, np.ones(n), A_ub, b_ub


def lp_optimum(C: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[float, np.ndarray]:
    """scipy HiGHS on the interval-capacity transport LP: (optimal cost, plan)."""
    n, k = C.shape
    A_eq, b_eq, A_ub, b_ub = lp_matrices(n, k, lower, upper)
    res = linprog(
        C.ravel(), A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=(0, None), method="highs"
    )
    assert res.status == 0, res.message
    return float(res.fun), res.x.reshape(n, k)


def reference_optimum(C: np.ndarray, cap: Capacities) -> float:
    if cap.is_equality:
        return emd_optimum(C, cap.lower)[0]
    return lp_optimum(C, cap.lower, cap.upper)[0]


def check_exact(
    res: AssignmentResult,
    X: np.ndarray,
    centers: np.ndarray,
    cap: Capacities,
    opt: float,
    *,
    rel: float = 1e-9,
    C: np.ndarray | None = None,
) -> None:
    """Everything an exact (certified) result promises, checked against the reference optimum."""
    n, k = X.shape[0], centers.shape[0]
    C = reference_cost(X, centers) if C is None else C
    labels = res.labels
    assert labels.shape == (n,)
    assert labels.dtype.kind in "iu"
    assert labels.min() >= 0 and labels.max() < k
    np.testing.assert_array_equal(res.sizes, np.bincount(labels, minlength=k))
    assert np.all(res.sizes >= cap.lower) and np.all(res.sizes <= cap.upper)
    assert res.sizes.sum() == n
    recomputed = float(C[np.arange(n), labels].sum())
    scale = max(abs(opt), 1e-300)
    assert abs(res.objective - recomputed) <= rel * scale + 1e-12
    assert abs(res.objective - opt) <= rel * scale + 1e-12
    cert = res.certificate
    assert cert is not None
    assert cert.optimal is True
    assert cert.violations == 0
    assert 0.0 <= cert.duality_gap <= 1e-9 * res.objective + 1e-12
    # the potentials: labels minimise C - v (a power diagram) and g(v) attains the optimum
    v = res.potentials
    assert v.shape == (k,) and np.all(np.isfinite(v))
    R = C - v[None, :]
    slack = (k + 2) * cert.tolerance + 1e-12 * float(np.abs(C).max())
    assert np.all(R[np.arange(n), labels] <= R.min(axis=1) + slack)
    dual = float(R.min(axis=1).sum() + cap.dual_term(v))
    assert abs(dual - opt) <= rel * scale + n * slack


# --------------------------------------------------------------------------- data


def make_data(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "blobs":
        X, _ = make_blobs(n_samples=n, n_features=d, centers=4, cluster_std=1.0, random_state=seed)
        return X
    if kind == "uniform":
        return rng.uniform(-1.0, 1.0, size=(n, d))
    if kind == "gaussian":
        return rng.standard_normal((n, d))
    raise ValueError(kind)


def make_centers(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k distinct data points, slightly moved (generic: no cost ties)."""
    rng = np.random.default_rng(seed + 7919)
    idx = rng.choice(X.shape[0], size=k, replace=False)
    return X[idx] + 0.05 * X.std() * rng.standard_normal((k, X.shape[1]))


def count_calls(monkeypatch, module, name: str) -> list:
    """Replace ``module.name`` by a wrapper that records every call's result (in order) in
    the returned list, so a test can check that a path was reached."""
    real = getattr(module, name)
    results: list = []

    def recorded(*args, **kwargs):
        out = real(*args, **kwargs)
        results.append(out)
        return out

    monkeypatch.setattr(module, name, recorded)
    return results


class RemoteBlocks(RowBlocks):
    """In-memory blocks that behave like a remote engine (gathering is not free): the exact
    step passes over them as over Dask chunks (the look-ahead, the pair histogram, the
    band's allowances)."""

    gather_is_free = False  # type: ignore[misc]
    #: passes read X from storage (the exact step keeps a pass's reserve)
    streamed = True  # type: ignore[misc]
    #: rows of the shift sample (:meth:`~ballot_dask.blocks.Blocks.shift_sample`): one in
    #: this many, hashed as the Dask engine picks them; 0: none
    shift_every = 0

    #: the bytes :meth:`band_budget` gives, less the shift sample's as on the Dask engine
    #: (None: the in-memory budget, the shift sample not taken from it)
    budget: int | None = None

    def shift_sample(self):
        if not self.shift_every:
            return None
        n = self.n_samples
        return np.ascontiguousarray(self.X[sampled_rows(0, n, self.shift_every, 1)])

    def drop_shift_sample(self) -> bool:
        held, self.shift_every = bool(self.shift_every), 0
        return held

    def band_budget(self) -> int:
        if self.budget is None:
            return super().band_budget()
        held = self.shift_sample()
        return self.budget - (0 if held is None else held.nbytes)


def remote_blocks(
    X: np.ndarray, centers: np.ndarray, block_rows: int = 9_999, shift_every: int = 0
) -> RemoteBlocks:
    """:class:`RemoteBlocks` of ``X`` in blocks of ``block_rows``, at ``centers`` (with a
    shift sample of one row in ``shift_every``; 0: none)."""
    blocks = RemoteBlocks(X, block_rows=block_rows)
    blocks.shift_every = shift_every
    blocks.set_centers(centers)
    return blocks


def row_blocks(X, centers, *, prepare: bool):
    """The in-memory engine over ``X`` at ``centers`` (with X's moments if ``prepare``)."""
    from ballot_dask.blocks import RowBlocks

    blocks = RowBlocks(X)
    if prepare:
        blocks.prepare(1 << 16, 0)
    blocks.set_centers(centers)
    return blocks
