"""``ballot-dask demo``: the main job (see :mod:`ballot_dask.demo`)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import click

from .base import (
    _cluster,
    _cluster_options,
    _common,
    _reporting,
    cli,
)


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
    from ..demo import run_demo

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
