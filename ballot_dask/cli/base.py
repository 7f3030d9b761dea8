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
_USER_ERRORS = (
    ValueError,
    TypeError,
    FileNotFoundError,
    FileExistsError,
    ConnectionError,
    TimeoutError,
    ImportError,
)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or repr(exc)
    if isinstance(exc, _USER_ERRORS):
        return text
    return f"{type(exc).__name__}: {text} (run with --debug for the traceback)"


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is in the chain of causes of ``exc``."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


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
            if _caused_by_interrupt(exc):
                # Ctrl-C inside a compiled kernel surfaces as the SystemError that carries it
                click.echo("interrupted", err=True)
                ctx.exit(_EXIT_INTERRUPTED)
            if ctx.meta.get("ballot.debug"):
                raise
            click.echo(f"error: {_one_line(exc)}", err=True)
            ctx.exit(_EXIT_ERROR)


class _Choice(click.Choice):
    """A choice whose wrong value fails as every other bad input does: one line, status 1
    (click's own failure prints the usage as well)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter:
            name = param.opts[0] if param is not None and param.opts else "the value"
            allowed = ", ".join(str(choice) for choice in self.choices)
            raise ValueError(f"{name} must be one of {allowed}, got {value!r}") from None


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
    """Where a command runs: an embedded cluster, SLURM jobs, Kubernetes pods, or an existing
    scheduler (``ballot_dask.clusters.APPLIES`` says which option applies where)."""
    options = [
        click.option(
            "--cluster",
            type=click.Choice(["local", "slurm", "kubernetes"]),
            help="Where to run: an embedded LocalCluster, worker jobs on SLURM "
            "(dask-jobqueue), or worker pods on Kubernetes (dask-kubernetes)  "
            "[default: ballot.cluster.kind, local].",
        ),
        click.option("--scheduler", metavar="ADDRESS", help="An existing scheduler's address."),
        click.option("--scheduler-file", metavar="FILE", help="An existing scheduler's file."),
        click.option(
            "--n-workers",
            type=click.IntRange(1),
            help="Embedded cluster: worker processes; kubernetes: worker pods.",
        ),
        click.option(
            "--threads-per-worker", type=click.IntRange(1), help="Embedded cluster: threads."
        ),
        click.option(
            "--memory-limit",
            metavar="SIZE",
            help="Embedded cluster: memory per worker ('4GiB', 'auto').",
        ),
        click.option(
            "--jobs",
            type=click.IntRange(1),
            help="slurm: worker jobs to submit  [default: ballot.cluster.jobs, 1].",
        ),
        click.option("--queue", help="slurm: the partition (jobqueue.slurm.queue)."),
        click.option("--account", help="slurm: the account to charge (jobqueue.slurm.account)."),
        click.option(
            "--cores",
            type=click.IntRange(1),
            help="slurm: cores per worker job (jobqueue.slurm.cores); kubernetes: per pod.",
        ),
        click.option(
            "--memory",
            metavar="SIZE",
            help="slurm: memory per worker job, e.g. '8GB' (jobqueue.slurm.memory); "
            "kubernetes: per pod.",
        ),
        click.option(
            "--walltime",
            metavar="HH:MM:SS",
            help="slurm: time limit of a worker job (jobqueue.slurm.walltime).",
        ),
        click.option(
            "--wait-workers",
            metavar="DURATION",
            help="slurm, kubernetes: how long to wait for all the workers, e.g. '90s', "
            "'2h'  [default: ballot.cluster.wait-workers, 10 minutes].",
        ),
        click.option("--image", help="kubernetes: the image (kubernetes.image)."),
        click.option("--namespace", help="kubernetes: the namespace (kubernetes.namespace)."),
        click.option(
            "--env",
            metavar="NAME=VALUE",
            multiple=True,
            help="kubernetes: environment of the pods (kubernetes.env); repeatable.",
        ),
        click.option(
            "--keep-cluster",
            is_flag=True,
            help="kubernetes: leave the DaskCluster running at the end.",
        ),
        click.option(
            "--tls",
            is_flag=True,
            help="Embedded cluster, slurm: TLS with temporary credentials.",
        ),
        click.option(
            "--tls-ca-file", metavar="FILE", help="Join a TLS scheduler: the CA certificate."
        ),
        click.option("--tls-cert", metavar="FILE", help="Join a TLS scheduler: the certificate."),
        click.option("--tls-key", metavar="FILE", help="Join a TLS scheduler: the private key."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


#: the options :func:`_cluster_options` adds, as the command receives them
CLUSTER_OPTIONS = (
    "cluster", "scheduler", "scheduler_file", "n_workers", "threads_per_worker", "memory_limit",
    "jobs", "queue", "account", "cores", "memory", "walltime", "wait_workers", "image",
    "namespace", "env", "keep_cluster", "tls", "tls_ca_file", "tls_cert", "tls_key",
)  # fmt: skip


def _asks_for_cluster(kwargs: dict[str, Any]) -> bool:
    """Whether the cluster options (or ``ballot.cluster.*``) ask for a Dask cluster rather
    than the threads of this process (``make-data``'s default)."""
    if any(kwargs.get(name) not in (None, False, ()) for name in CLUSTER_OPTIONS):
        return True
    return bool(
        config.get("cluster.scheduler-address")
        or config.get("cluster.scheduler-file")
        or config.get("cluster.kind") not in (None, "local")
    )


def _cluster(kwargs: dict[str, Any], debug: bool) -> Any:
    """The ``connect`` context for the cluster options, with ``ballot.cluster.*`` defaults."""
    from dask.utils import parse_bytes, parse_timedelta

    from ..clusters import connect

    given = {name: kwargs.pop(name) for name in CLUSTER_OPTIONS}

    def pick(name: str, key: str) -> Any:
        value = given.pop(name)
        return value if value is not None else config.get(f"cluster.{key}")

    kind = given.pop("cluster")
    scheduler = pick("scheduler", "scheduler-address")
    scheduler_file = pick("scheduler_file", "scheduler-file")
    remote = bool(scheduler or scheduler_file)
    if kind is not None and kind != "local" and remote:
        raise ValueError(
            f"--cluster {kind} starts a cluster and --scheduler/--scheduler-file join one: "
            "pass one or the other"
        )
    if kind is None:
        kind = str(config.get("cluster.kind") or "local")
    if not remote and kind == "local":
        given["n_workers"] = given["n_workers"] or config.get("cluster.n-workers")
        given["threads_per_worker"] = given["threads_per_worker"] or config.get(
            "cluster.threads-per-worker"
        )
        given["memory_limit"] = given["memory_limit"] or config.get("cluster.memory-limit")
    if not remote and kind == "slurm":
        given["jobs"] = given["jobs"] or config.get("cluster.jobs")
    memory = given["memory_limit"]
    if memory not in (None, "auto"):
        try:
            parse_bytes(memory)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"--memory-limit must be a size such as '4GiB' or 'auto', got {memory!r}"
            ) from exc
    wait = given.pop("wait_workers")
    if wait is None and not remote and kind != "local":
        wait = config.get("cluster.wait-workers")
    if wait is not None:
        try:
            wait = parse_timedelta(wait, default="seconds")
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(
                f"--wait-workers must be a duration such as '90s' or '10 minutes', got {wait!r}"
            ) from exc
    if given["env"]:
        from ..deploy.kubernetes import parse_env

        given["env"] = parse_env(given["env"])
    return connect(
        cluster=kind,
        scheduler=scheduler,
        scheduler_file=scheduler_file,
        quiet_logs=not debug,
        wait_workers=wait,
        tls_ca_file=given.pop("tls_ca_file"),
        tls_cert=given.pop("tls_cert"),
        tls_key=given.pop("tls_key"),
        **given,
    )


def _storage_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--storage-options``: the fsspec options of URL inputs and outputs."""
    return click.option(
        "--storage-options",
        metavar="JSON",
        help="Options of the file system of s3:// (or other URL) inputs and outputs, as a "
        'JSON object, e.g. \'{"endpoint_url": "http://127.0.0.1:9000"}\'  '
        "[default: ballot.storage-options; credentials from the AWS environment].",
    )(command)


def _storage_config(text: str | None) -> Any:
    """A ``dask.config.set`` of ``ballot.storage-options`` from ``--storage-options``."""
    import json

    import dask.config

    if text is None:
        return dask.config.set({})
    try:
        options = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            "--storage-options must be a JSON object such as "
            f"'{{\"anon\": false}}', got {text!r} ({exc.msg})"
        ) from exc
    if not isinstance(options, dict):
        raise ValueError(f"--storage-options must be a JSON object, got {text!r}")
    return dask.config.set({"ballot.storage-options": options})


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
