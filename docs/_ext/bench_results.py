"""``.. benchmark-results::``: tables and plots of ``benchmarks/results/*.json``, at build time.

Every result file (``*.small.json`` smoke runs excepted) is read when the page is built, so
rerunning a benchmark and rebuilding refreshes the page.  Files of one benchmark (the
``benchmark`` field: ``bench_scaling.json`` and ``bench_scaling_1e8.json``) are shown together.
The benchmarks this project has get a table and a plot of their own; a new one gets a generic
table of its rows and its headline figures, without editing this file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import nested_parse_with_titles

Result = dict[str, Any]

# -- formatting ------------------------------------------------------------------------------


def num(value: Any, digits: int = 4) -> str:
    """A number for a table cell: ``4.86``, ``1.2e-04``, ``n/a`` for None/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        return "0" if value == 0 else f"{value:.{digits}g}"
    return str(value)


def seconds(value: Any) -> str:
    text = num(value, 3)
    return text if text == "n/a" else f"{text} s"


def sizes(stats: Any) -> str:
    if not isinstance(stats, dict):
        return "n/a"
    return f"{num(stats.get('min'))}..{num(stats.get('max'))}"


def certificate(cert: Any) -> str:
    if not isinstance(cert, dict):
        return "none"
    return "optimal" if cert.get("optimal") else f"not proved ({cert.get('violations')} violations)"


def passes(value: Any) -> str:
    if not isinstance(value, dict):
        return "n/a"
    return " / ".join(num(value.get(key), 3) for key in ("x", "cost", "rounds") if key in value)


def list_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [".. list-table::", "   :header-rows: 1", "   :class: bench-table", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0] or ' '}")
        lines += [f"     - {cell or ' '}" for cell in row[1:]]
    return [*lines, ""]


def image(path: str, alt: str) -> list[str]:
    return [f".. image:: {path}", f"   :alt: {alt}", "   :width: 640px", ""]


# -- plots -----------------------------------------------------------------------------------


def _figure(width: float = 6.4, height: float = 3.6) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), layout="constrained")


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bar_plot(path: Path, labels: list[str], values: list[float], xlabel: str, log: bool) -> None:
    fig, ax = _figure(6.4, 0.5 + 0.45 * len(labels))
    ax.barh(labels[::-1], values[::-1], color="tab:blue")
    for y, v in enumerate(values[::-1]):
        ax.annotate(f" {num(v, 3)}", (v, y), va="center", fontsize=9)
    if log:
        ax.set_xscale("log")
    ax.set_xlim(right=max(values) * (8 if log else 1.25))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


# -- one renderer per benchmark --------------------------------------------------------------


