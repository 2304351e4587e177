"""MkDocs hooks of the neuroevo site.

- The config reference (``reference/config.md``) is generated at build time from the pydantic
  ``Params`` models of every registered strategy, task and network type (and ``[run]``), through
  ``neuroevo.config.describe_params``, the function ``neuroevo list NAME`` uses: it cannot drift.
- ``pbt.md`` and ``scaling.md`` (written with PBT and the Ray executor) join the navigation
  when their files exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MARKER = "<!-- neuroevo:config-reference -->"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or " "


def _table(model: Any) -> str:
    from neuroevo.config import describe_params

    rows = ["| key | type | default | bounds | description |", "|---|---|---|---|---|"]
    for row in describe_params(model):
        cells = (
            f"`{row.key}`",
            f"`{_cell(row.type)}`",
            f"`{_cell(row.default)}`",
            row.bounds,
            row.description,
        )
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(rows)


def _summary(obj: Any) -> str:
    doc = (getattr(obj, "__doc__", "") or "").strip().splitlines()
    return doc[0] if doc else ""


def config_reference() -> str:
    """Markdown: one section per table of a config, one table of keys per registered entry."""
    from neuroevo.config import RunParams
    from neuroevo.nn import NETWORKS
    from neuroevo.strategies import STRATEGIES
    from neuroevo.tasks import TASKS

    parts = ["## `[run]`", "", _table(RunParams), ""]
    for title, key, registry in (("[task]", "name", TASKS), ("[network]", "type", NETWORKS)):
        parts += [f"## `{title}`", ""]
        for name, item in registry.items():
            summary = item.description if registry is NETWORKS else _summary(item)
            aliases = registry.aliases_of(name)
            also = f" Also named {', '.join(f'`{a}`' for a in aliases)}." if aliases else ""
            parts += [f'### `{key} = "{name}"`', "", f"{summary}{also}", "", _table(item.Params), ""]
    parts += ["## `[strategy]`", ""]
    for name, cls in STRATEGIES.items():
        aliases = STRATEGIES.aliases_of(name)
        also = f" Also named {', '.join(f'`{a}`' for a in aliases)}." if aliases else ""
        parts += [f'### `name = "{name}"`', "", f"{_summary(cls)}{also}", "", _table(cls.Params), ""]
    return "\n".join(parts)


#: pages other parts of the project write (file, title, the nav entry they follow); each joins the
#: navigation when its file exists, so the site builds (strict) with or without them
OPTIONAL_PAGES = (
    ("pbt.md", "Population based training", "How-to"),
    ("scaling.md", "Scaling on Ray", "Exports"),
)


def on_config(config: Any) -> Any:
    nav = config["nav"]
    for name, title, after in OPTIONAL_PAGES:
        if not (Path(config["docs_dir"]) / name).is_file() or name in str(nav):
            continue
        where = next((i for i, entry in enumerate(nav) if after in entry), len(nav) - 1)
        nav.insert(where + 1, {title: name})
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, config_reference())
    return markdown
