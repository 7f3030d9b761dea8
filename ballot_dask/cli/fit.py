"""``ballot-dask fit``: a balanced k-means fit of a Zarr store, a .npy file or a sparse .npz
file, checkpointed after every Lloyd iteration and written atomically."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from ..interrupts import raise_if_interrupted, signals_as_interrupt
from .base import (
    _abs,
    _cluster,
    _cluster_options,
    _common,
    _int_list,
    _reporting,
    _storage_config,
    _storage_options,
    _store_runner,
    _versions,
    cli,
    logger,
)


def _fit_params(
    source: str, array: str | None, X: Any, init: Any, opts: dict[str, Any]
) -> dict[str, Any]:
    """The arguments that define a fit (a checkpoint resumes only the same fit)."""
    import numpy as np

    if isinstance(init, np.ndarray):
        init_record: Any = {"centers-sha256": hashlib.sha256(init.tobytes()).hexdigest()}
    else:
        init_record = init
    return {
        "input": _abs(source),
        "array": array,
        "shape": list(X.shape),
        "dtype": str(X.dtype),
        "init": init_record,
        **opts,
    }


def _read_init(init: str, k: int, d: int) -> Any:
    import numpy as np

    from ..initialization import INITIALIZERS

    names = [*INITIALIZERS, "k-means||"]
    if init in names:
        return init
    path = Path(init)
    if path.suffix != ".npy" or not path.exists():
        raise ValueError(
            f"--init must be one of {', '.join(names)} or a .npy file of centers, got {init!r}"
        )
    centers = np.load(path, allow_pickle=False)
    if centers.shape != (k, d):
        raise ValueError(f"--init {init}: centers of shape {centers.shape}, expected ({k}, {d})")
    return centers.astype(np.float64)


def _check_resume_output(target: Path | str, checkpoint: Any, params: dict[str, Any]) -> bool:
    """With ``--resume``: whether the fit is already complete (its output exists)."""
    import zarr

    from ..storage import exists, is_url

    if exists(checkpoint):
        return False
    if isinstance(target, str) and is_url(target):
        from ..objectstore import is_complete

        if not is_complete(target):
            return False
        group = zarr.open_group(target, mode="r", storage_options=_storage_options_now())
    elif not Path(target).exists():
        return False
    else:
        group = zarr.open_group(target, mode="r")
    saved: Any = dict(group.attrs).get("params")
    if json.loads(json.dumps(params)) != {**(saved or {}), "max_iter": params["max_iter"]}:
        raise FileExistsError(
            f"output {target} exists and is not this fit's; pass --overwrite to replace it"
        )
    return True


@cli.command()
@click.argument("input")
@click.option("--k", "-k", "n_clusters", type=click.IntRange(1), required=True, help="Clusters.")
@click.option("--output", "-o", required=True, help="The Zarr group to write.")
@click.option(
    "--method",
    type=click.Choice(["exact", "sinkhorn"]),
    default="exact",
    show_default=True,
    help="BalLOT (exact LP) or E-BalLOT (entropic).",
)
@click.option("--sizes", help="Exact sizes, comma-separated (default: equal).")
@click.option("--size-min", help="Lower bound(s) on the sizes: one integer or k of them.")
@click.option("--size-max", help="Upper bound(s) on the sizes: one integer or k of them.")
@click.option(
    "--init",
    default="k-means++",
    show_default=True,
    help="k-means++, k-means||, random, diameter, coupon, or a .npy file of centers.",
)
@click.option(
    "--n-init",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Runs from different initial centers; the lowest objective is kept.",
)
@click.option("--max-iter", type=click.IntRange(1), default=300, show_default=True)
@click.option(
    "--tol",
    type=click.FloatRange(0),
    default=1e-4,
    show_default=True,
    help="Relative center shift to stop at; 0: until the labels stop changing.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the init.")
@click.option(
    "--reg",
    type=click.FloatRange(0, min_open=True),
    default=1e-2,
    show_default=True,
    help="sinkhorn: relative regularisation.",
)
@click.option(
    "--rounding",
    type=click.Choice(["argmax", "exact"]),
    default="argmax",
    show_default=True,
    help="sinkhorn: the paper's rounding or exact sizes.",
)
@click.option("--array", help="The array of a Zarr group INPUT (default: X).")
@click.option(
    "--weights",
    help="Sample weights: an array of the Zarr group INPUT, or a .npy file (sizes are then "
    "in units of weight).",
)
@click.option("--resume", is_flag=True, help="Continue an interrupted fit from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@_storage_options
@_cluster_options
@_common
def fit(
    input: str,
    n_clusters: int,
    output: str,
    method: str,
    sizes: str | None,
    size_min: str | None,
    size_max: str | None,
    init: str,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    reg: float,
    rounding: str,
    array: str | None,
    weights: str | None,
    resume: bool,
    overwrite: bool,
    storage_options: str | None,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Fit balanced k-means to INPUT (a Zarr array or group, a .npy file, or a sparse .npz
    of scipy.sparse.save_npz) and write the labels, centers, potentials, sizes and the fit's
    record to the Zarr group OUTPUT (a path, or a URL such as s3://bucket/fit.zarr)."""
    with _storage_config(storage_options):
        _fit(input, n_clusters, output, method, sizes, size_min, size_max, init, n_init,
             max_iter, tol, seed, reg, rounding, array, weights, resume, overwrite,
             quiet, cluster)  # fmt: skip


