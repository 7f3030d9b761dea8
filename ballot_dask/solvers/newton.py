"""Newton's method on the entropic semi-dual, a function of the k column potentials alone.

    g_e(v) = sum_i -e log sum_j exp((v_j - C_ij) / e) + sum_j c_j v_j

is concave; its gradient is ``c - sum_i P_i`` and its Hessian ``-(1/e) sum_i (diag(P_i) -
P_i P_i^T)``, with ``P_i = softmax_j((v_j - C_ij) / e)``.  Every evaluation is one pass over
the cost blocks returning k + k^2 numbers, and the Newton system is k x k.  Used to bring the
potentials close to the exact LP's from a cold start (annealing ``e`` towards 0); the exact
repair then finishes the job.
"""

from __future__ import annotations

import numpy as np

from ..blocks import Blocks
from ..kernels import combine_entropic, entropic_terms


def newton_ascent(
    blocks: Blocks,
    target: np.ndarray,
    v: np.ndarray,
    eps: float,
    *,
    gtol: float,
    max_steps: int = 50,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Maximise ``g_e`` from ``v`` until ``||grad||_1 <= gtol``.

    Returns ``(v, column_sums, steps)``; each step is one pass over the cost blocks (plus one
    per backtracking halving).
    """
    k = target.shape[0]

    def evaluate(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        value, logcol, ptp = blocks.reduce(entropic_terms, combine_entropic, w, eps, True)
        return value + float(target @ w), np.exp(logcol), ptp

    f, col, ptp = evaluate(v)
    steps = 0
    while steps < max_steps:
        steps += 1
        grad = target - col
        if np.abs(grad).sum() <= gtol:
            break
        lap = (np.diag(col) - ptp) / eps  # -Hessian: a graph Laplacian, null space ~ ones
        if not np.trace(lap) > 0:
            break  # every row is one-hot at this eps: no curvature left, the repair takes over
        scale = float(np.trace(lap)) / k
        system = lap + (scale / k) * np.ones((k, k)) + 1e-10 * scale * np.eye(k)
        if not np.all(np.isfinite(system)):
            break  # eps too small for the cost scale: curvature overflows
        try:
            direction = np.linalg.solve(system, grad)
        except np.linalg.LinAlgError:
            try:
                direction = np.linalg.lstsq(system, grad, rcond=None)[0]
            except np.linalg.LinAlgError:
                break
        if not np.all(np.isfinite(direction)):
            break
        slope = float(grad @ direction)
        t = 1.0
        for _ in range(40):  # backtracking (Armijo) on the concave g_e
            w = v + t * direction
            f_new, col_new, ptp_new = evaluate(w)
            if f_new >= f + 1e-4 * t * slope:
                v, f, col, ptp = w, f_new, col_new, ptp_new
                break
            t *= 0.5
        else:
            break  # no ascent possible at this precision: v is as good as it gets
    return v, col, steps
