"""The ``ballot-dask`` command line (also ``dask ballot``): make-data, fit, predict, demo.

Every command reads its inputs lazily, runs on a Dask cluster (an embedded ``LocalCluster``
unless ``--scheduler``/``--scheduler-file`` name one) and writes its output atomically.  A
failure prints one line on stderr and exits with status 1 (``--debug`` shows the traceback);
nothing is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import click

from . import config

logger = logging.getLogger("ballot_dask")

_EXIT_ERROR = 1
_EXIT_INTERRUPTED = 130
_USER_ERRORS = (ValueError, TypeError, FileNotFoundError, FileExistsError, ConnectionError)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or repr(exc)
    if isinstance(exc, _USER_ERRORS):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


class _Group(click.Group):
    """Reports a command's failure as one line on stderr, without a traceback unless the
    command ran with ``--debug``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(_EXIT_INTERRUPTED)
        except Exception as exc:
            if ctx.meta.get("ballot.debug"):
                raise
            click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(_EXIT_ERROR)


def _set_debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    ctx.meta["ballot.debug"] = bool(value)


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--quiet`` and ``--debug``."""
    command = click.option(
        "--debug",
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_set_debug,
        help="Show the traceback of a failure, and the cluster's warnings.",
    )(command)
    return click.option(
        "--quiet", "-q", is_flag=True, help="Print nothing but errors and the results."
    )(command)


def _cluster_options(command: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--cluster",
            type=click.Choice(["local", "slurm", "kubernetes"]),
            default="local",
            show_default=True,
            help="Where to run: an embedded LocalCluster (slurm and kubernetes: not yet).",
        ),
        click.option("--scheduler", metavar="ADDRESS", help="An existing scheduler's address."),
        click.option("--scheduler-file", metavar="FILE", help="An existing scheduler's file."),
        click.option(
            "--n-workers", type=click.IntRange(1), help="Embedded cluster: worker processes."
        ),
        click.option(
            "--threads-per-worker", type=click.IntRange(1), help="Embedded cluster: threads."
        ),
        click.option(
            "--memory-limit",
            metavar="SIZE",
            help="Embedded cluster: memory per worker ('4GiB', 'auto').",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _cluster(kwargs: dict[str, Any], debug: bool) -> Any:
    """The ``connect`` context for the cluster options, with ``ballot.cluster.*`` defaults."""
    from dask.utils import parse_bytes

    from .clusters import connect

    def pick(name: str, key: str) -> Any:
        value = kwargs.pop(name)
        return value if value is not None else config.get(f"cluster.{key}")

    scheduler = pick("scheduler", "scheduler-address")
    scheduler_file = pick("scheduler_file", "scheduler-file")
    remote = bool(scheduler or scheduler_file)
    n_workers = kwargs.pop("n_workers")
    threads = kwargs.pop("threads_per_worker")
    memory = kwargs.pop("memory_limit")
    if not remote:
        n_workers = n_workers or config.get("cluster.n-workers")
        threads = threads or config.get("cluster.threads-per-worker")
        memory = memory or config.get("cluster.memory-limit")
    if memory not in (None, "auto"):
        try:
            parse_bytes(memory)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"--memory-limit must be a size such as '4GiB' or 'auto', got {memory!r}"
            ) from exc
    return connect(
        cluster=kwargs.pop("cluster"),
        scheduler=scheduler,
        scheduler_file=scheduler_file,
        n_workers=n_workers,
        threads_per_worker=threads,
        memory_limit=memory,
        quiet_logs=not debug,
    )


def _is_tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def _reporting(quiet: bool, client: Any) -> Iterator[Any]:
    """The progress display: yields the per-iteration callback, or None (log lines)."""
    from .dask_blocks import observe_rounds
    from .progress import IterationDisplay, PassProgress, cli_logging

    if quiet:
        with cli_logging("quiet"):
            yield None
    elif _is_tty():
        after = float(config.get("progress-after"))
        with cli_logging("tty"), observe_rounds(PassProgress(client, after=after)):
            yield IterationDisplay()
    else:
        with cli_logging("log"):
            yield None


def _int_list(value: str | None, name: str) -> Any:
    """``"3"`` -> 3, ``"1,2,3"`` -> [1, 2, 3], None -> None."""
    if value is None:
        return None
    try:
        items = [int(item) for item in value.split(",") if item.strip()]
    except ValueError as exc:
        raise ValueError(
            f"{name} must be an integer or comma-separated integers, got {value!r}"
        ) from exc
    if not items:
        raise ValueError(f"{name} is empty")
    return items[0] if len(items) == 1 and "," not in value else items


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("ballot-dask", "numpy", "scipy", "dask", "distributed", "zarr", "pot", "numba"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def _abs(path: str) -> str:
    from .storage import is_url

    return path if is_url(path) else str(Path(path).resolve())


@click.group(
    cls=_Group,
    name="ballot",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="ballot-dask")
def cli() -> None:
    """Balanced k-means at any scale: k clusters of prescribed sizes, by optimal transport
    (BalLOT), on Dask."""


# -- make-data -------------------------------------------------------------------------------


@cli.command("make-data")
@click.argument("out")
@click.option("--n", "n", type=click.IntRange(1), required=True, help="Points.")
@click.option("--d", "d", type=click.IntRange(1), required=True, help="Dimensions.")
@click.option("--k", "-k", "k", type=click.IntRange(1), required=True, help="Clusters.")
@click.option(
    "--model",
    type=click.Choice(["ball", "gmm"]),
    default="ball",
    show_default=True,
    help="Stochastic ball model (uniform in unit balls) or Gaussian mixture (unit variance).",
)
@click.option(
    "--delta", type=float, default=3.0, show_default=True, help="Distance between centres."
)
@click.option(
    "--chunks", type=click.IntRange(1), default=100_000, show_default=True, help="Rows per chunk."
)
@click.option(
    "--dtype", type=click.Choice(["float32", "float64"]), default="float64", show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@_common
def make_data(
    out: str,
    n: int,
    d: int,
    k: int,
    model: str,
    delta: float,
    chunks: int,
    dtype: str,
    seed: int,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Write a balanced synthetic dataset to the Zarr group OUT (arrays X and labels_true),
    chunk by chunk."""
    import dask
    import numpy as np

    from .datasets import make_data as generate
    from .storage import atomic_output, check_output, write_arrays

    target = check_output(out, overwrite=overwrite)
    if k > n:
        raise ValueError(f"--k ({k}) must be at most --n ({n})")
    X, labels, centers = generate(
        model, n, d, k, delta=delta, chunks=chunks, seed=seed, dtype=np.dtype(dtype)
    )
    start = time.perf_counter()
    attrs = {
        "model": model,
        "n": n,
        "d": d,
        "k": k,
        "delta": delta,
        "seed": seed,
        "versions": _versions(),
    }
    bar: Any = nullcontext()
    if not quiet and _is_tty():
        from dask.diagnostics import ProgressBar

        bar = ProgressBar(minimum=float(config.get("progress-after")), out=sys.stderr)
    with (
        dask.config.set(scheduler="threads"),
        bar,
        atomic_output(target, overwrite=overwrite) as tmp,
    ):
        write_arrays(
            tmp, {"centers": centers}, chunked={"X": X, "labels_true": labels}, attrs=attrs
        )
    if not quiet:
        click.echo(
            f"wrote {target}: X {X.shape} {X.dtype} in {X.numblocks[0]} chunks of {chunks} rows, "
            f"labels_true, centers ({model}, delta {delta:g}) in "
            f"{time.perf_counter() - start:.1f} s"
        )