def _storage_options_now() -> dict[str, Any]:
    import dask.config

    return dict(dask.config.get("ballot.storage-options") or {})


def _fit(
    input: str,
    n_clusters: int,
    output: str,
    method: str,
    sizes: str | None,
    size_min: str | None,
    size_max: str | None,
    init: str,
    n_init: int,
    max_iter: int,
    tol: float,
    seed: int,
    reg: float,
    rounding: str,
    array: str | None,
    weights: str | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    cluster: dict[str, Any],
) -> None:
    from ..capacities import resolve_capacities
    from ..checkpoint import checkpoint_path, load_state, save_state
    from ..clusters import describe
    from ..storage import atomic_output, check_output, exists, open_input, open_weights, remove
    from ..weights import check_sample_weight, mass_capacities

    if resume and overwrite:
        raise ValueError("pass either --resume or --overwrite, not both")
    if resume and n_init > 1:
        raise ValueError("--resume continues a single run: it needs --n-init 1")
    target = check_output(output, overwrite=overwrite or resume)
    checkpoint = checkpoint_path(target)
    if exists(checkpoint) and not (resume or overwrite):
        raise FileExistsError(
            f"an interrupted fit left {checkpoint}; pass --resume to continue it or "
            "--overwrite to start again"
        )
    X = open_input(input, array)
    n, d = X.shape
    if n_clusters > n:
        raise ValueError(f"--k ({n_clusters}) must be at most the number of points ({n})")
    capacity_args = {
        "sizes": _int_list(sizes, "--sizes"),
        "size_min": _int_list(size_min, "--size-min"),
        "size_max": _int_list(size_max, "--size-max"),
    }
    sample_weight, weight = None, None
    if weights is not None:
        sample_weight = open_weights(weights, input, n)
        try:
            weight = check_sample_weight(sample_weight, X)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--weights {weights}: {exc}") from exc
        if method != "exact":
            raise ValueError(f"--weights needs --method exact, got --method {method}")
    try:
        if weight is None:
            resolve_capacities(n, n_clusters, **capacity_args)
        else:
            mass_capacities(weight, n_clusters, **capacity_args)
    except ValueError as exc:
        raise ValueError(f"infeasible sizes: {exc}") from exc
    init_value = _read_init(init, n_clusters, d)
    params = _fit_params(
        input,
        array,
        X,
        init_value,
        {
            "n_clusters": n_clusters,
            "method": method,
            **capacity_args,
            "n_init": n_init,
            "max_iter": max_iter,
            "tol": tol,
            "seed": seed,
            "reg": reg,
            "rounding": rounding,
            "weights": _abs(weights) if weights and weights.endswith(".npy") else weights,
        },
    )
    state = None
    if resume:
        if _check_resume_output(target, checkpoint, params):
            if not quiet:
                click.echo(f"{target} is complete; nothing to resume")
            return
        if exists(checkpoint):
            state = load_state(checkpoint, params)
    created = not exists(checkpoint)
    debug = bool(click.get_current_context().meta.get("ballot.debug"))

    from ..estimator import BalancedKMeans

    estimator = BalancedKMeans(
        n_clusters,
        method=method,  # type: ignore[arg-type]
        init=init_value,
        n_init=n_init,
        **capacity_args,
        reg=reg,
        rounding=rounding,  # type: ignore[arg-type]
        max_iter=max_iter,
        tol=tol,
        random_state=seed,
    )
    start = time.perf_counter()
    try:
        with ExitStack() as stack:
            # Ctrl-C is remembered: an interrupt whose exception is swallowed (raised in a
            # garbage-collector callback) still stops the fit before its next iteration
            # and before its output is moved into place
            stack.enter_context(signals_as_interrupt(signal.SIGINT))
            client = stack.enter_context(_cluster(cluster, debug))
            display = stack.enter_context(_reporting(quiet, client))
            if state is not None and not quiet:
                note = f"resuming after iteration {state.iteration} from {checkpoint}"
                if display is not None:
                    display.note(note)
                else:
                    logger.info(note)

            def on_iteration(current: Any) -> None:
                raise_if_interrupted()
                save_state(checkpoint, current, params)
                if display is not None:
                    display(current)

            estimator.fit(X, sample_weight=sample_weight, callback=on_iteration, resume=state)
            elapsed = time.perf_counter() - start
            attrs = _fit_record(estimator, params, elapsed, state)
            attrs["cluster"] = describe(client)
            # an output that appeared meanwhile is replaced only on request
            with atomic_output(target, overwrite=overwrite or resume) as tmp:
                _write_fit(tmp, estimator, attrs, _store_runner(quiet, client))
    except KeyboardInterrupt:
        if exists(checkpoint):
            click.echo("interrupted; continue with the same command and --resume", err=True)
        raise
    except BaseException:
        if created:
            remove(checkpoint)
        raise
    remove(checkpoint)
    if not quiet:
        _summary(estimator, target, time.perf_counter() - start)


