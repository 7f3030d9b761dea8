"""``ballot-dask make-data``: balanced synthetic datasets written to Zarr."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from .. import config
from .base import (
    _asks_for_cluster,
    _cluster,
    _cluster_options,
    _common,
    _is_tty,
    _storage_config,
    _storage_options,
    _store_runner,
    _versions,
    cli,
)


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
@_storage_options
@_cluster_options
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
    storage_options: str | None,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Write a balanced synthetic dataset to the Zarr group OUT (arrays X and labels_true),
    chunk by chunk: with this process's threads, or on the cluster the cluster options
    name.  OUT is a path or a URL such as s3://bucket/points.zarr."""
    with _storage_config(storage_options):
        _make_data(out, n, d, k, model, delta, chunks, dtype, seed, overwrite, quiet, cluster)


def _make_data(
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
    cluster: dict[str, Any],
) -> None:
    from contextlib import ExitStack

    import dask
    import numpy as np

    from ..datasets import make_data as generate
    from ..storage import atomic_output, check_output, write_arrays

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
    debug = bool(click.get_current_context().meta.get("ballot.debug"))
    with ExitStack() as stack:
        runner = None
        if _asks_for_cluster(cluster):
            from ..clusters import describe

            client = stack.enter_context(_cluster(cluster, debug))
            runner = _store_runner(quiet, client)
            attrs["cluster"] = describe(client)
        else:
            stack.enter_context(dask.config.set(scheduler="threads"))
            if not quiet and _is_tty():
                from dask.diagnostics import ProgressBar

                after = float(config.get("progress-after"))
                stack.enter_context(ProgressBar(minimum=after, out=sys.stderr))
        tmp = stack.enter_context(atomic_output(target, overwrite=overwrite))
        write_arrays(
            tmp,
            {"centers": centers},
            chunked={"X": X, "labels_true": labels},
            attrs=attrs,
            runner=runner,
        )
    if not quiet:
        click.echo(
            f"wrote {target}: X {X.shape} {X.dtype} in {X.numblocks[0]} chunks of {chunks} rows, "
            f"labels_true, centers ({model}, delta {delta:g}) in "
            f"{time.perf_counter() - start:.1f} s"
        )
