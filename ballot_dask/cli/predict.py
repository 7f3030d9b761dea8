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
    _storage_config,
    _storage_options,
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
@_storage_options
@_cluster_options
@_common
def predict(
    model: str,
    input: str,
    output: str,
    method: str,
    array: str | None,
    overwrite: bool,
    storage_options: str | None,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Label INPUT with the fit saved in MODEL (the output of 'fit'); write the labels and
    sizes to the Zarr group OUTPUT (a path, or a URL such as s3://bucket/labels.zarr)."""
    with _storage_config(storage_options):
        _predict(model, input, output, method, array, overwrite, quiet, cluster)


def _predict(
    model: str,
    input: str,
    output: str,
    method: str,
    array: str | None,
    overwrite: bool,
    quiet: bool,
    cluster: dict[str, Any],
) -> None:
    import dask.array as da
    import numpy as np

    from ..clusters import describe
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
                    "cluster": describe(client),
                },
                runner=_store_runner(quiet, client),
            )
            import dask.config
            import zarr

            remote = isinstance(tmp, str)  # a URL
            options = dict(dask.config.get("ballot.storage-options")) if remote else None
            group = zarr.open_group(tmp, mode="r+", storage_options=options)
            stored = da.from_zarr(group["labels"])
            sizes = da.bincount(stored, minlength=k).compute()
            group.create_array("sizes", data=np.asarray(sizes))
    if not quiet:
        click.echo(
            f"wrote {target}: {X.shape[0]} labels ({method}), sizes "
            f"{int(sizes.min())}..{int(sizes.max())}, {time.perf_counter() - start:.2f} s"
        )
