"""The control examples reach their solved thresholds over 100 held-out evaluation episodes.

Each example TOML is loaded and built by ``neuroevo.config`` and run with
``neuroevo.runtime.evolve`` (no run directory), then the best member is validated on the
task's ``eval_episodes`` (100) held-out episodes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from neuroevo.config import build, load_config
from neuroevo.runtime.evolve import evolve

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _solve(name: str) -> tuple[dict[str, float], Any]:
    config = load_config(EXAMPLES / name)
    built = build(config)
    assert built.task.eval_episodes == 100
    result = evolve(
        built.strategy,
        built.phenotype,
        built.task,
        generations=config.run.generations,
        target_fitness=config.run.target_fitness,
        validate_every=config.run.generations,
    )
    metrics = built.task.validate(built.phenotype, result.best.params)
    print(f"{name}: {result.generations} generations ({result.stop_reason}), held-out {metrics}")
    return metrics, result


@pytest.mark.parametrize("name", ["cartpole_es.toml", "pendulum_es.toml", "acrobot_ga.toml"])
def test_examples_are_valid_configs(name: str) -> None:
    config = load_config(EXAMPLES / name)
    assert config.task_name == "control"


def test_cartpole_es_solves() -> None:
    metrics, result = _solve("cartpole_es.toml")
    assert result.stop_reason == "target_fitness"
    assert metrics["eval_return_mean"] >= 475, metrics


@pytest.mark.slow
def test_acrobot_ga_solves() -> None:
    metrics, _ = _solve("acrobot_ga.toml")
    assert metrics["eval_return_mean"] >= -100, metrics


@pytest.mark.slow
def test_pendulum_es_solves() -> None:
    metrics, _ = _solve("pendulum_es.toml")
    assert metrics["eval_return_mean"] >= -200, metrics
