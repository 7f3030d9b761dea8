"""``ballot-dask predict``: labels of new data from a saved fit."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any

import click

from .base import (
    _abs,
    _cluster,
    _cluster_options,
    _common,
    _reporting,
    _store_runner,
    _versions,
    cli,
)


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

    from ..estimator import BalancedKMeans
    from ..storage import atomic_output, check_output, open_input, read_model, write_arrays

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
