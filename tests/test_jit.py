"""Where the compiled kernels are cached: never in the package directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import ballot_dask

PACKAGE = Path(ballot_dask.__file__).resolve().parent

# compiles one small kernel and prints where the cache went
SCRIPT = """
import numpy as np
from ballot_dask import costs
from ballot_dask.jit import cache_dir
costs.cost_block(np.ones((3, 2)), np.zeros((2, 2)))
print(cache_dir())
"""


def _cache_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.suffix in (".nbi", ".nbc")]


def _run(env: dict[str, str], user: list[str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_CACHE", "DASK_BALLOT"))}
    return subprocess.run(
        [*(user or []), sys.executable, "-c", SCRIPT],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_kernels_are_cached_in_the_configured_directory_not_the_package(tmp_path):
    before = set(_cache_files(PACKAGE))
    out = _run({"DASK_BALLOT__KERNEL_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "cache")
    assert _cache_files(tmp_path / "cache"), "nothing was cached"
    assert set(_cache_files(PACKAGE)) == before


def test_numba_cache_dir_wins_and_false_disables_the_cache(tmp_path):
    out = _run({"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "DASK_BALLOT__KERNEL_CACHE": "x"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(tmp_path / "numba")
    assert _cache_files(tmp_path / "numba")
    out = _run({"DASK_BALLOT__KERNEL_CACHE": "false", "TMPDIR": str(tmp_path / "tmp")})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    assert not (tmp_path / "tmp").exists() or not _cache_files(tmp_path / "tmp")


def test_default_cache_is_private_to_the_user_under_the_temp_dir(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = _run({"TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    where = Path(out.stdout.strip())
    assert where.parent == tmp / f"ballot-dask-{os.getuid()}"
    assert _cache_files(where)
    assert (where.parent.stat().st_mode & 0o077) == 0


def test_a_cache_directory_others_can_write_is_not_used(tmp_path):
    tmp = tmp_path / "tmp"
    shared = tmp / f"ballot-dask-{os.getuid()}"
    shared.mkdir(parents=True)
    shared.chmod(0o777)
    out = _run({"TMPDIR": str(tmp)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    assert "not private" in out.stderr
    assert not _cache_files(shared)


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root (to run as another user) and setpriv",
)
def test_another_user_with_a_read_only_package_directory_compiles_and_caches():
    # a container's worker user: it cannot write to site-packages (here: the package
    # directory, owned by root) and has a home it must not need
    import pwd
    import tempfile

    nobody = pwd.getpwnam("nobody")
    tmp = Path(tempfile.mkdtemp(prefix="ballot-jit-test-"))
    tmp.chmod(0o1777)  # pytest's tmp_path is private to root
    try:
        _run_as_nobody(nobody, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_as_nobody(nobody, tmp: Path) -> None:
    assert not os.access(PACKAGE, os.W_OK) or PACKAGE.stat().st_uid != nobody.pw_uid
    before = set(_cache_files(PACKAGE))
    out = _run(
        {"TMPDIR": str(tmp), "HOME": "/nonexistent"},
        user=["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"],
    )
    assert out.returncode == 0, out.stderr
    where = Path(out.stdout.strip())
    assert where.parent == tmp / f"ballot-dask-{nobody.pw_uid}"
    assert _cache_files(where)
    assert where.stat().st_uid == nobody.pw_uid
    assert set(_cache_files(PACKAGE)) == before


def test_any_source_change_starts_a_fresh_kernel_cache(tmp_path):
    # numba checks a cached kernel against its own file only; a kernel that inlines code
    # from another module must not outlive a change there: the cache sits under a stamp of
    # every source file
    from ballot_dask.jit import source_stamp

    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("A = 1\n")
    (package / "sub" / "b.py").write_text("B = 2\n")
    (package / "notes.txt").write_text("not a source\n")
    first = source_stamp(str(package))
    assert source_stamp(str(package)) == first  # stable
    (package / "notes.txt").write_text("still not a source\n")
    assert source_stamp(str(package)) == first
    (package / "sub" / "b.py").write_text("B = 3\n")  # same size, another time
    os.utime(package / "sub" / "b.py", ns=(1, 1))
    changed = source_stamp(str(package))
    assert changed != first
    (package / "sub" / "b.py").write_text("B = 33\n")
    os.utime(package / "sub" / "b.py", ns=(1, 1))
    assert source_stamp(str(package)) not in (first, changed)
    # the installed package's kernels go under its own stamp
    out = _run({"DASK_BALLOT__KERNEL_CACHE": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    stamped = tmp_path / "cache" / f"src-{source_stamp()}"
    assert _cache_files(stamped), "nothing was cached under the sources' stamp"


def test_read_only_is_a_view_of_the_same_rows_that_cannot_be_written():
    from ballot_dask.jit import read_only

    a = np.arange(6.0).reshape(2, 3)
    view = read_only(a)
    assert np.shares_memory(view, a) and view.shape == a.shape
    assert not view.flags.writeable and a.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        view[0, 0] = 1.0
    assert read_only(view) is view  # already read-only: as is
    lst = [1.0, 2.0]
    assert read_only(lst) is lst  # not an array: as is


def test_writable_and_read_only_rows_share_one_compiled_kernel():
    # a Dask worker's chunks are read-only, an in-memory fit's rows are not: both must run
    # one compiled kernel (numba compiles a read-only array as another type)
    from ballot_dask import costs, entropic_pass, exact_pass, plan_kernels
    from ballot_dask.estimator import BalancedKMeans

    rng = np.random.default_rng(0)
    X = rng.standard_normal((3000, 3)) + 4.0 * rng.integers(0, 4, (3000, 1))
    frozen = X.copy()
    frozen.flags.writeable = False
    fits = []
    for data in (X, frozen):
        for method in ("exact", "sinkhorn"):
            km = BalancedKMeans(4, method=method, random_state=0, max_iter=4).fit(data)
            fits.append((km.labels_, km.cluster_centers_))
    for (la, ca), (lb, cb) in zip(fits[:2], fits[2:], strict=True):
        np.testing.assert_array_equal(la, lb)
        np.testing.assert_array_equal(ca, cb)
    kernels = {
        "costs._costs": costs._costs,
        "exact_pass._exact_pass": exact_pass._exact_pass,
        "entropic_pass._entropic": entropic_pass._entropic,
        "plan_kernels._rounded": plan_kernels._rounded,
    }
    for name, kernel in kernels.items():
        rows = [sig[0] for sig in kernel.signatures if sig[0].dtype == numba.float64]
        assert rows, f"{name} never ran on float64 rows"
        assert not any(t.mutable for t in rows), f"{name}: {rows}"


def test_parallel_kernels_parallelise_their_prange_loops_alone_on_every_signature(monkeypatch):
    # numba empties a dict of parallel options on the first compile: a second signature
    # must still get prange alone, not numba's whole parallel=True
    from ballot_dask import costs, jit
    from ballot_dask.jit import njit

    # compiled here, not loaded from the kernel cache of a run before: only a compile
    # leaves the parfor diagnostics read below
    monkeypatch.setattr(jit, "_CACHE", None)

    @njit(parallel=True)
    def total(x):  # pragma: no cover - compiled
        out = np.zeros(x.shape[0])  # an allocation: a parallel loop under numba's default
        s = 0.0
        for i in numba.prange(x.shape[0]):
            out[i] = 2.0 * x[i]
            s += out[i]
        return s

    assert total(np.arange(4.0)) == 12.0
    assert total(np.arange(4, dtype=np.float32)) == 12.0
    for kernel in (total, costs._costs):
        options = kernel.targetoptions["parallel"]._get_values()
        assert options.pop("prange") and options.pop("enabled")
        assert not any(options.values()), options
    for sig in total.signatures:
        diagnostics = total.overloads[sig].metadata["parfor_diagnostics"]
        assert len(diagnostics.initial_parfors) == 1, sig  # the prange loop, not np.zeros
