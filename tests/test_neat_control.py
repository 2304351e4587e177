"""NEAT on CartPole-v1 through the native batched control env (slow: a few seconds per run)."""

from __future__ import annotations

import pytest

control = pytest.importorskip("neuroevo.tasks.control")

from neuroevo.nn.neat import NEATPhenotype  # noqa: E402
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


def test_neat_population_through_gymnasium_matches_the_native_env():
    """GymTask (Gymnasium's own CartPole) and ControlTask (native, float64) give a NEAT
    population the same returns from the same start states."""
    pytest.importorskip("gymnasium")
    import torch

    from conftest import gym_start_states
    from neuroevo.tasks.gym import GymTask

    strategy = NEAT(4, 2, 40, seed=3, node_add_prob=0.5, conn_add_prob=0.8)
    phenotype = NEATPhenotype(4, 2)
    native = control.ControlTask("CartPole-v1", episodes=2, normalize_obs=False, dtype="float64")
    for generation in range(4):  # grow some hidden nodes first
        strategy.tell(native.evaluate(phenotype, strategy.ask(), generation))
    pop = strategy.ask()
    assert int(pop.node_counts().max()) > 2
    gym_task = GymTask("CartPole-v1", episodes=2, normalize_obs=False)
    seeds = gym_task.episode_seeds(2, 0, 0, "episodes")
    ours = native.rollout(phenotype, pop, gym_start_states("CartPole-v1", seeds)).returns
    theirs = gym_task.rollout(phenotype, pop, seeds).returns
    assert float(theirs.max()) > float(theirs.min())  # the genomes differ in behaviour
    torch.testing.assert_close(ours, theirs)


def test_neat_evolves_on_a_user_fitness_function():
    """FunctionTask: the user's function gets the NEATPopulation and scores it (here: how well
    the networks fit y = x^2 on a grid, a target no initial genome fits)."""
    import torch

    from neuroevo.runtime.evolve import evolve
    from neuroevo.tasks.function import FunctionTask

    phenotype = NEATPhenotype(1, 1, output_activation="identity")
    x = torch.linspace(-1, 1, 9).unsqueeze(1)

    def fitness(population):
        return -((phenotype.forward(population, x)[..., 0] - x[:, 0] ** 2) ** 2).mean(1)

    task = FunctionTask(fitness, maximize=True)
    strategy = NEAT(1, 1, 100, seed=0, output_activation="identity", node_add_prob=0.3)
    first = float(fitness(strategy.ask()).max())
    result = evolve(strategy, phenotype, task, generations=25, progress=False)
    assert first < -0.13  # a line fits x^2 on this grid at best to -0.134
    assert result.best.fitness > -0.05  # so this needs evolved hidden structure (seed 0: -0.020)
