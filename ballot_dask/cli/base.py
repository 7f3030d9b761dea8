"""The ``ballot-dask`` command group and what its commands share: one-line errors,
the common options, the cluster, the progress display."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .. import config

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

    from ..clusters import connect

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
    from ..dask_blocks import observe_rounds
    from ..progress import IterationDisplay, PassProgress, cli_logging

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
    from ..storage import is_url

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


def _store_runner(quiet: bool, client: Any) -> Any:
    """Computes the stores of an output: with Dask's progress bar on a terminal."""
    if quiet or not _is_tty():
        return None
    from ..progress import PassProgress

    return PassProgress(client, after=float(config.get("progress-after")))


def main(argv: list[str] | None = None) -> None:
    """The ``ballot-dask`` console script."""
    cli.main(args=argv, prog_name="ballot-dask")
