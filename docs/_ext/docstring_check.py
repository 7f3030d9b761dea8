"""Every public name, parameter and fitted attribute described: checked when the build starts.

For each object of the API reference (see ``api_listing``) the numpydoc docstring must have a
summary line, an entry with a description for every parameter of the signature (and of the
public methods of a class), a Returns section where something is returned, an Attributes entry
with a description for every dataclass field, and, for an estimator, one for every fitted
attribute (found by fitting it to a few points).

Gaps listed in ``ballot_docstring_gaps`` (a text file, one ``object: gap`` a line) are reported
as known; any other gap is a build warning, and so is a listed gap that no longer exists, so
the list only shrinks.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

_PARAMETER_SECTIONS = ("Parameters", "Other Parameters")
_SELF_DESCRIBING_TYPES = {"Ignored"}  # scikit-learn's ``y : Ignored``


def _entries(doc: Any, section: str) -> dict[str, bool]:
    """Names documented in ``section`` -> whether they have a description.

    ``size_min, size_max : int`` documents both names.
    """
    found: dict[str, bool] = {}
    for item in doc[section]:
        described = bool("".join(item.desc).strip()) or item.type in _SELF_DESCRIBING_TYPES
        for name in item.name.split(","):
            found[name.strip().lstrip("*")] = described
    return found


def _signature_gaps(path: str, func: Any, doc: Any, skip_first: bool) -> list[str]:
    gaps = []
    documented: dict[str, bool] = {}
    for section in _PARAMETER_SECTIONS:
        documented.update(_entries(doc, section))
    params = list(inspect.signature(func).parameters.values())
    if skip_first:
        params = params[1:]
    for param in params:
        if param.name not in documented:
            gaps.append(f"{path}: parameter {param.name} is not documented")
        elif not documented[param.name]:
            gaps.append(f"{path}: parameter {param.name} has no description")
    returns = inspect.signature(func).return_annotation
    returns_something = returns not in (None, "None", inspect.Signature.empty)
    if returns_something and not doc["Returns"] and not doc["Yields"]:
        gaps.append(f"{path}: no Returns section")
    return gaps


def _summary_gap(path: str, doc: Any) -> list[str]:
    return [] if "".join(doc["Summary"]).strip() else [f"{path}: no summary line"]


def _attribute_gaps(path: str, doc: Any, names: list[str]) -> list[str]:
    documented = _entries(doc, "Attributes")
    gaps = []
    for name in names:
        if name not in documented:
            gaps.append(f"{path}: attribute {name} is not documented")
        elif not documented[name]:
            gaps.append(f"{path}: attribute {name} has no description")
    return gaps


def fitted_attributes(estimator_class: type) -> list[str]:
    """The public attributes ending in ``_`` that a fit on a few points sets."""
    import numpy as np

    X = np.array([[0.0, 0.0], [0.1, 0.0], [4.0, 0.0], [4.1, 0.0]])
    estimator = estimator_class(n_clusters=2, random_state=0).fit(X)
    return [name for name in vars(estimator) if name.endswith("_") and not name.startswith("_")]


def object_gaps(path: str, obj: Any) -> list[str]:
    """The gaps of one documented object."""
    from numpydoc.docscrape import FunctionDoc, NumpyDocString
    from sklearn.base import BaseEstimator

    if not inspect.isclass(obj):
        doc = FunctionDoc(obj)
        return _summary_gap(path, doc) + _signature_gaps(path, obj, doc, skip_first=False)
    doc = NumpyDocString(inspect.getdoc(obj) or "")
    gaps = _summary_gap(path, doc)
    if dataclasses.is_dataclass(obj):
        gaps += _attribute_gaps(path, doc, [field.name for field in dataclasses.fields(obj)])
    else:
        gaps += _signature_gaps(path, obj.__init__, doc, skip_first=True)
    if issubclass(obj, BaseEstimator):
        gaps += _attribute_gaps(path, doc, fitted_attributes(obj))
    for name, member in vars(obj).items():
        if name.startswith("_") or not inspect.isfunction(member):
            continue
        method_doc = FunctionDoc(member)
        gaps += _summary_gap(f"{path}.{name}", method_doc)
        gaps += _signature_gaps(f"{path}.{name}", member, method_doc, skip_first=True)
    return gaps


def documented_objects() -> list[tuple[str, Any]]:
    """(dotted path, object) of every page of the API reference."""
    from api_listing import EXTRA_MODULES, public_names

    found = []
    for module, only in [("ballot_dask", None)] + [(m, n) for m, n, _, _ in EXTRA_MODULES]:
        mod = importlib.import_module(module)
        found += [(f"{module}.{name}", getattr(mod, name)) for name in public_names(module, only)]
    return found


def all_gaps() -> list[str]:
    gaps: list[str] = []
    for path, obj in documented_objects():
        gaps += object_gaps(path, obj)
    return gaps


def read_known(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line for line in lines if line and not line.startswith("#")}


def check(app: Sphinx) -> None:
    known_file = Path(app.config.ballot_docstring_gaps)
    known = read_known(known_file)
    gaps = all_gaps()
    for gap in gaps:
        if gap not in known:
            logger.warning("docstring: %s", gap)
    for gap in sorted(known - set(gaps)):
        logger.warning("docstring gap fixed, remove it from %s: %s", known_file.name, gap)
    still = len(known & set(gaps))
    if still:
        logger.info("docstring check: %d known gaps left (%s)", still, known_file.name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("ballot_docstring_gaps", "", "env")
    app.connect("builder-inited", check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
