"""A population evaluated in chunks that fit a memory budget gives the unchunked pass's bits."""

from __future__ import annotations

import pytest
import torch

from neuroevo.nn import PopulationMLP
from neuroevo.runtime.executor import LocalExecutor
from neuroevo.strategies import GA, OpenES
from neuroevo.tasks import Digits
from neuroevo.tasks.control import ControlTask


def _twice(task_factory, strategy_factory, net, budget_gb: float, generations: int = 3):
    """Fitness of every generation, unchunked and chunked, from identical starts."""
    runs = []
    for executor in (LocalExecutor(max_memory_gb=None), LocalExecutor(max_memory_gb=budget_gb)):
        task, strategy = task_factory(), strategy_factory()
        values = []
        for generation in range(generations):
            fitness = executor.evaluate(task, net, strategy.ask(), generation)
            strategy.tell(fitness)
            values.append(fitness.values.clone())
        runs.append((values, executor.chunks(task, net, strategy.population_size)))
    return runs


def test_digits_in_chunks_is_bit_identical():
    net = PopulationMLP([64, 32, 10], "tanh")
    task = Digits(batch_size=256)
    budget = task.bytes_per_member(net) * 64 / 2**30  # 64 members per chunk
    (whole, one), (chunked, bounds) = _twice(
        lambda: Digits(batch_size=256),
        lambda: OpenES(net.num_params, 320, init=net.init_params, sigma=0.05),
        net,
        budget,
    )
    assert one == [(0, 320)] and len(bounds) == 5
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_control_in_chunks_is_bit_identical_observation_statistics_included(env):
    net = PopulationMLP([4 if env == "CartPole-v1" else 3, 16, 2 if env == "CartPole-v1" else 1], "tanh")
    task = ControlTask(env, episodes=2)
    budget = task.bytes_per_member(net) * 64 / 2**30
    (whole, _), (chunked, bounds) = _twice(
        lambda: ControlTask(env, episodes=2),
        lambda: GA(net.num_params, 192, truncation=20, init=net.init_params),
        net,
        budget,
        generations=4,  # later generations see the statistics merged from every chunk
    )
    assert len(bounds) == 3
    for a, b in zip(whole, chunked, strict=True):
        assert torch.equal(a, b)


def test_the_default_budget_chunks_a_large_population():
    net = PopulationMLP([64, 32, 10], "tanh")
    bounds = LocalExecutor().chunks(Digits(), net, 100_000)
    assert len(bounds) > 1 and bounds[-1][1] == 100_000 and bounds[0][0] == 0
