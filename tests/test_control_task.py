"""ControlTask: the Task contract over native batched envs (determinism, masking, normalisation)."""

from __future__ import annotations

import pydantic
import pytest
import torch

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.tasks import TASKS
from neuroevo.tasks.control import ControlParams, ControlTask, RunningObsNorm
from neuroevo.tasks.control.policy import map_actions


def _population(task: ControlTask, size: int = 16, seed: int = 0) -> tuple[PopulationMLP, torch.Tensor]:
    net = PopulationMLP([task.in_features, 16, task.out_features])
    pop = torch.stack([net.init_params(nrandom.member_generator(seed, 0, i, "init")) for i in range(size)])
    return net, pop


def test_registered_and_sized() -> None:
    assert TASKS.get("control") is ControlTask
    for env, (n_in, n_out) in {
        "CartPole-v1": (4, 2),
        "Acrobot-v1": (6, 3),
        "MountainCar-v0": (2, 3),
        "MountainCarContinuous-v0": (2, 1),
        "Pendulum-v1": (3, 1),
    }.items():
        task = ControlTask(env, episodes=1)
        assert (task.in_features, task.out_features) == (n_in, n_out)


def test_params_reject_unknown_env() -> None:
    with pytest.raises(pydantic.ValidationError, match="allowed: CartPole-v1"):
        ControlParams(env="LunarLander-v3")
    with pytest.raises(ConfigError, match="allowed: CartPole-v1"):
        ControlTask("LunarLander-v3")
    params = ControlParams(env="Pendulum-v1", episodes=3)
    task = ControlTask(**params.model_dump(), seed=1, device="cpu")
    assert task.env_id == "Pendulum-v1" and task.episodes == 3


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_deterministic_per_generation(env: str) -> None:
    def run(generation: int) -> torch.Tensor:
        task = ControlTask(env, episodes=3, seed=7, max_steps=60)
        net, pop = _population(task)
        return task.evaluate(net, pop, generation).values

    a, b, c = run(4), run(4), run(5)
    assert a.shape == (16,)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_stream_changes_episodes() -> None:
    task = ControlTask("Pendulum-v1", episodes=2, max_steps=20, normalize_obs=False)
    net, pop = _population(task)
    assert not torch.equal(task.evaluate(net, pop, 0).values, task.evaluate(net, pop, 0, stream=1).values)


def test_compaction_does_not_change_results_and_steps_count_active() -> None:
    task = ControlTask("CartPole-v1", episodes=4, normalize_obs=False, dtype="float64")
    plain = ControlTask("CartPole-v1", episodes=4, normalize_obs=False, dtype="float64", compact=False)
    net, pop = _population(task, size=32)
    init = task.initial_states(4, 0, 0, "episodes")
    a = task.rollout(net, pop, init)
    b = plain.rollout(net, pop, init)
    assert torch.allclose(a.returns, b.returns)
    assert a.steps == b.steps == int(a.lengths.sum())
    assert torch.equal(a.returns, a.lengths.double())  # CartPole: +1 per step
    fitness = task.evaluate(net, pop, 0)
    assert fitness.steps == int(a.lengths.sum())
    assert torch.allclose(fitness.values, a.returns.mean(1))


def test_one_member_equals_its_row_in_a_population() -> None:
    task = ControlTask("Acrobot-v1", episodes=2, max_steps=50, normalize_obs=False)
    net, pop = _population(task, size=8)
    init = task.initial_states(2, 0, 0, "episodes")
    full = task.rollout(net, pop, init).returns
    single = task.rollout(net, pop[3:4], init).returns
    assert torch.allclose(full[3], single[0])


def test_obs_norm_updates_after_and_round_trips() -> None:
    task = ControlTask("Pendulum-v1", episodes=2, max_steps=30, seed=3)
    net, pop = _population(task, size=4)
    assert task.obs_norm.count == 0
    fitness = task.evaluate(net, pop, 0)
    assert task.obs_norm.count == fitness.steps == 4 * 2 * 30
    state = task.state_dict()
    flat = state["obs_norm"]
    assert set(flat) == {"count", "mean", "m2"}
    assert all(isinstance(v, (float, torch.Tensor)) for v in flat.values())
    fresh = ControlTask("Pendulum-v1", episodes=2, max_steps=30, seed=3)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.obs_norm.mean, task.obs_norm.mean)
    assert torch.equal(fresh.obs_norm.std, task.obs_norm.std)
    assert torch.equal(fresh.evaluate(net, pop, 1).values, task.evaluate(net, pop, 1).values)


def test_running_obs_norm_matches_batch_statistics() -> None:
    data = torch.randn(1000, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3 + 1
    norm = RunningObsNorm(3)
    for chunk in data.split(137):
        norm.update_from(chunk)
    assert torch.allclose(norm.mean, data.mean(0))
    assert torch.allclose(norm.std, data.std(0, unbiased=False))
    assert torch.allclose(norm.normalize(data).mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-9)


def test_validate_is_held_out_and_does_not_touch_stats() -> None:
    task = ControlTask("CartPole-v1", episodes=2, eval_episodes=7)
    net, pop = _population(task, size=2)
    metrics = task.validate(net, pop[0])
    assert set(metrics) >= {"eval_return_mean", "eval_return_std"}
    assert task.obs_norm.count == 0
    assert not torch.equal(
        task.initial_states(7, 0, 0, "validation"), task.initial_states(7, 0, 0, "episodes")
    )


def test_action_mapping() -> None:
    out = torch.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert map_actions(out, num_actions=3).tolist() == [1, 0]
    cont = map_actions(
        torch.tensor([[-100.0], [0.0], [100.0]]), low=torch.tensor([-2.0]), high=torch.tensor([2.0])
    )
    assert torch.allclose(cont.squeeze(1), torch.tensor([-2.0, 0.0, 2.0]))
    gen = torch.Generator().manual_seed(0)
    sampled = map_actions(torch.zeros(2000, 2), num_actions=2, deterministic=False, generator=gen)
    assert 0.4 < sampled.float().mean() < 0.6


def test_stochastic_policy_is_reproducible() -> None:
    def run() -> torch.Tensor:
        task = ControlTask("Pendulum-v1", episodes=2, max_steps=20, deterministic=False, action_noise=0.5)
        net, pop = _population(task, size=4)
        return task.evaluate(net, pop, 2).values

    assert torch.equal(run(), run())


class _Stateful:
    """A phenotype with recurrent state: the output is the number of calls since reset_state."""

    in_features, out_features = 4, 2

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    def reset_state(self, population: object) -> None:
        self.calls = 0
        self.resets += 1

    def forward(self, population: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = torch.zeros(*x.shape[:2], 2)
        out[..., self.calls % 2] = 1.0  # alternate pushes: keeps CartPole up for a while
        return out


def test_stateful_phenotype_is_reset_each_rollout() -> None:
    task = ControlTask("CartPole-v1", episodes=2, normalize_obs=False)
    phenotype = _Stateful()
    pop = torch.zeros(6, 3)
    first = task.evaluate(phenotype, pop, 0).values
    second = task.evaluate(phenotype, pop, 0).values
    assert phenotype.resets == 2
    assert torch.equal(first, second)
