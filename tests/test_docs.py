"""The documentation site's generated parts: the config reference covers every key of every entry."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from neuroevo.config import RunParams
from neuroevo.nn import NETWORKS
from neuroevo.strategies import STRATEGIES
from neuroevo.tasks import TASKS

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("neuroevo_docs", ROOT / "docs/_hooks/neuroevo_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_has_every_entry_and_key():
    text = _hooks().config_reference()
    sections = re.split(r"^### ", text, flags=re.M)
    by_name = {s.split("\n", 1)[0]: s for s in sections[1:]}
    for registry, key in ((STRATEGIES, "name"), (TASKS, "name"), (NETWORKS, "type")):
        for name, item in registry.items():
            section = by_name[f'`{key} = "{name}"`']
            for field, info in item.Params.model_fields.items():
                row = next(line for line in section.splitlines() if line.startswith(f"| `{field}` |"))
                assert (info.description or "").replace("|", "\\|") in row, (name, field)
    run = sections[0]
    for field in RunParams.model_fields:
        assert f"| `{field}` |" in run, field
    assert "| `tensorboard` | `bool` | `False` |" in run


def test_every_page_is_in_the_navigation_and_every_example_is_documented():
    nav = (ROOT / "mkdocs.yml").read_text().split("\nnav:\n", 1)[1]
    listed = set(re.findall(r":\s*([\w/-]+\.md)\s*$", nav, flags=re.M))
    pages = {
        str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md") if "_hooks" not in p.parts
    }
    pages -= {name for name, _, _ in _hooks().OPTIONAL_PAGES}  # join the navigation through the hook
    assert pages <= listed, pages - listed
    docs = "\n".join((ROOT / "docs" / p).read_text() for p in pages)
    docs += "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))  # optional pages too
    configs = "\n".join(p.read_text() for p in (ROOT / "examples").glob("*.toml"))
    for example in sorted((ROOT / "examples").iterdir()):
        if example.suffix == ".py" and example.name in configs:
            continue  # a module a config example uses (a fitness function, a network)
        if example.suffix in (".toml", ".py"):
            assert f"examples/{example.name}" in docs, f"{example.name} is in no page of docs/"
