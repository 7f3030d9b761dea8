"""What the cluster options accept and refuse, what importing the cluster libraries leaves
behind, and ``deploy/docker/Dockerfile`` kept in step with the package and the manifests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from importlib.metadata import entry_points, version
from pathlib import Path

import numpy as np
import pytest
import zarr
from click.testing import CliRunner

from ballot_dask.cli import cli
from ballot_dask.deploy.slurm import _stderr_of

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def run(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("deploy") / "small.zarr"
    result = run("make-data", path, "--n", 2000, "--d", 2, "--k", 2, "--chunks", 500, "-q")
    assert result.exit_code == 0, result.output
    return path


# --------------------------------------------------------------------------------------------
# the cluster options
# --------------------------------------------------------------------------------------------

OPTION_ERRORS = {
    "jobs on local": (["--jobs", "2"], "--jobs applies to --cluster slurm, not to --cluster local"),
    "image on slurm": (
        ["--cluster", "slurm", "--image", "x"],
        "--image applies to --cluster kubernetes, not to --cluster slurm",
    ),
    "threads on kubernetes": (
        ["--cluster", "kubernetes", "--threads-per-worker", "2"],
        "--threads-per-worker applies to --cluster local, not to --cluster kubernetes",
    ),
    "queue with a scheduler": (
        ["--scheduler", "tcp://127.0.0.1:9", "--queue", "debug"],
        "--queue applies to a cluster this command starts; it does not apply with --scheduler",
    ),
    "wait-workers": (
        ["--cluster", "slurm", "--wait-workers", "soon"],
        "--wait-workers must be a duration such as '90s' or '10 minutes', got 'soon'",
    ),
    "slurm without a job size": (
        ["--cluster", "slurm"],
        "--cluster slurm needs the size of a worker job: pass --cores and --memory",
    ),
    "slurm memory": (
        ["--cluster", "slurm", "--cores", "1", "--memory", "lots"],
        "--memory must be a size such as '4GB' (per worker job), got 'lots'",
    ),
    "kubernetes without workers": (
        ["--cluster", "kubernetes"],
        "--cluster kubernetes needs the number of worker pods: pass --n-workers",
    ),
    "kubernetes env": (
        ["--cluster", "kubernetes", "--n-workers", "2", "--env", "NOVALUE"],
        "--env must be NAME=VALUE, got 'NOVALUE'",
    ),
}


@pytest.mark.parametrize("case", list(OPTION_ERRORS))
def test_cluster_option_errors_are_one_line_and_write_nothing(case, small, tmp_path):
    args, message = OPTION_ERRORS[case]
    result = run("fit", small, "--k", 2, "-o", tmp_path / "o.zarr", *args)
    _check_one_line(result, message, tmp_path)


def test_slurm_without_sbatch_says_so(small, tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    result = CliRunner().invoke(
        cli,
        ["fit", str(small), "--k", "2", "-o", str(tmp_path / "o.zarr"), "--cluster", "slurm",
         "--cores", "1", "--memory", "1GB"],
        env={"PATH": str(empty)},
        catch_exceptions=False,
    )  # fmt: skip
    _check_one_line(result, "--cluster slurm submits worker jobs with sbatch, which is not on "
                    "the PATH", tmp_path, ignore={"bin"})  # fmt: skip


def _check_one_line(result, message: str, where: Path, ignore: set[str] = frozenset()) -> None:
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert {p.name for p in where.iterdir()} == set(ignore)


def test_make_data_runs_on_threads_unless_a_cluster_is_asked_for(small, tmp_path):
    assert "cluster" not in zarr.open_group(small, mode="r").attrs
    out = tmp_path / "on-cluster.zarr"
    result = run("make-data", out, "--n", 2000, "--d", 2, "--k", 2, "--chunks", 500,
                 "--n-workers", 1, "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    group = zarr.open_group(out, mode="r")
    assert group.attrs["cluster"] == {"protocol": "tcp", "workers": 1}
    # the same data either way (the generator is seeded per chunk)
    np.testing.assert_array_equal(group["X"][:], zarr.open_group(small, mode="r")["X"][:])


def test_what_sbatch_said_is_kept_on_one_line():
    message = (
        "Command exited with non-zero exit code.\nExit code: 1\nCommand:\nsbatch /tmp/x.sh\n"
        "stdout:\n\nstderr:\nsbatch: error: Invalid account or account/partition combination\n"
        "sbatch: error: Batch job submission failed: Invalid account\n\n"
    )
    assert _stderr_of(message) == (
        "sbatch: error: Invalid account or account/partition combination; "
        "sbatch: error: Batch job submission failed: Invalid account"
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_importing_the_cluster_libraries_leaves_home_and_ctrl_c_alone(tmp_path):
    """dask-jobqueue and dask-kubernetes write YAML into ~/.config/dask on import, and
    dask-jobqueue makes Ctrl-C exit with status 0; neither happens through ballot-dask."""
    script = (
        "import signal\n"
        "before = signal.getsignal(signal.SIGINT)\n"
        "from ballot_dask.deploy.slurm import cluster_kwargs\n"
        "from ballot_dask.deploy.kubernetes import cluster_spec\n"
        "assert cluster_kwargs(cores=1, memory='1GB') == {'cores': 1, 'memory': '1GB'}\n"
        "assert cluster_spec(n_workers=1)['kind'] == 'DaskCluster'\n"
        "import dask\n"
        "assert dask.config.get('jobqueue.slurm.walltime') == '00:30:00'\n"
        "print(signal.getsignal(signal.SIGINT) is before is signal.default_int_handler)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_")}
    env["HOME"] = str(tmp_path)
    # a test run started in the background ignores SIGINT: the child starts as from a terminal
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, timeout=120, check=False,
                         preexec_fn=_default_sigint)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
    assert list(tmp_path.rglob("*")) == []


# --------------------------------------------------------------------------------------------
# deploy/docker/Dockerfile
# --------------------------------------------------------------------------------------------


def dockerfile_arg(name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert match, f"the Dockerfile sets no ARG {name}"
    return match[1]


def test_the_dockerfile_installs_this_version_with_the_extras_the_manifests_use():
    yaml = pytest.importorskip("yaml")
    project_version = PYPROJECT["project"]["version"]
    assert dockerfile_arg("BALLOT_DASK_VERSION") == project_version == version("ballot-dask")
    extras = set(dockerfile_arg("BALLOT_DASK_EXTRAS").split(","))
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"])
    text = DOCKERFILE.read_text()
    # the package build finds what pyproject.toml names
    assert PYPROJECT["project"]["readme"] in text and "COPY ballot_dask " in text
    assert 'pip install "/src[${BALLOT_DASK_EXTRAS}]"' in text

    manifests = {p.name: yaml.safe_load(p.read_text()) for p in
                 (REPO / "deploy" / "kubernetes").glob("*.yaml")}  # fmt: skip
    user = int(re.search(r"^USER (\d+):\d+$", text, re.MULTILINE)[1])  # type: ignore[index]
    assert user != 0
    seen_images, seen_users, commands = set(), set(), set()
    for manifest in manifests.values():
        text_of = str(manifest)
        if "s3://" in text_of:
            assert "s3" in extras  # s3fs in the image
        for pod in _pods(manifest):
            seen_users.add(pod["securityContext"]["runAsUser"])
            for container in pod["containers"]:
                seen_images.add(container["image"])
                commands.add(container["args"][0])
    assert seen_images == {f"ballot-dask:{project_version}"}
    assert seen_users == {user}
    # the commands the pods run are console scripts of what the image installs
    assert commands == {"dask", "ballot-dask"}
    assert "ballot-dask" in PYPROJECT["project"]["scripts"]
    assert "dask" in {ep.name for ep in entry_points(group="console_scripts")}
    dask_commands = {ep.name for ep in entry_points(group="dask_cli")}
    assert {"scheduler", "worker", "ballot"} <= dask_commands


def _pods(manifest):
    spec = manifest["spec"]
    cluster = spec if manifest["kind"] == "DaskCluster" else spec["cluster"]["spec"]
    pods = [cluster["worker"]["spec"], cluster["scheduler"]["spec"]]
    if manifest["kind"] == "DaskJob":
        pods.append(spec["job"]["spec"])
    return pods


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to run a worker as another user) and setpriv",
)
def test_a_worker_as_the_image_runs_it_non_root_without_a_home(tmp_path):
    """The image's worker: another user than the package's owner (site-packages read-only
    for it), no home directory; the kernels compile and are cached under /tmp."""
    import tempfile

    import dask.array as da
    from distributed import Client, LocalCluster

    from ballot_dask import balanced_assign
    from ballot_dask.jit import cache_dir

    nobody = 65534
    tmp = Path(tempfile.mkdtemp(prefix="ballot-worker-"))
    tmp.chmod(0o1777)
    worker = None
    try:
        with LocalCluster(n_workers=0, dashboard_address=":0", host="127.0.0.1") as cluster:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("NUMBA_CACHE", "DASK_BALLOT"))}  # fmt: skip
            env.update(HOME="/nonexistent", TMPDIR=str(tmp))
            log = tmp_path / "worker.log"
            with open(log, "wb") as out:
                worker = subprocess.Popen(
                    ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups",
                     sys.executable, "-m", "distributed.cli.dask_worker",
                     cluster.scheduler_address, "--nthreads", "1", "--no-nanny",
                     "--local-directory", str(tmp)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            with Client(cluster) as client:
                deadline = time.monotonic() + 120
                while not client.scheduler_info()["workers"]:
                    assert worker.poll() is None, log.read_text()[-2000:]
                    assert time.monotonic() < deadline, "the worker did not join"
                    time.sleep(0.2)
                X = da.from_array(np.random.default_rng(0).random((4000, 2)), chunks=1000)
                result = balanced_assign(X, np.array([[0.2, 0.2], [0.8, 0.8]]))
                assert np.bincount(np.asarray(result.labels)).tolist() == [2000, 2000]
                (where,) = client.run(cache_dir).values()
                (uid,) = client.run(os.getuid).values()
                worker.terminate()  # while its scheduler runs: a clean exit
                worker.wait(timeout=60)
        assert uid == nobody
        assert where == str(tmp / f"ballot-dask-{nobody}" / "kernels")
        cached = [p for p in Path(where).rglob("*") if p.suffix in (".nbi", ".nbc")]
        assert cached and all(p.stat().st_uid == nobody for p in cached)
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)
