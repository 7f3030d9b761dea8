"""``.. ballot-settings::``: the table of the ``ballot.*`` Dask settings.

Keys and defaults come from ``ballot_dask.config.DEFAULTS``, their meaning from the module's
docstring (a definition list of ````ballot.key```` terms; ````ballot.group.*```` describes every
key of a group).  A key without a description is a build warning.
"""

from __future__ import annotations

import re
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

_TERM = re.compile(r"^``(ballot\.[A-Za-z0-9_.*-]+)``(?:\s*/.*)?\s*$")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys: ``{"ballot": {"cluster": {"n-workers": None}}}`` ->
    ``{"ballot.cluster.n-workers": None}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def descriptions(doc: str) -> dict[str, str]:
    """The definition list of the config module's docstring: term -> text."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in doc.splitlines():
        match = _TERM.match(line)
        if match:
            current = found.setdefault(match.group(1), [])
        elif current is not None and line.startswith("    "):
            current.append(line.strip())
        elif line.strip():
            current = None
    return {term: " ".join(text) for term, text in found.items()}


def env_var(key: str) -> str:
    """The environment variable that sets ``key`` (Dask: ``__`` nests, ``_`` is ``-``)."""
    return "DASK_" + key.upper().replace(".", "__").replace("-", "_")


def literal(value: Any) -> str:
    """A default as written in YAML."""
    if value is None:
        return "``null``"
    if isinstance(value, bool):
        return f"``{str(value).lower()}``"
    if isinstance(value, str):
        return f'``"{value}"``'
    return f"``{value!r}``"


def table_lines(defaults: dict[str, Any], doc: str) -> tuple[list[str], list[str]]:
    """The rows of the list-table and the keys without a description."""
    texts = descriptions(doc)
    groups = {term[:-1]: text for term, text in texts.items() if term.endswith(".*")}
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 38 12 50",
        "   :class: settings-table",
        "",
        "   * - key and environment variable",
        "     - default",
        "     - meaning",
    ]
    missing = []
    for key, value in flatten(defaults).items():
        text = texts.get(key)
        if text is None:
            group = next((g for g in groups if key.startswith(g)), None)
            if group is None:
                missing.append(key)
                text = ""
            else:
                text = f"See ``{group}*`` below the table."
        lines += [
            f"   * - ``{key}``",
            "",
            f"       ``{env_var(key)}``",
            f"     - {literal(value)}",
            f"     - {text}",
        ]
    lines.append("")
    for group, text in groups.items():
        lines += [f"``{group}*``", f"   {text}", ""]
    return lines, missing


class SettingsTable(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        from ballot_dask import config

        self.env.note_dependency(config.__file__)
        self.env.note_dependency(__file__)
        lines, missing = table_lines(config.DEFAULTS, config.__doc__ or "")
        for key in missing:
            logger.warning(
                "setting %s has no description in the docstring of ballot_dask/config.py",
                key,
                location=self.get_location(),
            )
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source="ballot_dask/config.py"), 0, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("ballot-settings", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