# -- fit -------------------------------------------------------------------------------------


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

    from .initialization import INITIALIZERS

    if init in INITIALIZERS:
        return init
    path = Path(init)
    if path.suffix != ".npy" or not path.exists():
        raise ValueError(
            f"--init must be one of {', '.join(INITIALIZERS)} or a .npy file of centers, "
            f"got {init!r}"
        )
    centers = np.load(path, allow_pickle=False)
    if centers.shape != (k, d):
        raise ValueError(f"--init {init}: centers of shape {centers.shape}, expected ({k}, {d})")
    return centers.astype(np.float64)


def _check_resume_output(target: Path, checkpoint: Path, params: dict[str, Any]) -> bool:
    """With ``--resume``: whether the fit is already complete (its output exists)."""
    import zarr

    if checkpoint.exists() or not target.exists():
        return False
    saved = dict(zarr.open_group(target, mode="r").attrs).get("params")
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
    help="k-means++, random, diameter, coupon, or a .npy file of centers.",
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
@click.option("--resume", is_flag=True, help="Continue an interrupted fit from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
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
    max_iter: int,
    tol: float,
    seed: int,
    reg: float,
    rounding: str,
    array: str | None,
    resume: bool,
    overwrite: bool,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Fit balanced k-means to INPUT (a Zarr array or group, or a .npy file) and write the
    labels, centers, potentials, sizes and the fit's record to the Zarr group OUTPUT."""
    from .capacities import resolve_capacities
    from .checkpoint import checkpoint_path, load_state, save_state
    from .storage import atomic_output, check_output, open_input

    if resume and overwrite:
        raise ValueError("pass either --resume or --overwrite, not both")
    target = check_output(output, overwrite=overwrite or resume)
    checkpoint = checkpoint_path(target)
    if checkpoint.exists() and not (resume or overwrite):
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
    try:
        resolve_capacities(n, n_clusters, **capacity_args)
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
            "max_iter": max_iter,
            "tol": tol,
            "seed": seed,
            "reg": reg,
            "rounding": rounding,
        },
    )
    state = None
    if resume:
        if _check_resume_output(target, checkpoint, params):
            if not quiet:
                click.echo(f"{target} is complete; nothing to resume")
            return
        if checkpoint.exists():
            state = load_state(checkpoint, params)
    created = not checkpoint.exists()
    debug = bool(click.get_current_context().meta.get("ballot.debug"))

    from .estimator import BalancedKMeans

    estimator = BalancedKMeans(
        n_clusters,
        method=method,  # type: ignore[arg-type]
        init=init_value,
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
            client = stack.enter_context(_cluster(cluster, debug))
            display = stack.enter_context(_reporting(quiet, client))
            if state is not None and not quiet:
                note = f"resuming after iteration {state.iteration} from {checkpoint}"
                display.note(note) if display is not None else logger.info(note)

            def on_iteration(current: Any) -> None:
                save_state(checkpoint, current, params)
                if display is not None:
                    display(current)

            estimator.fit(X, callback=on_iteration, resume=state)
            elapsed = time.perf_counter() - start
            attrs = _fit_record(estimator, params, elapsed, state)
            with atomic_output(target, overwrite=True) as tmp:
                _write_fit(tmp, estimator, attrs, _store_runner(quiet, client))
    except KeyboardInterrupt:
        if checkpoint.exists():
            click.echo("interrupted; continue with the same command and --resume", err=True)
        raise
    except BaseException:
        if created:
            checkpoint.unlink(missing_ok=True)
        raise
    checkpoint.unlink(missing_ok=True)
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
        "objective_history": [float(x) for x in estimator.objective_history_],
        "certificate": None
        if certificate is None
        else {
            key: (bool(v) if isinstance(v, bool) else float(v) if isinstance(v, float) else int(v))
            for key, v in asdict(certificate).items()
        },
        "passes": {key: int(v) for key, v in estimator.n_passes_.items()},
        "resumed_from_iteration": None if state is None else int(state.iteration),
        "seconds": round(elapsed, 3),
        "versions": _versions(),
    }


