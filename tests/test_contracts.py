"""Every registered strategy against every registered network type, and every registered task.

Each pairing either runs 2 generations and resumes bit-identically (best/ included), or
is refused before anything is written with exit code 2. No pairing may exit 1 or raise.
The lists come from the registries, so a new strategy, network or task is covered (or
fails here) without editing this file; only its small test settings live below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from neuroevo.cli import main
from neuroevo.config import check_pairing, validate_config
from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.nn import NETWORKS
from neuroevo.runtime import TIMING_FIELDS
from neuroevo.strategies import STRATEGIES
from neuroevo.tasks import TASKS

SPHERE = "def sphere(x):\n    return (x * x).sum(dim=1)\n"

# small settings per strategy so that 2 generations are quick (keys of the strategy's Params)
STRATEGY_KEYS: dict[str, dict[str, Any]] = {
    "ga": {"population_size": 12, "truncation": 4},
    "seed_ga": {"population_size": 12, "truncation": 4},
    "ns_ga": {"population_size": 12, "truncation": 4},
    "nsr_ga": {"population_size": 12, "truncation": 4},
    "ns_es": {"population_size": 12},
    "nsr_es": {"population_size": 12},
    "novelty": {"population_size": 12, "truncation": 4},  # base = "ga" by default
    "neat": {"population_size": 12},
}

# small settings per task (keys of the task's Params)
TASK_KEYS: dict[str, dict[str, Any]] = {
    "xor": {},
    "parity": {"bits": 3},
    "sine": {},
    "regression": {},
    "iris": {},
    "breast_cancer": {},
    "digits": {},
    "maze": {"steps": 20},
    "control": {"env": "CartPole-v1", "episodes": 2, "eval_episodes": 2},
    "gym": {"env": "CartPole-v1", "episodes": 2, "eval_episodes": 2},
    "function": {"maximize": False},
}


def _task_for(strategy: str, network: str, tmp: Path) -> dict[str, Any]:
    """The tiny task a pairing runs on: the maze where descriptors are needed, a function for vectors."""
    if NETWORKS.get(network).needs >= {Capability.PARAMETERS}:
        return _function_task(tmp)
    if Capability.DESCRIPTORS in STRATEGIES.get(strategy).needs:
        return {"name": "maze", **TASK_KEYS["maze"]}
    return {"name": "xor"}


def _function_task(tmp: Path) -> dict[str, Any]:
    source = tmp / "sphere.py"
    source.write_text(SPHERE)
    return {"name": "function", "function": f"{source}:sphere", "dimension": 5, **TASK_KEYS["function"]}


def _config(strategy: str, network: str, task: dict[str, Any], generations: int) -> dict[str, Any]:
    net: dict[str, Any] = {"type": network}
    if network in ("mlp", "eggroll_mlp"):
        net["hidden"] = [4]
    if network == "module":
        net["module"] = f"{Path(__file__).parent / 'tiny_modules.py'}:mlp"
    return {
        "run": {"generations": generations, "checkpoint_every": 1, "progress": False},
        "task": task,
        "network": net,
        "strategy": {"name": strategy, **STRATEGY_KEYS.get(strategy, {"population_size": 12})},
    }


def _run(data: dict[str, Any], out: Path, tmp: Path, capsys) -> tuple[int, str]:
    config = tmp / f"{out.name}.toml"
    config.write_text(tomli_w.dumps(data))
    code = main(["run", str(config), "--out", str(out), "--quiet"])
    return code, capsys.readouterr().err


def _deterministic(run: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


def _best_files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((run / "best").iterdir())}


PAIRS = [(s, n) for s in STRATEGIES.names() for n in NETWORKS.names()]


@pytest.mark.parametrize("strategy, network", PAIRS)
def test_every_strategy_with_every_network(strategy: str, network: str, tmp_path: Path, capsys) -> None:
    task = _task_for(strategy, network, tmp_path)
    full = tmp_path / "full"
    code, err = _run(_config(strategy, network, task, 2), full, tmp_path, capsys)
    if code == 2:  # refused: before anything was written, naming both sides
        assert not full.exists(), err
        assert err.startswith("error: ") and err.count("\n") == 1, err
        with pytest.raises(ConfigError):
            validate_config(_config(strategy, network, task, 2))
        return
    assert code == 0, err
    half = tmp_path / "half"
    assert _run(_config(strategy, network, task, 1), half, tmp_path, capsys)[0] == 0
    assert main(["resume", str(half), "--generations", "2", "--quiet"]) == 0, capsys.readouterr().err
    assert _deterministic(half) == _deterministic(full)
    assert _best_files(half) == _best_files(full)


def test_the_pairing_error_names_both_sides_and_the_partners() -> None:
    data = _config("openes", "neat", {"name": "xor"}, 2)
    with pytest.raises(ConfigError) as info:
        validate_config(data)
    message = str(info.value)
    assert message.startswith(
        "network.type = 'neat': strategy 'openes' needs a flat-vector network; allowed: "
    )
    assert "mlp" in message and "vector" in message and "eggroll_mlp" in message


def test_a_strategy_that_needs_descriptors_is_refused_on_a_task_without_them() -> None:
    with pytest.raises(
        ConfigError, match=r"task.name = 'xor': strategy 'ns_ga' needs behaviour descriptors.*maze"
    ):
        validate_config(_config("ns_ga", "mlp", {"name": "xor"}, 2))


@pytest.mark.parametrize("task", TASKS.names())
def test_every_task_runs_with_a_default_strategy(task: str, tmp_path: Path, capsys) -> None:
    assert task in TASK_KEYS, f"add small test settings for the new task {task!r} to TASK_KEYS"
    cls = TASKS.get(task)
    if Capability.PARAMETERS in cls.provides:
        spec, network, strategy = _function_task(tmp_path), "vector", "cmaes"
    else:
        spec, network = {"name": task, **TASK_KEYS[task]}, "mlp"
        strategy = "ns_ga" if Capability.DESCRIPTORS in cls.provides else "ga"
    data = _config(strategy, network, spec, 2)
    check_pairing(validate_config(data))
    full, half = tmp_path / "full", tmp_path / "half"
    assert _run(data, full, tmp_path, capsys)[0] == 0
    assert _run(_config(strategy, network, spec, 1), half, tmp_path, capsys)[0] == 0
    assert main(["resume", str(half), "--generations", "2", "--quiet"]) == 0
    assert _deterministic(half) == _deterministic(full)
    assert _best_files(half) == _best_files(full)


def test_design_doc_holds_the_generated_capability_tables() -> None:
    from neuroevo.config import capability_tables

    text = (Path(__file__).resolve().parents[1] / "docs" / "design.md").read_text()
    start = text.index("-->\n", text.index("<!-- capability tables")) + 4
    end = text.index("<!-- end of capability tables -->")
    assert text[start:end] == capability_tables(), "regenerate with neuroevo.config.capability_tables()"


def test_layers_import_downwards_only() -> None:
    """runtime imports nothing from config or cli; lower layers nothing from higher ones; strategies
    and tasks not each other."""
    import ast

    order = ["core", "nn", "strategies", "tasks", "runtime", "config", "cli"]
    src = Path(__file__).resolve().parents[1] / "src" / "neuroevo"
    for path in src.rglob("*.py"):
        parts = path.relative_to(src).parts
        layer = parts[0].removesuffix(".py")
        if layer not in order:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                if name.startswith("neuroevo."):
                    target = name.split(".")[1]
                    if target in order and layer != target:
                        higher = order.index(target) > order.index(layer)
                        allowed = {layer, target} == {"config", "cli"}
                        assert not higher or allowed, f"{path.relative_to(src)} imports {name}"
                        siblings = {layer, target} == {"strategies", "tasks"}  # only the runtime joins them
                        assert not siblings, f"{path.relative_to(src)} imports {name}"