def render_assign(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        rows = result["rows"]
        reference = next((r for r in rows if r["method"].startswith("POT ot.emd")), None)
        table = []
        for r in rows:
            rel = "n/a"
            if reference is not None:
                rel = num((r["objective"] - reference["objective"]) / reference["objective"], 2)
            table.append(
                [
                    r["method"],
                    seconds(r["time_solve"]),
                    seconds(r.get("time_total")),
                    num(r["objective"], 10),
                    rel,
                    sizes(r.get("size_stats")),
                    certificate(r.get("certificate")),
                ]
            )
        lines += list_table(
            ["method", "solve", "with costs", "objective", "vs ot.emd", "sizes", "certificate"],
            table,
        )
        bar_plot(
            out / "bench_assign.png",
            [r["method"] for r in rows],
            [r["time_solve"] for r in rows],
            "seconds for one assignment step (log scale)",
            log=True,
        )
        lines += image(f"{web}/bench_assign.png", "time of one assignment step per method")
    return lines


def render_iteration(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        rows = result["rows"]
        lines += list_table(
            ["method", "fit", "iterations", "s/iter", "s/iter warm", "objective", "sizes"],
            [
                [
                    r["method"],
                    seconds(r["time_fit"]),
                    num(r["n_iter"]),
                    seconds(r["time_per_iter"]),
                    seconds(r.get("time_per_iter_warm")),
                    num(r["objective"], 10),
                    sizes(r.get("size_stats")),
                ]
                for r in rows
            ],
        )
        bar_plot(
            out / "bench_iteration.png",
            [r["method"] for r in rows],
            [r["time_per_iter"] for r in rows],
            "seconds per Lloyd iteration",
            log=False,
        )
        lines += image(f"{web}/bench_iteration.png", "seconds per Lloyd iteration per method")
    return lines


def render_kmc(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        rows = result["rows"]
        peer = next((r for r in rows if r["method"] == "k-means-constrained"), rows[0])
        lines += list_table(
            ["method", "fit", "iterations", "objective", "vs k-means-constrained", "sizes"],
            [
                [
                    r["method"],
                    seconds(r["time_fit"]),
                    num(r["n_iter"]),
                    num(r["objective"], 8),
                    f"{100 * (r['objective'] / peer['objective'] - 1):+.2f} %",
                    sizes(r.get("size_stats")),
                ]
                for r in rows
            ],
        )
        bar_plot(
            out / "bench_kmc.png",
            [r["method"] for r in rows],
            [r["time_fit"] for r in rows],
            "seconds for a full fit (log scale)",
            log=True,
        )
        lines += image(f"{web}/bench_kmc.png", "time of a full fit per method")
    return lines


def render_ballot010(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        exact = [r for r in result["rows"] if r.get("section") == "exact"]
        entropic = [r for r in result["rows"] if r.get("section") == "entropic"]
        lines += ["**Exact step** (``ballot`` 0.1.0: the Hungarian method, n x n matrix)", ""]
        lines += list_table(
            [
                "n",
                "ballot 0.1.0",
                "ballot_dask",
                "speed-up",
                "objective difference",
                "n x n matrix",
            ],
            [
                [
                    num(r["n"]),
                    seconds(r.get("ballot_time")) if r.get("ballot_time") else "not run",
                    seconds(r["ours_time"]),
                    f"{r['speedup']:.0f}x" if r.get("speedup") else "n/a",
                    num(r.get("objective_rel_diff")),
                    f"{r['ballot_expanded_bytes'] / 1e9:g} GB",
                ]
                for r in exact
            ],
        )
        lines += ["**Entropic step**", ""]
        lines += list_table(
            ["method", "reg", "time", "mass lost", "marginal error", "size spread", "objective"],
            [
                [
                    r["method"],
                    num(r["reg"]),
                    seconds(r["time"]),
                    num(r.get("mass_lost"), 3) if "mass_lost" in r else " ",
                    num(r.get("marginal_error"), 3) if "marginal_error" in r else " ",
                    num((r.get("size_stats") or {}).get("spread")),
                    f"{100 * r['argmax_objective_rel']:+.2f} %",
                ]
                for r in entropic
            ],
        )
        fig, ax = _figure()
        ran = [r for r in exact if r.get("ballot_time")]
        ax.loglog(
            [r["n"] for r in ran], [r["ballot_time"] for r in ran], "o-", label="ballot 0.1.0"
        )
        ax.loglog(
            [r["n"] for r in exact], [r["ours_time"] for r in exact], "s-", label="ballot_dask"
        )
        ax.set_xlabel("n (points)")
        ax.set_ylabel("seconds, one exact step")
        ax.legend()
        ax.grid(alpha=0.3, which="both")
        _save(fig, out / "bench_ballot010.png")
        lines += image(f"{web}/bench_ballot010.png", "exact step time against n, both packages")
    return lines


def render_dask(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        for key, title in (
            ("rows", "Fixed number of iterations (tol = 0)"),
            ("rows_tol", f"Default stopping (tol = {num(result['params'].get('tol'))})"),
        ):
            if not result.get(key):
                continue
            lines += [f"**{title}**", ""]
            lines += list_table(
                [
                    "method",
                    "fit",
                    "iterations",
                    "s/iter",
                    "s/iter warm",
                    "sizes",
                    "passes/warm iter",
                ],
                [
                    [
                        r["method"],
                        seconds(r["time_fit"]),
                        num(r["n_iter"]),
                        seconds(r["time_per_iter"]),
                        seconds(r.get("time_per_iter_warm")),
                        sizes(r.get("size_stats")),
                        passes(r.get("passes_per_iter_warm")),
                    ]
                    for r in result[key]
                ],
            )
        rows = result["rows"]
        bar_plot(
            out / "bench_dask.png",
            [r["method"] for r in rows],
            [r["time_per_iter"] for r in rows],
            "seconds per Lloyd iteration (tol=0)",
            log=False,
        )
        lines += image(f"{web}/bench_dask.png", "seconds per iteration, Dask and in-process fits")
    return lines


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / den if den else math.nan


def render_scaling(results: list[Result], out: Path, web: str) -> list[str]:
    rows = sorted((r for result in results for r in result["rows"]), key=lambda r: r["n"])
    lines = list_table(
        [
            "n",
            "chunks",
            "storage",
            "fit",
            "s/iter",
            "s/iter warm",
            "ns/row/iter warm",
            "passes/warm iter",
            "certificate",
        ],
        [
            [
                f"{r['n']:.0e}".replace("e+0", "e"),
                num(r["chunks"]),
                r["storage"]["mode"],
                seconds(r["time_fit"]),
                seconds(r["time_per_iter"]),
                seconds(r["time_per_iter_warm"]),
                f"{1e9 * r['time_per_iter_warm'] / r['n']:.0f}",
                passes(r.get("passes_per_iter_warm")),
                certificate(r.get("certificate")),
            ]
            for r in rows
        ],
    )
    fig, ax = _figure()
    for mode, marker in (("persisted", "o"), ("streamed", "s")):
        chosen = [r for r in rows if r["storage"]["mode"] == mode]
        if chosen:
            ax.loglog(
                [r["n"] for r in chosen],
                [r["time_per_iter"] for r in chosen],
                marker,
                color="tab:blue",
                label=f"s/iter ({mode})",
            )
            ax.loglog(
                [r["n"] for r in chosen],
                [r["time_per_iter_warm"] for r in chosen],
                marker,
                color="tab:orange",
                label=f"s/iter warm ({mode})",
            )
    ns = [r["n"] for r in rows]
    ax.loglog(ns, [r["time_per_iter"] for r in rows], "-", color="tab:blue", alpha=0.5)
    ax.loglog(ns, [r["time_per_iter_warm"] for r in rows], "-", color="tab:orange", alpha=0.5)
    if len(rows) > 1:
        ref = rows[0]
        ax.loglog(
            ns,
            [ref["time_per_iter"] * n / ref["n"] for n in ns],
            ":",
            color="gray",
            label="slope 1 (linear in n)",
        )
    ax.set_xlabel("n (points)")
    ax.set_ylabel("seconds per Lloyd iteration")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _save(fig, out / "bench_scaling.png")
    lines += image(f"{web}/bench_scaling.png", "seconds per iteration against n, log-log")
    if len(rows) > 1:
        slope = loglog_slope(ns, [r["time_per_iter"] for r in rows])
        warm = loglog_slope(ns, [r["time_per_iter_warm"] for r in rows])
        lines += [
            f"Least-squares log-log slope over all {len(rows)} sizes (computed here from the "
            f"rows above): {slope:.2f} per iteration, {warm:.2f} per warm iteration.",
            "",
        ]
    return lines


def render_generic(results: list[Result], out: Path, web: str) -> list[str]:
    lines: list[str] = []
    for result in results:
        rows = result.get("rows") or []
        columns = [
            c
            for c in (rows[0] if rows else {})
            if all(not isinstance(r.get(c), dict | list) for r in rows)
        ]
        if columns:
            lines += list_table(columns, [[num(r.get(c)) for c in columns] for r in rows])
    return lines


RENDERERS: dict[str, tuple[str, Callable[[list[Result], Path, str], list[str]]]] = {
    "bench_assign": ("One exact assignment step against POT", render_assign),
    "bench_iteration": ("Time per Lloyd iteration against scikit-learn", render_iteration),
    "bench_kmc": ("Full fit against k-means-constrained", render_kmc),
    "bench_ballot010": ("Assignment step against ballot 0.1.0", render_ballot010),
    "bench_dask": ("The Dask engine on a 2-process cluster", render_dask),
    "bench_scaling": ("Time per iteration against n, data in Zarr", render_scaling),
}


def provenance(results: list[Result]) -> list[str]:
    lines = []
    for r in results:
        machine = r.get("machine", {})
        load = machine.get("load_average")
        lines.append(
            f"- ``{r.get('command', '?')}`` at {r.get('timestamp', '?')}, revision "
            f"``{machine.get('git_revision', '?')}``, {machine.get('usable_cores', '?')} cores"
            + (f", load average {load[0]:.2f}" if load else "")
        )
    return [*lines, ""]


def headline(results: list[Result]) -> list[str]:
    lines = []
    for result in results:
        for section in ("headline", "headline_tol"):
            for key, value in (result.get(section) or {}).items():
                if isinstance(value, dict | list):
                    text = (
                        ", ".join(f"{k}: {num(v, 4)}" for k, v in value.items())
                        if isinstance(value, dict)
                        else ", ".join(num(v, 4) for v in value)
                    )
                else:
                    text = num(value, 6)
                lines.append(
                    f"   * - ``{key}``"
                    + (" (default stopping)" if section == "headline_tol" else "")
                )
                lines.append(f"     - {text}")
    if not lines:
        return []
    title = ".. list-table:: Headline figures, as the script printed them"
    return [title, "   :class: bench-headline", "", *lines, ""]


def load(results_dir: Path) -> dict[str, list[Result]]:
    grouped: dict[str, list[Result]] = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.name.endswith(".small.json"):
            continue
        result = json.loads(path.read_text())
        result["_file"] = path.name
        grouped.setdefault(result.get("benchmark", path.stem), []).append(result)
    return grouped


class BenchmarkResults(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        results_dir = Path(self.config.ballot_benchmark_results)
        out = Path(self.env.srcdir) / "_generated" / "bench"
        web = "/_generated/bench"
        grouped = load(results_dir)
        for path in results_dir.glob("*.json"):
            self.env.note_dependency(str(path))
        self.env.note_dependency(__file__)
        lines: list[str] = []
        order = [name for name in RENDERERS if name in grouped] + sorted(
            name for name in grouped if name not in RENDERERS
        )
        for name in order:
            title, renderer = RENDERERS.get(name, (name, render_generic))
            results = grouped[name]
            files = ", ".join(f"``benchmarks/results/{r['_file']}``" for r in results)
            lines += [title, "-" * len(title), "", f"``benchmarks/{name}.py``; data: {files}.", ""]
            lines += provenance(results)
            lines += renderer(results, out, web)
            lines += headline(results)
        container = nodes.container()
        nested_parse_with_titles(self.state, StringList(lines, source=str(results_dir)), container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("ballot_benchmark_results", "", "env")
    app.add_directive("benchmark-results", BenchmarkResults)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
