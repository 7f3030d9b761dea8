"""``BalancedKMeans``: the scikit-learn style estimator, and its functional twin."""

from __future__ import annotations

from collections.abc import Callable
from numbers import Integral, Real
from typing import Any, ClassVar, Literal

import dask.array as da
import numpy as np
from dask.base import is_dask_collection
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._validation import check_choice, dense_centers, validated_input
from .ahead import FOR_METHOD as AHEAD
from .ahead import start as compile_ahead
from .assign import (
    AssignmentResult,
    make_blocks,
    solver_options,
    step_capacities,
)
from .dask_input import as_dask_data
from .initialization import INITIALIZERS
from .lloyd import LloydResult, LloydState, best_of_starts
from .prediction import (
    PREDICT_RULES,
    PredictRule,
    Proportions,
    balanced_batch,
    check_proportions_unused,
    check_temperature,
    costs_of,
    fit_temperature,
    membership_rows,
    rule_labels,
    rule_objective,
)
from .solvers.base import mean_cost
from .starts import plan_starts
from .weights import check_sample_weight


class BalancedKMeans(ClusterMixin, TransformerMixin, BaseEstimator):
    """Balanced k-means: k clusters of prescribed sizes, by Lloyd's algorithm with optimal
    transport (BalLOT, Luo & Mixon 2025).

    The assignment step is the balanced transport linear program.  ``method="exact"`` solves
    it exactly at every iteration and proves it (:attr:`certificate_`); ``method="sinkhorn"``
    is the paper's entropic variant E-BalLOT (Sinkhorn, then Altschuler-Weed-Rigollet rounding).

    X may be a NumPy array, a ``scipy.sparse`` matrix (CSR; other formats are converted), or a
    Dask array chunked by rows (of NumPy or CSR chunks).  Sparse data are never densified: the
    costs come from the rows' nonzeros, the centers stay dense.  A Dask array is fitted chunk by
    chunk on the active Dask scheduler (threads, a ``LocalCluster``, a remote scheduler: the
    estimator never creates one), with the same kernels and the same answer as in memory;
    ``labels_``, ``predict``, ``predict_proba`` and ``transform`` are then Dask arrays with X's
    row chunks, while ``cluster_centers_`` and ``potentials_`` stay NumPy.  The named ``init``
    strategies run on a seeded row sample of a Dask array (``ballot.init-sample`` rows, 65536
    by default, at least 64 per cluster; chosen by a hash of the row index, so the same for
    any chunking), drawn in the first pass, which also checks X for NaN/inf and measures its
    variance.

    New data is labelled by the fitted power diagram (keeps the fitted proportions, point by
    point), the nearest center, or exact sizes for the batch (``predict(X,
    method="balanced")``); :meth:`predict_proba` gives soft memberships, the rows of the
    entropic transport plan.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters ``k``.
    method : {"exact", "sinkhorn"}, default="exact"
        Assignment solver: BalLOT (exact LP optimum) or E-BalLOT (entropic).
    init : {"k-means++", "k-means||", "random", "diameter", "coupon"} or array of shape \
(k, n_features), default="k-means++"
        Initial centers.  ``"k-means++"``, ``"random"``, ``"diameter"`` and ``"coupon"`` run on
        the fit's row sample (every row when there are few); ``"k-means||"`` (Bahmani et al.
        2012) samples from all of X in a few passes (seven), for data whose sample would miss
        small groups.  ``"diameter"`` (k = 2) and ``"coupon"`` are the paper's Theorem 15
        schemes with one-step recovery guarantees under the stochastic ball model.
    n_init : int, default=1
        Runs from different initial centers (scikit-learn's meaning); the run with the lowest
        balanced objective is kept.  One run when ``init`` is an array.
    sizes : array-like of shape (n_clusters,), default=None
        Exact cluster sizes (non-negative integers summing to n).  Default: equal sizes, each
        ``floor(n / k)`` or ``ceil(n / k)`` when ``k`` does not divide ``n``, the LP choosing
        which clusters get the extra point.
    size_min, size_max : int or array-like of shape (n_clusters,), default=None
        Bounds on the sizes, instead of ``sizes``.
    reg : float, default=1e-2
        ``sinkhorn``: entropic regularisation relative to the mean squared distance.
    sinkhorn_tol : float, default=1e-3
        ``sinkhorn``: column-marginal error (1-norm, per point) at which Sinkhorn stops.
        After an iteration whose objective rose by more than ``sinkhorn_tol`` of itself (on
        separated clusters the rounding's mass error can make a fit cycle), the following
        steps solve to a tenth of it, down to a thousandth.
    sinkhorn_max_iter : int, default=1000
        ``sinkhorn``: passes over the data per assignment step (Newton steps or Sinkhorn
        iterations), at most.
    rounding : {"argmax", "exact"}, default="argmax"
        ``sinkhorn``: labels by row argmax of the rounded plan (the paper), or exactly
        balanced labels (exact repair from the Sinkhorn potentials).
    sinkhorn_algorithm : {"newton", "sinkhorn"}, default="newton"
        ``sinkhorn``: how the entropic plan is reached (the same plan either way): Newton's
        method on the semi-dual with the regularisation scaled down (a few passes over the
        data per step), or Sinkhorn's iterations, step for step as in the paper (a pass each).
        Size ranges and k above 512 use Sinkhorn's iterations.
    max_iter : int, default=300
        Lloyd iterations, at most.
    tol : float, default=1e-4
        Stop when the squared center shift is below ``tol`` times the mean feature variance
        (as scikit-learn's ``KMeans``).  ``0``: run until the labels stop changing.
    max_band : int, default=None
        Largest number of doubtful points the exact repair may gather.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation; the fit is otherwise deterministic.
    verbose : bool, default=False
        Print one line per iteration (lines are always logged to the ``ballot_dask`` logger).

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
    labels_ : ndarray or dask array of shape (n_samples,)
        A dask array (X's row chunks) for Dask input: persisted in the cluster's memory when
        the cost blocks fit ``ballot.memory-fraction`` of it, otherwise lazy (one more pass
        over X when computed).
    potentials_ : ndarray of shape (n_clusters,)
        Dual potentials: ``labels_`` minimise ``||x - mu_j||^2 - potentials_j``.
    inertia_ : float
        Balanced objective: ``sum_i ||x_i - cluster_centers_[labels_i]||^2`` (with
        ``sample_weight``, ``sum_i w_i ...`` over the optimal plan, split rows included).
    sizes_ : ndarray of shape (n_clusters,)
        Points per cluster under ``labels_`` (the proportions of ``predict(X,
        method="balanced", proportions="fitted")``); with ``sample_weight``, the float
        mass of every cluster in the optimal plan.
    n_iter_ : int
    converged_ : bool
    objective_history_ : list of float
        Objective after each iteration (non-increasing for ``exact``, Theorem 17).
    certificate_ : Certificate or None
        Optimality proof of the last assignment step (``exact``).
    split_rows_ : ndarray of shape (s,) or None
        A fit with ``sample_weight``: the rows whose mass the last step's optimal plan splits
        between clusters (at most ``n_clusters - 1``; with whole-number weights and sizes,
        whole shares, as repeated rows would split), increasing.  ``None`` without weights.
    split_shares_ : ndarray of shape (s, n_clusters) or None
        Their mass in each cluster (a row sums to the row's weight); ``labels_`` gives each
        the cluster of its largest share.
    reg_ : float
        ``sinkhorn``: the absolute entropic regularisation of the last assignment step,
        ``reg`` times the mean squared distance between the points and the centers.
        ``exact``: the threshold on the reduced-cost gap of the doubtful points that the
        last step passed on to the next (an internal warm start).
    temperature_ : float
        Default temperature of :meth:`predict_proba`: ``reg_`` for ``sinkhorn``; for
        ``exact``, the regularisation E-BalLOT would take at the fitted centers, ``reg`` times
        the mean squared distance between the training points and the fitted centers.
    n_passes_ : dict
        ``{"x": ..., "cost": ..., "rounds": ..., "sample": ...}``: passes over X (the
        validation of in-memory input included) and over the cost blocks during the fit,
        collective rounds (a scheduler round trip each on Dask), and passes over the fit's row
        sample on the client (k for k-means++; in memory, with at most twice
        ``ballot.init-sample`` rows, the sample is X itself).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from ballot_dask import BalancedKMeans
    >>> X = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.0], [5.0, 0.0], [5.1, 0.0], [5.2, 0.0]])
    >>> km = BalancedKMeans(n_clusters=3, random_state=0).fit(X)
    >>> np.bincount(km.labels_).tolist()
    [2, 2, 2]
    >>> bool(km.certificate_.optimal)
    True
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions({"exact", "sinkhorn"})],
        "init": [StrOptions({*INITIALIZERS, "k-means||"}), "array-like", "sparse matrix"],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "sizes": ["array-like", None],
        "size_min": [Interval(Integral, 0, None, closed="left"), "array-like", None],
        "size_max": [Interval(Integral, 0, None, closed="left"), "array-like", None],
        "reg": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_tol": [Interval(Real, 0, None, closed="neither")],
        "sinkhorn_max_iter": [Interval(Integral, 1, None, closed="left")],
        "rounding": [StrOptions({"argmax", "exact"})],
        "sinkhorn_algorithm": [StrOptions({"newton", "sinkhorn"})],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_band": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        method: Literal["exact", "sinkhorn"] = "exact",
        init: str | ArrayLike = "k-means++",
        n_init: int = 1,
        sizes: ArrayLike | None = None,
        size_min: ArrayLike | None = None,
        size_max: ArrayLike | None = None,
        reg: float = 1e-2,
        sinkhorn_tol: float = 1e-3,
        sinkhorn_max_iter: int = 1000,
        rounding: Literal["argmax", "exact"] = "argmax",
        sinkhorn_algorithm: Literal["newton", "sinkhorn"] = "newton",
        max_iter: int = 300,
        tol: float = 1e-4,
        max_band: int | None = None,
        random_state: int | np.random.RandomState | None = None,
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.method = method
        self.init = init
        self.n_init = n_init
        self.sizes = sizes
        self.size_min = size_min
        self.size_max = size_max
        self.reg = reg
        self.sinkhorn_tol = sinkhorn_tol
        self.sinkhorn_max_iter = sinkhorn_max_iter
        self.rounding = rounding
        self.sinkhorn_algorithm = sinkhorn_algorithm
        self.max_iter = max_iter
        self.tol = tol
        self.max_band = max_band
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = True
        return tags

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        *,
        callback: Callable[[LloydState], None] | None = None,
        resume: LloydState | None = None,
    ) -> BalancedKMeans:
        """Compute the balanced clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Training data; float32 is kept as float32 in the cost blocks.  A scipy.sparse
            matrix is used as CSR (other formats are converted) and never densified; a Dask
            array may have scipy.sparse CSR chunks, each holding whole rows.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,) or float, default=None
            Weight of each row (``method="exact"``): the objective is ``sum_i w_i ||x_i -
            mu_{l_i}||^2``, the centroids are weighted means, and the cluster sizes are masses
            in units of weight (``sizes``, ``size_min`` and ``size_max`` too; by default an
            equal share of the total weight, the floor or ceiling of ``sum(w) / k`` for
            whole-number weights, so that integer weights fit as repeated rows would).  A
            row's mass may be split between clusters: ``split_rows_`` lists them, and
            ``labels_`` gives each its largest share.  A dask array for a dask X.  ``None``:
            every row weighs 1.
        callback : callable, default=None
            Called with a :class:`~ballot_dask.lloyd.LloydState` after every Lloyd iteration
            (to save a checkpoint, to show progress).
        resume : LloydState, default=None
            A state passed to ``callback`` by an earlier fit of the same data with the same
            parameters: the fit continues from it (``init`` is not used) and takes the same
            steps as the uninterrupted fit.

        Returns
        -------
        self : BalancedKMeans
        """
        Xd: Any
        if is_dask_collection(X):
            Xd = as_dask_data(X)  # type: ignore[arg-type]
            self.n_features_in_ = int(Xd.shape[1])
        else:
            Xd = validated_input(self, X, reset=True)
        weight = check_sample_weight(sample_weight, Xd)
        blocks: Any = make_blocks(Xd, self.n_clusters, weight)
        if not is_dask_collection(Xd):
            blocks.passes.x += 1  # the validation read X (its finiteness)
        n, k = Xd.shape[0], self.n_clusters
        if k > n:
            raise ValueError(f"n_samples={n} should be >= n_clusters={k}")
        capacities = step_capacities(
            n,
            k,
            weight,
            self.method,
            sizes=self.sizes,
            size_min=self.size_min,
            size_max=self.size_max,
        )
        options = solver_options(
            self.reg,
            self.sinkhorn_tol,
            self.sinkhorn_max_iter,
            self.rounding,
            self.max_band,
            self.sinkhorn_algorithm,
        )
        for kernel in AHEAD.get(self.method, ()):  # on a cold kernel cache: in other processes
            compile_ahead(Xd, kernel)
        rng = check_random_state(self.random_state)
        init = self.init if isinstance(self.init, str) else dense_centers(self.init)
        starts = plan_starts(blocks, k, init, int(self.n_init), rng, weight, resume)
        tol = self.tol * float(np.mean(starts.var)) if self.tol > 0 else 0.0
        best = best_of_starts(
            blocks,
            capacities,
            starts.start,
            starts.runs,
            method=self.method,
            options=options,
            max_iter=self.max_iter,
            tol=tol,
            verbose=bool(self.verbose),
            callback=callback,
            resume=resume,
        )
        self._store(best, Xd.dtype)
        training_cost = mean_cost(starts.mean, starts.var, self.cluster_centers_)
        self.temperature_ = fit_temperature(self.method, self.reg, self.reg_, training_cost)
        return self

    def _store(self, result: LloydResult, dtype: np.dtype) -> None:
        self.cluster_centers_ = result.centers.astype(dtype, copy=False)
        self.labels_ = result.labels
        self.potentials_ = result.potentials
        self.inertia_ = result.inertia
        self.sizes_ = result.sizes
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.objective_history_ = result.objective_history
        self.certificate_ = result.certificate
        self.n_passes_ = result.passes
        self.reg_ = result.eps
        self.split_rows_ = result.split_rows
        self.split_shares_ = result.split_shares

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> np.ndarray:
        """Fit and return ``labels_`` (the balanced labels of the training data).

        Parameters
        ----------
        X : {array-like, sparse matrix, dask array} of shape (n_samples, n_features)
            Training data, as for :meth:`fit`.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,) or float, default=None
            Weight of each row, as for :meth:`fit`.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,)
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def _checked(self, X: ArrayLike) -> Any:
        """X checked against the fit: a row-chunked dask array, or a C-contiguous float32 or
        float64 ndarray."""
        check_is_fitted(self)
        if is_dask_collection(X):
            Xd = as_dask_data(X)  # type: ignore[arg-type]
            if Xd.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {Xd.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
            return Xd
        return validated_input(self, X, reset=False)

    def _balanced(
        self, X: ArrayLike, proportions: Proportions, sample_weight: Any = None
    ) -> AssignmentResult:
        """The ``balanced`` rule on the batch X (:func:`.prediction.balanced_batch`)."""
        shape = np.shape(X)  # type: ignore[arg-type]
        if len(shape) == 2 and shape[0] == 0:
            raise ValueError("X is empty: method='balanced' needs at least one sample")
        return balanced_batch(
            self._checked(X),
            self.cluster_centers_,
            proportions,
            getattr(self, "sizes_", None),
            self.max_band,
            sample_weight,
        )

    def predict(
        self, X: ArrayLike, *, method: PredictRule = "power", proportions: Proportions = "equal"
    ) -> Any:
        """Label new points.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            New points.  A dask array gives dask labels with X's row chunks.
        method : {"power", "nearest", "balanced"}, default="power"
            ``power``: the learned power diagram ``argmin_j ||x - mu_j||^2 - potentials_j``,
            point by point, which keeps the fitted proportions on data from the same
            distribution (up to sampling error).  ``nearest``: the nearest center (sizes are
            then not controlled).  ``balanced``: exact sizes for this batch, by solving its
            own balanced transport problem with the fit's exact solver
            (:func:`~ballot_dask.balanced_assign`); a point's label then depends on the rest
            of the batch.  The training size constraints (``sizes``, ``size_min``,
            ``size_max``) never apply to new data.
        proportions : {"equal", "fitted"} or array-like of shape (n_clusters,), \
default="equal"
            ``balanced`` only: the sizes of the batch.  ``"equal"``: ``floor(m / k)`` or
            ``ceil(m / k)`` points each for a batch of ``m`` (the solver choosing which
            clusters get the extra points; with fewer points than clusters, some clusters get
            none).  ``"fitted"``: the fitted ``sizes_`` scaled to the batch, or an array: these
            weights scaled to the batch; scaled sizes are rounded by largest remainders, so
            they sum to ``m``.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,)
            Cluster of each point (int64).

        Examples
        --------
        >>> import numpy as np
        >>> from ballot_dask import BalancedKMeans
        >>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1], [5.2]])
        >>> km = BalancedKMeans(n_clusters=2, random_state=0).fit(X)
        >>> batch = np.array([[0.0], [0.2], [0.3], [4.9]])
        >>> int(np.bincount(km.predict(batch), minlength=2).max())
        3
        >>> np.bincount(km.predict(batch, method="balanced")).tolist()
        [2, 2]
        """
        check_choice(method, "method", PREDICT_RULES)
        if method == "balanced":
            return self._balanced(X, proportions).labels
        check_proportions_unused(proportions, method)
        C = costs_of(self._checked(X), self.cluster_centers_)
        v = self.potentials_ if method == "power" else np.zeros(self.n_clusters)
        return rule_labels(C, v)

    def predict_proba(self, X: ArrayLike, *, temperature: float | None = None) -> Any:
        """Soft cluster memberships: the rows of the entropic transport plan.

        ``P_ij = softmax_j((potentials_j - ||x_i - mu_j||^2) / temperature)``: row ``i`` of
        the entropic plan at the fitted potentials, normalised to sum to one.  Its argmax is
        :meth:`predict`'s ``power`` label (up to exact ties); a smaller temperature gives
        harder memberships.  Computed in the log domain (the row maximum subtracted first), so
        no temperature > 0 overflows or gives NaN.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            New points.  A dask array gives a dask array with X's row chunks.
        temperature : float, default=None
            Entropic regularisation ``> 0``, in units of squared distance.  Default:
            ``temperature_``, the fit's own (``reg_`` for ``method="sinkhorn"``; for
            ``method="exact"``, ``reg`` times the mean squared distance between the training
            points and the fitted centers).

        Returns
        -------
        proba : ndarray or dask array of shape (n_samples, n_clusters)
            Memberships, float64, each row summing to one.

        Examples
        --------
        >>> import numpy as np
        >>> from ballot_dask import BalancedKMeans
        >>> X = np.array([[0.0], [1.0], [4.0], [5.0]])
        >>> km = BalancedKMeans(n_clusters=2, init=[[0.5], [4.5]]).fit(X)
        >>> P = km.predict_proba([[0.5], [2.5], [4.5]], temperature=1.0)
        >>> P.round(3).tolist()
        [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
        >>> P.argmax(axis=1).tolist() == km.predict([[0.5], [2.5], [4.5]]).tolist()
        True
        """
        check_is_fitted(self)
        if temperature is None:
            temperature = getattr(self, "temperature_", None)
            if temperature is None:
                raise ValueError(
                    "temperature: the model has no temperature_ (it was not fitted by fit()); "
                    "pass a temperature > 0"
                )
        eps = check_temperature(temperature)
        C = costs_of(self._checked(X), self.cluster_centers_)
        return membership_rows(C, self.potentials_, eps)

    def transform(self, X: ArrayLike) -> Any:
        """Euclidean distances to the centers.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            New points.

        Returns
        -------
        distances : ndarray or dask array of shape (n_samples, n_clusters)
            ``||x_i - mu_j||`` in X's dtype (a dask array with X's row chunks for dask input).
        """
        Xv = self._checked(X)
        C = costs_of(Xv, self.cluster_centers_)  # distances in X's dtype, as scikit-learn's
        if is_dask_collection(C):
            return da.sqrt(C).astype(Xv.dtype)
        return np.sqrt(C).astype(Xv.dtype, copy=False)

    def score(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        *,
        method: PredictRule = "power",
        proportions: Proportions = "equal",
    ) -> float:
        """Opposite of the k-means objective of X under :meth:`predict` labels.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            New points.
        y : Ignored
        sample_weight : array-like or dask array of shape (n_samples,) or float, default=None
            Weights of the points in the objective (and, for ``balanced``, the batch's sizes
            are masses: its total weight in the proportions asked).
        method : {"power", "nearest", "balanced"}, default="power"
            The labels: :meth:`predict`'s rule.
        proportions : {"equal", "fitted"} or array-like of shape (n_clusters,), \
default="equal"
            ``balanced`` only: the sizes of the batch, as in :meth:`predict`.

        Returns
        -------
        score : float
            ``-sum_i w_i ||x_i - mu_{l_i}||^2`` for the labels ``l`` of ``predict(X,
            method=...)`` (``w_i = 1`` without weights).
        """
        check_choice(method, "method", PREDICT_RULES)
        if method == "balanced":
            return -float(self._balanced(X, proportions, sample_weight).objective)
        check_proportions_unused(proportions, method)
        Xv = self._checked(X)
        weight = check_sample_weight(sample_weight, Xv)
        C = costs_of(Xv, self.cluster_centers_)
        v = self.potentials_ if method == "power" else np.zeros(self.n_clusters)
        return -rule_objective(C, v, None if weight is None else weight.values)


def balanced_kmeans(
    X: ArrayLike, n_clusters: int = 8, **params: Any
) -> tuple[np.ndarray, np.ndarray, float]:
    """Functional twin of :class:`BalancedKMeans`.

    Returns ``(cluster_centers, labels, inertia)``; ``params`` are the estimator's.

    Examples
    --------
    >>> import numpy as np
    >>> from ballot_dask import balanced_kmeans
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0]])
    >>> centers, labels, inertia = balanced_kmeans(X, 2, random_state=0)
    >>> sorted(np.bincount(labels).tolist())
    [2, 2]
    """
    km = BalancedKMeans(n_clusters, **params).fit(X)
    return km.cluster_centers_, km.labels_, km.inertia_