def _fit_record(
    estimator: Any, params: dict[str, Any], elapsed: float, state: Any
) -> dict[str, Any]:
    from dataclasses import asdict

    certificate = estimator.certificate_
    return {
        "params": json.loads(json.dumps(params)),
        "n_iter": int(estimator.n_iter_),
        "converged": bool(estimator.converged_),
        "inertia": float(estimator.inertia_),
        "temperature": float(estimator.temperature_),
        "objective_history": [float(x) for x in estimator.objective_history_],
        "certificate": None
        if certificate is None
        else {
            key: (bool(v) if isinstance(v, bool) else float(v) if isinstance(v, float) else int(v))
            for key, v in asdict(certificate).items()
        },
        "passes": _passes_with_label_write(estimator),
        "resumed_from_iteration": None if state is None else int(state.iteration),
        "seconds": round(elapsed, 3),
        "versions": _versions(),
    }


def _passes_with_label_write(estimator: Any) -> dict[str, int]:
    """The fit's passes and the label write's: lazy (Dask) labels are computed from X while
    they are written, one more pass over X in one more round."""
    from dask import is_dask_collection

    passes = {key: int(v) for key, v in estimator.n_passes_.items()}
    if is_dask_collection(estimator.labels_):
        passes["x"] += 1
        passes["rounds"] += 1
    return passes


def _write_fit(path: Path | str, estimator: Any, attrs: dict[str, Any], runner: Any = None) -> None:
    from ..storage import write_arrays

    arrays = {
        "centers": estimator.cluster_centers_,
        "potentials": estimator.potentials_,
        "sizes": estimator.sizes_,
    }
    if getattr(estimator, "split_rows_", None) is not None:  # a weighted fit
        arrays["split_rows"] = estimator.split_rows_
        arrays["split_shares"] = estimator.split_shares_
    write_arrays(
        path,
        arrays,
        chunked={"labels": estimator.labels_},
        attrs=attrs,
        runner=runner,
    )


def _summary(estimator: Any, target: Path | str, elapsed: float) -> None:
    sizes = estimator.sizes_
    cert = estimator.certificate_
    certificate = (
        "none (sinkhorn)"
        if cert is None
        else f"optimal={cert.optimal} duality_gap={cert.duality_gap:.2g} "
        f"violations={cert.violations}"
    )
    click.echo(
        f"wrote {target}\n"
        f"  iterations   {estimator.n_iter_} (converged: {estimator.converged_})\n"
        f"  objective    {estimator.inertia_:.10g}\n"
        f"  sizes        {sizes.min():g}..{sizes.max():g} over {sizes.size} clusters\n"
        f"  certificate  {certificate}\n"
        f"  passes       {_passes_with_label_write(estimator)}\n"
        f"  time         {elapsed:.2f} s"
    )
