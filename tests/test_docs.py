"""The documentation's build-time extensions (docs/_ext), and a build that must fail.

Needs the ``docs`` extra (Sphinx, numpydoc); skipped without it.  CI runs this file in its
documentation step.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")

DOCS = Path(__file__).resolve().parents[1] / "docs"
RESULTS = DOCS.parent / "benchmarks" / "results"
sys.path.insert(0, str(DOCS / "_ext"))

import api_listing  # noqa: E402
import bench_results  # noqa: E402
import docstring_check  # noqa: E402
import paper_gallery  # noqa: E402
import settings_table  # noqa: E402

import ballot_dask  # noqa: E402
from ballot_dask import config  # noqa: E402

# -- the API listing -------------------------------------------------------------------------


def test_api_page_lists_every_public_name():
    text = api_listing.render()
    listed = {line.strip() for line in text.splitlines() if line.startswith("   ")}
    public = {name for name in ballot_dask.__all__ if not name.startswith("__")}
    assert public <= listed
    assert "LloydState" in listed


# -- the settings table ----------------------------------------------------------------------


def test_settings_table_has_every_key_with_its_default_and_description():
    lines, missing = settings_table.table_lines(config.DEFAULTS, config.__doc__ or "")
    text = "\n".join(lines)
    assert missing == []
    for key in settings_table.flatten(config.DEFAULTS):
        assert f"``{key}``" in text
    assert '``"512 MiB"``' in text  # ballot.band-memory's default, as YAML


def test_settings_table_reports_a_key_without_description():
    defaults = {"ballot": {"persist": "auto", "brand-new": 3}}
    _, missing = settings_table.table_lines(defaults, config.__doc__ or "")
    assert missing == ["ballot.brand-new"]


@pytest.mark.parametrize(
    ("key", "variable"),
    [
        ("ballot.persist", "DASK_BALLOT__PERSIST"),
        ("ballot.cluster.n-workers", "DASK_BALLOT__CLUSTER__N_WORKERS"),
    ],
)
def test_settings_table_environment_variables_are_the_ones_dask_reads(key, variable):
    import dask.config

    assert settings_table.env_var(key) == variable
    with dask.config.set(dask.config.collect_env({variable: "7"})):
        assert dask.config.get(key) == 7


# -- the docstring check ---------------------------------------------------------------------


def _described(x: int, *, y: int = 1) -> int:
    """Summary.

    Parameters
    ----------
    x : int
        The x.
    y : int, default=1
        The y.

    Returns
    -------
    int
    """
    return x + y


def _undescribed(x: int, *, y: int = 1, z: int = 2) -> int:
    """Summary.

    Parameters
    ----------
    x : int
    y : int, default=1
        The y.
    """
    return x + y + z


def test_docstring_check_accepts_a_documented_function():
    assert docstring_check.object_gaps("m._described", _described) == []


def test_docstring_check_finds_missing_descriptions_and_sections():
    assert docstring_check.object_gaps("m._undescribed", _undescribed) == [
        "m._undescribed: parameter x has no description",
        "m._undescribed: parameter z is not documented",
        "m._undescribed: no Returns section",
    ]


def test_docstring_check_finds_fitted_attributes_of_the_estimator():
    attributes = docstring_check.fitted_attributes(ballot_dask.BalancedKMeans)
    assert {"cluster_centers_", "labels_", "certificate_", "n_passes_"} <= set(attributes)


def test_known_docstring_gaps_are_current():
    known = docstring_check.read_known(DOCS / "docstring_gaps.txt")
    assert known == set(docstring_check.all_gaps())


# -- the benchmark page ----------------------------------------------------------------------


def test_benchmark_page_renders_every_result_file(tmp_path):
    grouped = bench_results.load(RESULTS)
    assert grouped, "no benchmark results"
    for name, results in grouped.items():
        _, render = bench_results.RENDERERS.get(name, (name, bench_results.render_generic))
        lines = render(results, tmp_path, "/img")
        assert any(line.startswith(".. list-table::") for line in lines), name
    assert (tmp_path / "bench_scaling.png").stat().st_size > 0


def test_benchmark_page_has_a_table_for_an_unknown_benchmark(tmp_path):
    (tmp_path / "bench_new.json").write_text(
        json.dumps({"benchmark": "bench_new", "rows": [{"method": "a", "time": 0.5}]})
    )
    grouped = bench_results.load(tmp_path)
    lines = bench_results.render_generic(grouped["bench_new"], tmp_path, "/img")
    assert "   * - method" in lines and "   * - a" in lines


def test_loglog_slope_of_a_power_law():
    xs = [1e3, 1e4, 1e5]
    assert bench_results.loglog_slope(xs, [x**0.5 for x in xs]) == pytest.approx(0.5)


# -- the paper gallery -----------------------------------------------------------------------


def test_paper_gallery_rewrites_the_readme_links(tmp_path):
    source = tmp_path / "examples" / "paper"
    source.mkdir(parents=True)
    (source / "exp2.py").write_text("print()\n")
    (source / "README.md").write_text(
        '# Paper\n\n![Figure 1](fig1.png)\n\n<img src="fig2.png" width=400>\n\n'
        "[`exp2.py`](exp2.py), [missing](nothing.csv), [site](https://example.org)\n"
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    text = paper_gallery.render(source / "README.md", docs)
    assert "![Figure 1](../examples/paper/fig1.png)" in text
    assert 'src="../examples/paper/fig2.png"' in text
    assert "{download}`exp2.py <../examples/paper/exp2.py>`" in text
    assert "[missing]" not in text and "missing" in text
    assert "[site](https://example.org)" in text


def test_paper_gallery_without_a_readme_says_it_is_to_be_regenerated(tmp_path):
    text = paper_gallery.render(tmp_path / "README.md", tmp_path)
    assert "To be regenerated" in text


# -- the build fails on a broken reference and on an undescribed parameter -------------------


def test_build_fails_on_a_broken_reference_and_an_unknown_docstring_gap(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs, ignore=shutil.ignore_patterns("_build", "_generated"))
    (docs / "broken.rst").write_text(
        ":orphan:\n\nBroken\n======\n\nSee :func:`ballot_dask.no_such_function`.\n"
    )
    (docs / "docstring_gaps.txt").write_text("")  # every known gap becomes unknown
    # the copy reads the results and the paper README of this tree
    overrides = [
        f"-Dballot_benchmark_results={RESULTS}",
        f"-Dballot_paper_readme={DOCS.parent / 'examples' / 'paper' / 'README.md'}",
    ]
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "dummy",
            *overrides,
            str(docs),
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode != 0
    assert "reference target not found: ballot_dask.no_such_function" in build.stderr
    assert "docstring: ballot_dask.balanced_kmeans: parameter X is not documented" in build.stderr