def _store_runner(quiet: bool, client: Any) -> Any:
    """Computes the stores of an output: with Dask's progress bar on a terminal."""
    if quiet or not _is_tty():
        return None
    from .progress import PassProgress

    return PassProgress(client, after=float(config.get("progress-after")))


def _write_fit(path: Path, estimator: Any, attrs: dict[str, Any], runner: Any = None) -> None:
    from .storage import write_arrays

    write_arrays(
        path,
        {
            "centers": estimator.cluster_centers_,
            "potentials": estimator.potentials_,
            "sizes": estimator.sizes_,
        },
        chunked={"labels": estimator.labels_},
        attrs=attrs,
        runner=runner,
    )


def _summary(estimator: Any, target: Path, elapsed: float) -> None:
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
        f"  sizes        {int(sizes.min())}..{int(sizes.max())} over {sizes.size} clusters\n"
        f"  certificate  {certificate}\n"
        f"  passes       {estimator.n_passes_}\n"
        f"  time         {elapsed:.2f} s"
    )


# -- predict ---------------------------------------------------------------------------------


@cli.command()
@click.argument("model")
@click.argument("input")
@click.option("--output", "-o", required=True, help="The Zarr group to write.")
@click.option(
    "--method",
    type=click.Choice(["power", "nearest"]),
    default="power",
    show_default=True,
    help="The fitted power diagram (keeps the balance) or the nearest center.",
)
@click.option("--array", help="The array of a Zarr group INPUT (default: X).")
@click.option("--overwrite", is_flag=True, help="Replace the output if it exists.")
@_cluster_options
@_common
def predict(
    model: str,
    input: str,
    output: str,
    method: str,
    array: str | None,
    overwrite: bool,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Label INPUT with the fit saved in MODEL (the output of 'fit'); write the labels and
    sizes to the Zarr group OUTPUT."""
    import dask.array as da
    import numpy as np

    from .estimator import BalancedKMeans
    from .storage import atomic_output, check_output, open_input, read_model, write_arrays

    target = check_output(output, overwrite=overwrite)
    saved = read_model(model)
    X = open_input(input, array)
    centers = saved["centers"]
    k, d = centers.shape
    if X.shape[1] != d:
        raise ValueError(
            f"input {input} has {X.shape[1]} features, the model {model} was fitted on {d}"
        )
    estimator = BalancedKMeans(k)
    estimator.cluster_centers_ = centers.astype(X.dtype, copy=False)
    estimator.potentials_ = saved["potentials"]
    estimator.n_features_in_ = d
    debug = bool(click.get_current_context().meta.get("ballot.debug"))
    start = time.perf_counter()
    with ExitStack() as stack:
        client = stack.enter_context(_cluster(cluster, debug))
        stack.enter_context(_reporting(quiet, client))
        labels = estimator.predict(X, method=method)  # type: ignore[arg-type]
        with atomic_output(target, overwrite=overwrite) as tmp:
            write_arrays(
                tmp,
                {},
                chunked={"labels": labels},
                attrs={
                    "model": _abs(model),
                    "input": _abs(input),
                    "array": array,
                    "method": method,
                    "versions": _versions(),
                },
                runner=_store_runner(quiet, client),
            )
            import zarr

            stored = da.from_zarr(zarr.open_array(tmp / "labels", mode="r"))
            sizes = da.bincount(stored, minlength=k).compute()
            zarr.open_group(tmp, mode="r+").create_array("sizes", data=np.asarray(sizes))
    if not quiet:
        click.echo(
            f"wrote {target}: {X.shape[0]} labels ({method}), sizes "
            f"{int(sizes.min())}..{int(sizes.max())}, {time.perf_counter() - start:.2f} s"
        )


# -- demo ------------------------------------------------------------------------------------


@cli.command()
@click.option("--n", "n", type=click.IntRange(2), default=1_000_000, show_default=True)
@click.option("--k", "-k", "k", type=click.IntRange(1), default=8, show_default=True)
@click.option("--d", "d", type=click.IntRange(1), default=2, show_default=True)
@click.option("--model", type=click.Choice(["gmm", "ball"]), default="gmm", show_default=True)
@click.option("--delta", type=float, default=3.0, show_default=True)
@click.option("--chunks", type=click.IntRange(1), default=250_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--plot",
    "plot",
    default="ballot-demo.png",
    show_default=True,
    help="Where to write the PNG plot.",
)
@_cluster_options
@_common
def demo(
    n: int,
    k: int,
    d: int,
    model: str,
    delta: float,
    chunks: int,
    seed: int,
    plot: str,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Fit a synthetic balanced dataset on an embedded cluster, print a summary and plot it."""
    from .demo import run_demo

    debug = bool(click.get_current_context().meta.get("ballot.debug"))
    if k > n:
        raise ValueError(f"--k ({k}) must be at most --n ({n})")
    with ExitStack() as stack:
        client = stack.enter_context(_cluster(cluster, debug))
        display = stack.enter_context(_reporting(quiet, client))
        run_demo(
            client,
            n=n,
            k=k,
            d=d,
            model=model,
            delta=delta,
            chunks=chunks,
            seed=seed,
            plot=Path(plot),
            display=display,
            quiet=quiet,
        )


def main(argv: list[str] | None = None) -> None:
    """The ``ballot-dask`` console script."""
    cli.main(args=argv, prog_name="ballot-dask")


if __name__ == "__main__":  # python -m ballot_dask.cli
    main()
