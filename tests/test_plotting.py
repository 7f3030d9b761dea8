"""The clustering plot: a PNG written atomically, matplotlib loaded lazily."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from ballot_dask.plotting import plot_clustering

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _clustering(n: int, d: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = 4.0 * rng.standard_normal((k, d))
    labels = np.arange(n) % k
    X = centers[labels] + rng.standard_normal((n, d))
    return X, labels, centers


def _assert_png(path, directory):
    data = path.read_bytes()
    assert len(data) > 1000
    assert data.startswith(PNG_MAGIC)
    assert sorted(p.name for p in directory.iterdir()) == [path.name]  # no temporary left


@pytest.mark.parametrize(
    ("d", "k", "with_potentials"),
    [(2, 4, False), (2, 4, True), (1, 3, False), (3, 12, False), (3, 5, True)],
)
def test_writes_png(tmp_path, d, k, with_potentials):
    X, labels, centers = _clustering(600, d, k)
    potentials = np.linspace(0.0, 2.0, k) if with_potentials else None
    out = tmp_path / "plot.png"
    result = plot_clustering(X, labels, centers, str(out), potentials=potentials, title="t")
    assert result == out
    _assert_png(out, tmp_path)


def test_subsample_and_overwrite(tmp_path):
    X, labels, centers = _clustering(5_000, 2, 6)
    out = tmp_path / "plot.png"
    out.write_bytes(b"old")
    plot_clustering(X, labels, centers, out, max_points=500, seed=3)
    _assert_png(out, tmp_path)


def test_power_diagram_shading_changes_the_image(tmp_path):
    X, labels, centers = _clustering(400, 2, 3)
    plain = plot_clustering(X, labels, centers, tmp_path / "a.png").read_bytes()
    shaded = plot_clustering(
        X, labels, centers, tmp_path / "b.png", potentials=np.zeros(3)
    ).read_bytes()
    assert plain != shaded


def test_failure_leaves_no_temporary(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    X, labels, centers = _clustering(50, 2, 2)
    with pytest.raises(RuntimeError, match="disk full"):
        plot_clustering(X, labels, centers, tmp_path / "plot.png")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_raises(tmp_path):
    X, labels, centers = _clustering(50, 2, 3)
    out = tmp_path / "plot.png"
    with pytest.raises(ValueError, match="labels must have shape"):
        plot_clustering(X, labels[:-1], centers, out)
    with pytest.raises(ValueError, match="centers must have shape"):
        plot_clustering(X, labels, centers[:, :1], out)
    with pytest.raises(ValueError, match="potentials must have shape"):
        plot_clustering(X, labels, centers, out, potentials=np.zeros(2))
    with pytest.raises(ValueError, match="X must have shape"):
        plot_clustering(X[:, 0], labels, centers, out)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        plot_clustering(X, labels, centers[:2], out)
    assert list(tmp_path.iterdir()) == []


def test_import_does_not_load_matplotlib():
    code = "import ballot_dask, sys; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    code = (
        "import sys, ballot_dask.plotting, ballot_dask.datasets; "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
