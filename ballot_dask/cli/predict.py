"""``ballot-dask predict``: labels of new data from a saved fit."""

from __future__ import annotations

import time
from contextlib import ExitStack
from typing import Any, NamedTuple

import click

from .base import (
    _abs,
    _Choice,
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


class _Rule(NamedTuple):
    """What to write: the labels' rule and, with ``proba``, the memberships."""

    method: str
    proportions: str
    proba: bool
    temperature: float | None


@cli.command()
@click.argument("model")
@click.argument("input")
@click.option("--output", "-o", required=True, help="The Zarr group to write.")
@click.option(
    "--method",
    type=_Choice(["power", "nearest", "balanced"]),
    default="power",
    show_default=True,
    help="The fitted power diagram (keeps the fitted proportions, point by point), the nearest "
    "center, or exact sizes for INPUT as a whole (its own balanced transport problem).",
)
@click.option(
    "--proportions",
    type=_Choice(["equal", "fitted"]),
    default="equal",
    show_default=True,
    help="--method balanced: equal sizes, or the fitted sizes scaled to INPUT.",
)
@click.option(
    "--proba",
    is_flag=True,
    help="Also write the soft memberships (rows of the entropic plan) as the array 'proba'.",
)
@click.option(
    "--temperature",
    type=float,
    help="--proba: the entropic regularisation, > 0  [default: the fit's].",
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
    proportions: str,
    proba: bool,
    temperature: float | None,
    array: str | None,
    overwrite: bool,
    storage_options: str | None,
    quiet: bool,
    **cluster: Any,
) -> None:
    """Label INPUT with the fit saved in MODEL (the output of 'fit'); write the labels and
    sizes (and with --proba the memberships) to the Zarr group OUTPUT (a path, or a URL such
    as s3://bucket/labels.zarr)."""
    if proportions != "equal" and method != "balanced":
        raise ValueError(f"--proportions applies to --method balanced only, not {method}")
    if temperature is not None and not proba:
        raise ValueError("--temperature applies to --proba only")
    rule = _Rule(method, proportions, proba, temperature)
    with _storage_config(storage_options):
        _predict(model, input, output, rule, array, overwrite, quiet, cluster)


def _estimator(saved: dict[str, Any], dtype: Any, rule: _Rule, model: str) -> Any:
    """The fitted estimator of a saved model, with what ``rule`` needs."""
    from ..estimator import BalancedKMeans

    centers = saved["centers"]
    estimator = BalancedKMeans(centers.shape[0])
    estimator.cluster_centers_ = centers.astype(dtype, copy=False)
    estimator.potentials_ = saved["potentials"]
    estimator.n_features_in_ = centers.shape[1]
    if saved.get("sizes") is not None:
        estimator.sizes_ = saved["sizes"]
    elif rule.proportions == "fitted":
        raise ValueError(f"--proportions fitted: the model {model} has no array sizes")
    stored = saved["attrs"].get("temperature")
    if stored is not None:
        estimator.temperature_ = float(stored)
    elif rule.proba and rule.temperature is None:
        raise ValueError(f"--proba: the model {model} records no temperature; pass --temperature")
    return estimator


def _predict(
    model: str,
    input: str,
    output: str,
    rule: _Rule,
    array: str | None,
    overwrite: bool,
    quiet: bool,
    cluster: dict[str, Any],
) -> None:
    import dask.array as da
    import numpy as np

    from ..clusters import describe
    from ..prediction import check_temperature
    from ..storage import atomic_output, check_output, open_input, read_model, write_arrays

    target = check_output(output, overwrite=overwrite)
    if rule.temperature is not None:
        check_temperature(rule.temperature)
    saved = read_model(model)
    X = open_input(input, array)
    k, d = saved["centers"].shape
    if X.shape[1] != d:
        raise ValueError(
            f"input {input} has {X.shape[1]} features, the model {model} was fitted on {d}"
        )
    estimator = _estimator(saved, X.dtype, rule, model)
    method = rule.method
    attrs: dict[str, Any] = {
        "model": _abs(model),
        "input": _abs(input),
        "array": array,
        "method": method,
    }
    if method == "balanced":
        attrs["proportions"] = rule.proportions
    debug = bool(click.get_current_context().meta.get("ballot.debug"))
    start = time.perf_counter()
    with ExitStack() as stack:
        client = stack.enter_context(_cluster(cluster, debug))
        stack.enter_context(_reporting(quiet, client))
        chunked = {"labels": _labels(estimator, X, rule)}
        if rule.proba:
            chunked["proba"] = estimator.predict_proba(X, temperature=rule.temperature)
            chosen = rule.temperature
            attrs["temperature"] = float(estimator.temperature_ if chosen is None else chosen)
        attrs.update({"versions": _versions(), "cluster": describe(client)})
        with atomic_output(target, overwrite=overwrite) as tmp:
            write_arrays(tmp, {}, chunked=chunked, attrs=attrs, runner=_store_runner(quiet, client))
            import dask.config
            import zarr

            remote = isinstance(tmp, str)  # a URL
            options = dict(dask.config.get("ballot.storage-options")) if remote else None
            group = zarr.open_group(tmp, mode="r+", storage_options=options)
            stored = da.from_zarr(group["labels"])
            sizes = da.bincount(stored, minlength=k).compute()
            group.create_array("sizes", data=np.asarray(sizes))
    if not quiet:
        how = f"{method}, {rule.proportions}" if method == "balanced" else method
        extra = f", memberships at temperature {attrs['temperature']:.3g}" if rule.proba else ""
        click.echo(
            f"wrote {target}: {X.shape[0]} labels ({how}), sizes "
            f"{int(sizes.min())}..{int(sizes.max())}{extra}, {time.perf_counter() - start:.2f} s"
        )


def _labels(estimator: Any, X: Any, rule: _Rule) -> Any:
    if rule.method == "balanced":
        return estimator.predict(X, method="balanced", proportions=rule.proportions)
    return estimator.predict(X, method=rule.method)
