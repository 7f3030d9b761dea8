"""The repair's band rows grouped by label (:mod:`.paths`).

The shortest paths keep each cluster's band rows as a linked list and scan it for an arc's
cheapest moves.  Grouped by label, a cluster's rows are adjacent in memory, and a scan reads
them in order rather than at random over a band of many megabytes.
"""

from __future__ import annotations

import numba
import numpy as np

from ..jit import njit

#: dense rows with arc lists are grouped by label first (as candidates always are) from this
#: many points to move: a list's refill then scans its cluster's rows in memory order, not
#: at random over a band of many megabytes (measured here on the bands of a 20-iteration fit,
#: 10^6 x 32, k = 16: a repair of 15 131 augmentations on 320 000 rows took 130 ms instead of
#: 247 ms, one of 7 904 on 132 000 rows 39 ms instead of 68 ms; the grouping's copy costs
#: about a millisecond at 75 000 rows, more than a repair of a few dozen moves saves)
GROUPED_MOVES = 128


@njit(parallel=True)
def by_label(costs, columns, labels, k):  # pragma: no cover - compiled
    """The rows grouped by label (stable): ``order``, and the costs, columns and labels in
    that order.  A cluster's points are then mostly adjacent in memory, which its scans
    (:func:`.slack_rows._rescan`, :func:`.slack_rows._refill`) follow from point to point."""
    m = labels.shape[0]
    first = np.zeros(k + 1, np.int64)
    for i in range(m):
        first[labels[i] + 1] += 1
    for j in range(k):
        first[j + 1] += first[j]
    order = np.empty(m, np.int64)
    for i in range(m):
        order[first[labels[i]]] = i
        first[labels[i]] += 1
    out_costs = np.empty_like(costs)
    out_columns = np.empty_like(columns)
    out_labels = np.empty_like(labels)
    for r in numba.prange(m):
        i = order[r]
        out_costs[r] = costs[i]
        out_columns[r] = columns[i]
        out_labels[r] = labels[i]
    return order, out_costs, out_columns, out_labels
