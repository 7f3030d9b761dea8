"""Sphinx configuration of the ballot-dask documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``pip install -e
".[docs]"`` first).  Pages that follow the code are generated at build time by the extensions in
``_ext/``: the API listing from ``ballot_dask.__all__``, the ``ballot.*`` settings table from
``ballot_dask.config``, the benchmark tables and plots from ``benchmarks/results/*.json`` and the
paper gallery from ``examples/paper/README.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "_ext"))

import ballot_dask  # noqa: E402

project = "ballot-dask"
author = "the ballot-dask developers"
copyright = "the ballot-dask developers"
release = ballot_dask.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinx_click",
    "sphinx_copybutton",
    "myst_parser",
    # this project's extensions (docs/_ext)
    "api_listing",
    "settings_table",
    "bench_results",
    "paper_gallery",
    "docstring_check",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "_generated", "_templates", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# Every reference must resolve: a broken :class:/:func:/:doc:/:ref: is a warning, and CI builds
# with -W.  The build has no network (no intersphinx), so names of other packages are written
# as text; only references into ballot_dask are checked.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(numpy|np|dask|da|distributed|sklearn|scipy|ot|zarr|click|pathlib)(\..*)?"),
    (r"py:.*", r"(int|float|bool|str|dict|list|tuple|callable|None|object)"),
    # fitted attributes (``labels_``) are described in their class's Attributes section, which
    # numpydoc renders without link targets: ``:attr:`labels_``` shows as text
    (r"py:attr", r"(.*\.)?[a-z][a-z0-9_]*_"),
]

# -- API reference -------------------------------------------------------------------------
autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # types are in the numpydoc sections, as in scikit-learn
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True
numpydoc_xref_param_type = False

# -- Doctests of the guide pages (``sphinx-build -b doctest``) ------------------------------
# only the ``.. doctest::`` blocks of the pages; the docstrings' examples are run by pytest
# (``--doctest-modules``) in their module's namespace
doctest_test_doctest_blocks = ""
doctest_global_setup = """
import numpy as np
"""
import doctest as _doctest  # noqa: E402

doctest_default_flags = _doctest.ELLIPSIS | _doctest.NORMALIZE_WHITESPACE

# -- MyST (the changelog and the paper gallery are Markdown) -------------------------------
# html_image: the <img> tags of the paper README become images copied into the site
myst_enable_extensions = ["colon_fence", "dollarmath", "html_image"]
myst_heading_anchors = 3

# -- HTML ----------------------------------------------------------------------------------
html_theme = "pydata_sphinx_theme"
html_title = f"ballot-dask {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_show_sourcelink = False
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
    "secondary_sidebar_items": ["page-toc"],
}
# top-level pages without sub-pages: no empty navigation column
_SINGLE_PAGES = (
    "index",
    "install",
    "quickstart",
    "paper",
    "benchmarks",
    "development",
    "changelog",
)
html_sidebars = {page: [] for page in _SINGLE_PAGES}

# -- this project's extensions -------------------------------------------------------------
ballot_repository_root = str(ROOT)
ballot_benchmark_results = str(ROOT / "benchmarks" / "results")
ballot_paper_readme = str(ROOT / "examples" / "paper" / "README.md")
# public docstrings known to lack a description (each entry: "object: what is missing");
# the build fails on any other gap, and on an entry here that has been fixed
ballot_docstring_gaps = str(DOCS / "docstring_gaps.txt")
