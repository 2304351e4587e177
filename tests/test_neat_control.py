"""NEAT on CartPole-v1 through the native batched control env (slow: a few seconds per run)."""

from __future__ import annotations

import pytest

control = pytest.importorskip("neuroevo.tasks.control")

from neuroevo.nn.neat_graph import NEATPhenotype  # noqa: E402
from neuroevo.strategies.neat import NEAT  # noqa: E402


def _solve(seed: int, **options) -> tuple[float, dict[str, float]]:
    task = control.ControlTask("CartPole-v1", episodes=3, seed=seed)
    phenotype = NEATPhenotype(
        task.in_features, task.out_features, stateful=not options.get("feed_forward", True)
    )
    strategy = NEAT(task.in_features, task.out_features, 150, seed=seed, **options)
    for generation in range(30):
        strategy.tell(task.evaluate(phenotype, strategy.ask(), generation))
        if strategy.best.fitness >= 500:
            break
    return strategy.best.fitness, task.validate(phenotype, strategy.best.params)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_neat_solves_cartpole_through_batched_env(seed):
    fitness, validation = _solve(seed)
    assert fitness >= 500
    assert validation["eval_return_mean"] >= 475  # CartPole-v1's "solved" over 100 held-out episodes


@pytest.mark.slow
def test_recurrent_neat_runs_cartpole_with_state_across_steps():
    fitness, validation = _solve(0, feed_forward=False)
    assert fitness >= 475
    assert validation["eval_return_mean"] >= 400
