"""What every assignment solver returns, and the passes they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..blocks import Blocks
from ..capacities import Capacities
from ..certificate import Certificate, certify_labels
from ..exact_pass import power_labels
from ..held_labels import take
from ..kernels import assignment_terms, reduced_cost_labels
from ..plan_kernels import rounded_plan_terms


@dataclass(frozen=True)
class SolverOptions:
    """Knobs of the assignment solvers (validated by the public entry points)."""

    reg: float = 1e-2
    sinkhorn_tol: float = 1e-3
    sinkhorn_max_iter: int = 1000
    rounding: Literal["argmax", "exact"] = "argmax"
    max_band: int | None = None
    sinkhorn_algorithm: Literal["newton", "sinkhorn"] = "newton"


@dataclass
class HardLabels:
    """Labels ``argmin_j (C_ij - v_j)``, overridden on the exactly solved ``rows``."""

    potentials: np.ndarray
    rows: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        order = np.argsort(self.rows, kind="stable")
        self.rows, self.labels = self.rows[order], self.labels[order]

    def local(self, offset: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """The overridden rows inside the block ``[offset, offset + length)`` (block-local)."""
        lo, hi = np.searchsorted(self.rows, [offset, offset + length])
        return self.rows[lo:hi] - offset, self.labels[lo:hi]

    def __call__(self, C: np.ndarray, offset: int) -> np.ndarray:
        labels, _ = reduced_cost_labels(C, self.potentials)
        rows, fixed = self.local(offset, C.shape[0])
        labels[rows] = fixed
        return labels


@dataclass
class ExactLabels:
    """The exact step's labels of a block of X: ``argmin_j (C_ij - v_j)`` under the pass's
    potentials, overridden on the band's rows, with the pass's own cost arithmetic (so that
    every fixed row gets the label it was counted with)."""

    centers: np.ndarray
    potentials: np.ndarray
    rows: np.ndarray
    labels: np.ndarray
    #: every row's label as the step's pass counted it (-1 on band rows), when that pass
    #: kept them (in memory, :func:`~ballot_dask.exact_pass.exact_pass`'s ``keep_labels``)
    known: np.ndarray | None = None
    #: the key under which the workers hold those labels, when the pass held them there
    #: (a Dask fit with X persisted, :mod:`ballot_dask.held_labels`)
    held_key: str | None = None

    #: the engine hands this labeler blocks of X (not cost blocks)
    reads_x = True

    def __post_init__(self) -> None:
        # sorted, and in the narrowest unsigned type that holds them: the labeler travels in
        # the labels map's graph and to every worker, and the band grows with X (at 2^27
        # rows and k = 2, 16 bytes a band row made a 9.8 MiB graph; 5 bytes make 3.1 MiB)
        order = np.argsort(self.rows, kind="stable")
        self.rows, self.labels = _narrow(self.rows[order]), _narrow(self.labels[order])

    def for_warm_up(self) -> ExactLabels:
        """This labeler without its band rows or held labels: what a worker's warm-up runs
        (:func:`~ballot_dask.dask_warm.warm_workers`), so that warming the labels map up
        sends each worker a few hundred bytes, not the band."""
        none = np.zeros(0, dtype=np.uint8)
        return ExactLabels(self.centers, self.potentials, none, none)

    def __call__(self, X: np.ndarray, offset: int) -> np.ndarray:
        lo, hi = np.searchsorted(self.rows, [offset, offset + X.shape[0]])
        rows, fixed = self.rows[lo:hi].astype(np.int64) - offset, self.labels[lo:hi]
        if self.held_key is not None:
            held = take(self.held_key, offset, X.shape[0])
            if held is not None:  # the pass's own labels, held where it ran: no costs
                out = held.astype(np.int64)
                out[rows] = fixed
                if not np.any(out < 0):  # (every band row overridden, as it must be)
                    return out
        return power_labels(X, self.centers, self.potentials, rows, fixed)

    def held(self) -> np.ndarray | None:
        """Every row's label from :attr:`known`, the band's rows overridden: the labels a
        pass would give (the same minimisers, by the same arithmetic), with no pass (at
        10^6 x 64 and k = 1024, that pass took 1.1 s); ``None`` when the pass kept none."""
        if self.known is None:
            return None
        out = self.known.astype(np.int64)
        out[self.rows] = self.labels
        return out


def _narrow(index: np.ndarray) -> np.ndarray:
    """Non-negative integers in the narrowest unsigned type that holds them (as they are
    when one is negative or there are none)."""
    if index.size == 0 or index.min() < 0:
        return index
    return index.astype(np.min_scalar_type(int(index.max())), copy=False)


@dataclass
class RoundedLabels:
    """Row argmax of the rounded Sinkhorn plan (E-BalLOT's labels)."""

    potentials: np.ndarray
    eps: float
    scale: np.ndarray
    deficit: np.ndarray

    def __call__(self, C: np.ndarray, offset: int) -> np.ndarray:
        X_dummy = np.zeros((C.shape[0], 0), dtype=C.dtype)
        return rounded_plan_terms(X_dummy, C, self.potentials, self.eps, self.scale, self.deficit)[
            0
        ]


@dataclass
class StepOutcome:
    """One assignment step, as summaries: everything the Lloyd loop and the result need.

    ``sums`` / ``mass`` give the new centroids (``sums / mass[:, None]``); ``labeler`` turns a
    cost block into its labels, so labels are only materialised when asked for.
    """

    method: str
    potentials: np.ndarray
    eps: float
    mass: np.ndarray
    sums: np.ndarray
    objective: float
    sizes: np.ndarray
    labeler: HardLabels | ExactLabels | RoundedLabels
    certificate: Certificate | None = None
    slack: np.ndarray | None = None  # (k, k) slack matrix of hard labels (the certificate's)
    plan_cost: float | None = None
    marginal_error: float | None = None
    n_iter: int = 0
    band_size: int = 0
    retries: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    #: weighted steps: the points whose mass the plan splits between clusters (global row
    #: indices) and their shares, an ``(s, k)`` array of masses per cluster
    splits: tuple[np.ndarray, np.ndarray] | None = None
    #: a step whose labels' ``objective`` and ``sizes`` are not measured yet (E-BalLOT's
    #: rounded plan in closed form: its argmax labels need a pass): the pass, see :meth:`settle`
    pending: Callable[[], tuple[float, np.ndarray]] | None = None

    def settle(self) -> StepOutcome:
        """Measure the labels' ``objective`` and ``sizes`` if they were left pending (one pass
        over the blocks, at the step's centers); the step itself."""
        if self.pending is not None:
            objective, sizes = self.pending()
            self.objective, self.sizes, self.pending = float(objective), sizes, None
        return self


def interior_potentials(step: StepOutcome, capacities: Capacities, n: int) -> np.ndarray:
    """The step's potentials, moved to the max-margin point of the certified ones when the
    step has hard labels (so that its power diagram puts no labelled point on a boundary:
    ``predict(method="power")`` then gives the training labels back)."""
    if step.slack is None or step.certificate is None or not step.certificate.optimal:
        return step.potentials
    v, _ = certify_labels(step.slack, step.sizes, capacities, step.objective, n, interior=True)
    return v


def labels_of(blocks: Blocks, labeler: HardLabels | ExactLabels | RoundedLabels) -> Any:
    """The labels of every block (one pass over the cost blocks): an ndarray in memory, a
    dask array with X's row chunks on the Dask engine."""
    return blocks.labels(labeler)


def _hard_terms(X: np.ndarray, C: np.ndarray, labeler: HardLabels, offset: int) -> tuple:
    rows, fixed = labeler.local(offset, C.shape[0])
    return assignment_terms(X, C, fixed, potentials=labeler.potentials, rows=rows)


def _combine_hard(parts: list[tuple]) -> tuple:
    counts = np.sum([p[0] for p in parts], axis=0)
    sums = np.sum([p[1] for p in parts], axis=0)
    slack = np.min([p[2] for p in parts], axis=0)
    return counts, sums, slack, float(sum(p[3] for p in parts))


def hard_step(
    method: str, blocks: Blocks, capacities: Capacities, labeler: HardLabels, **extra: Any
) -> StepOutcome:
    """The :class:`StepOutcome` of hard labels, from one certified summary pass (sizes,
    centroid sums, objective and slack matrix)."""
    sizes, sums, slack, objective = blocks.reduce(
        _hard_terms, _combine_hard, labeler, with_x=True, with_offset=True
    )
    potentials, certificate = certify_labels(slack, sizes, capacities, objective, blocks.n_samples)
    return StepOutcome(
        method=method,
        potentials=potentials,
        eps=extra.pop("eps", 0.0),
        mass=sizes.astype(np.float64),
        sums=sums,
        objective=objective,
        sizes=sizes,
        labeler=labeler,
        certificate=certificate,
        slack=slack,
        **extra,
    )


def cost_scale(blocks: Blocks) -> tuple[float, float]:
    """Mean cost and mean ``mean_j C_ij - min_j C_ij`` (one pass): scales for ``eps``."""

    means, mins, rows = blocks.reduce(_scale_terms, _combine_scale)
    return means / max(rows, 1), (means - mins) / max(rows, 1)


def mean_cost(mean: Any, var: Any, centers: np.ndarray) -> float:
    """``mean_ij ||x_i - mu_j||^2`` from X's column means and (population) variances.

    ``(1/n) sum_i ||x_i - mu||^2 = sum(var) + ||mean - mu||^2`` for every center ``mu``.
    """
    centred = np.asarray(centers, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    spread = np.einsum("ij,ij->i", centred, centred)
    return float(np.sum(np.asarray(var, dtype=np.float64)) + spread.mean())


def _scale_terms(C: np.ndarray) -> tuple[float, float, int]:
    C64 = np.asarray(C, dtype=np.float64)
    return float(C64.mean(axis=1).sum()), float(C64.min(axis=1).sum()), C.shape[0]


def _combine_scale(parts: list[tuple[float, float, int]]) -> tuple[float, float, int]:
    means, mins, rows = (sum(p[i] for p in parts) for i in range(3))
    return float(means), float(mins), int(rows)
