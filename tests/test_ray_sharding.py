"""Sharded evaluation gives the local executor's bits (no Ray needed).

``ShardedInProcess`` evaluates a population as contiguous shards, one after another, with the
same pieces the Ray executor uses (``shard_bounds``, ``take``, ``evaluate_shard``,
``merge_shards``). Every strategy with every network on its tiny task, and the episodic tasks
with observation normalisation, must give the same metrics as one batched call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from neuroevo.config import build, validate_config
from neuroevo.core.errors import ConfigError
from neuroevo.runtime import TIMING_FIELDS, evolve
from neuroevo.runtime.executor import (
    LocalExecutor,
    evaluate_shard,
    merge_shards,
    population_size,
    shard_bounds,
    take,
)
from neuroevo.strategies.openes import OpenES
from test_contracts import PAIRS, TASK_KEYS, _config, _task_for


class ShardedInProcess:
    """The Ray executor's split and merge, run in this process (shards evaluated in turn)."""

    def __init__(self, shards: int):
        self.shards = shards
        self.recipe: tuple[Any, Any] = (None, None)
        self.rebuilt = 0

    def note_recipe(self, population: Any, recipe: Any) -> None:
        self.recipe = (population, recipe)

    def evaluate(self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0):
        bounds = shard_bounds(population_size(population), self.shards)
        noted, recipe = self.recipe
        if noted is population and recipe is not None:  # what a Ray worker does with keys
            shards = [recipe.rows(a, b) for a, b in bounds]
            self.rebuilt += 1
        else:
            shards = [take(population, a, b) for a, b in bounds]
        parts = [evaluate_shard(task, phenotype, shard, generation, stream) for shard in shards]
        return merge_shards(task, parts, generation, stream)

    def close(self) -> None:
        return None


def _metrics(data: dict[str, Any], executor: Any, generations: int) -> list[dict[str, Any]]:
    built = build(validate_config(data))
    result = evolve(built.strategy, built.phenotype, built.task, generations=generations, executor=executor)
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in result.metrics]


def test_shard_bounds_cover_the_population_in_order() -> None:
    assert shard_bounds(10, 3, multiple=1) == [(0, 4), (4, 7), (7, 10)]
    assert shard_bounds(2, 5, multiple=1) == [(0, 1), (1, 2)]
    assert shard_bounds(300, 3) == [(0, 128), (128, 256), (256, 300)]
    assert shard_bounds(100, 4) == [(0, 64), (64, 100)]
    assert shard_bounds(7, 2) == [(0, 7)]


@pytest.mark.parametrize("strategy, network", PAIRS)
def test_sharded_evaluation_is_bit_identical(strategy: str, network: str, tmp_path: Path) -> None:
    data = _config(strategy, network, _task_for(strategy, network, tmp_path), 3)
    data["strategy"]["population_size"] = 160  # shards of 64, 64 and 32 members
    try:
        validate_config(data)
    except ConfigError:
        pytest.skip("pairing refused by the config checks")
    data["run"]["executor"] = "ray"
    try:
        validate_config(data)
    except ConfigError:
        pytest.skip("a population the Ray executor does not shard (refused for executor = 'ray')")
    data["run"]["executor"] = "local"
    local = _metrics(data, LocalExecutor(), 3)
    assert _metrics(data, ShardedInProcess(3), 3) == local


@pytest.mark.parametrize(
    "strategy, task",
    [
        pytest.param(s, t, marks=[pytest.mark.slow] if (s, t) == ("neat", "gym") else [])  # ~15 s
        for s in ("openes", "ga", "neat")
        for t in ("control", "gym")
    ],
)
def test_observation_statistics_merge_like_one_batch(task: str, strategy: str, tmp_path: Path) -> None:
    """Observation sums are merged in member order: the statistics after 3 generations are equal.

    (NEAT runs CartPole: a shard compiles to its own widest genome, so on continuous actions
    a sharded NEAT run can differ from one batch in the last bit; see docs/scaling.md.)"""
    network = "neat" if strategy == "neat" else "mlp"
    env = "CartPole-v1" if strategy == "neat" else "Pendulum-v1"
    data = _config(strategy, network, {"name": task, **TASK_KEYS[task], "env": env}, 3)
    data["strategy"]["population_size"] = 150
    built_local = build(validate_config(data))
    local = evolve(built_local.strategy, built_local.phenotype, built_local.task, generations=3)
    built = build(validate_config(data))
    sharded = evolve(built.strategy, built.phenotype, built.task, generations=3, executor=ShardedInProcess(4))
    assert [m["best"] for m in sharded.metrics] == [m["best"] for m in local.metrics]
    for key, value in built_local.task.state_dict()["obs_norm"].items():
        got = built.task.state_dict()["obs_norm"][key]
        assert torch.equal(torch.as_tensor(got), torch.as_tensor(value)), key
    assert built.task.obs_norm.count > 0


@pytest.mark.parametrize("antithetic", [True, False])
def test_openes_members_rebuilt_from_keys_are_the_asked_rows(antithetic: bool) -> None:
    es = OpenES(37, 200, sigma=0.3, lr=0.1, antithetic=antithetic, seed=4)
    executor = ShardedInProcess(3)
    for generation in range(3):
        population = es.ask()
        recipe = es.member_recipe()
        assert recipe is not None and recipe.generation == generation
        assert torch.equal(recipe.rows(0, 200), population)
        assert torch.equal(recipe.rows(64, 150), population[64:150])
        es.tell(-(population * population).sum(1))
    data = _config("openes", "mlp", {"name": "xor"}, 3)
    data["strategy"]["population_size"] = 160
    assert _metrics(data, executor, 3) == _metrics(data, LocalExecutor(), 3)
    assert executor.rebuilt == 3


def test_seed_chain_ga_members_and_elite_candidates_go_as_seeds() -> None:
    """Deep GA's population and its elite candidates (every re-evaluation stream) are rebuilt
    from their seed chains on the shards, with the local executor's metrics."""
    data = _config("seed_ga", "mlp", {"name": "xor"}, 3)
    data["strategy"].update(population_size=160, reeval_streams=2, elite_candidates=5)
    executor = ShardedInProcess(3)
    assert _metrics(data, executor, 3) == _metrics(data, LocalExecutor(), 3)
    assert executor.rebuilt == 3 * (1 + 2)


def _toml(tmp_path: Path, run: dict[str, Any]) -> Path:
    import tomli_w

    data = _config("ga", "mlp", {"name": "xor"}, 2)
    data["run"].update(run)
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(
    "run, args, message",
    [
        ({"executor": "spark"}, [], "run.executor"),
        ({"workers": 0}, [], "run.workers"),
        ({"workers": "2"}, [], "run.workers"),
        ({}, ["--workers", "0"], "--workers = 0"),
        ({"executor": "ray"}, [], "pip install 'neuroevo[ray]'"),
    ],
)
def test_ray_settings_are_checked_before_the_run_folder(
    run: dict[str, Any], args: list[str], message: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    import sys

    from neuroevo.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    out = tmp_path / "run"
    assert main(["run", str(_toml(tmp_path, run)), "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_resume_takes_local_or_ray_not_both(tmp_path: Path, capsys) -> None:
    from neuroevo.cli import main

    out = tmp_path / "run"
    assert main(["run", str(_toml(tmp_path, {})), "--out", str(out), "--quiet"]) == 0
    assert main(["resume", str(out), "--generations", "3", "--local", "--ray", "auto"]) == 2
    assert "--local and --ray" in capsys.readouterr().err
    assert main(["resume", str(out), "--generations", "3", "--local", "--quiet"]) == 0
