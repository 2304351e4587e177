"""GymTask: any Gymnasium env through gymnasium.vector, matching ControlTask where both apply."""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from conftest import gym_start_states
from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.nn.mlp import PopulationMLP
from neuroevo.tasks import TASKS
from neuroevo.tasks.control import ControlTask
from neuroevo.tasks.gym import GymParams, GymTask


def _population(n_in: int, n_out: int, size: int, scale: float = 1.0) -> tuple[PopulationMLP, torch.Tensor]:
    net = PopulationMLP([n_in, 16, n_out])
    pop = torch.stack([net.init_params(nrandom.member_generator(1, 0, i, "init")) for i in range(size)])
    return net, pop * scale


def test_same_returns_as_control_task_from_same_states() -> None:
    """CartPole: GymTask (Gymnasium's env) and ControlTask (native, float64) agree exactly."""
    gym_task = GymTask("CartPole-v1", episodes=3, normalize_obs=False)
    native = ControlTask("CartPole-v1", episodes=3, normalize_obs=False, dtype="float64")
    net, pop = _population(4, 2, 12, scale=3.0)
    seeds = gym_task.episode_seeds(3, 0, 0, "episodes")
    ours = native.rollout(net, pop, gym_start_states("CartPole-v1", seeds))
    theirs = gym_task.rollout(net, pop, seeds)
    assert theirs.returns.max() > 50  # some members balance for a while
    assert torch.equal(ours.returns, theirs.returns)
    assert ours.steps == theirs.steps


def test_acrobot_same_returns_as_control_task() -> None:
    gym_task = GymTask("Acrobot-v1", episodes=2, max_steps=100, normalize_obs=False)
    native = ControlTask("Acrobot-v1", episodes=2, max_steps=100, normalize_obs=False, dtype="float64")
    net, pop = _population(6, 3, 4, scale=2.0)
    seeds = gym_task.episode_seeds(2, 0, 0, "episodes")
    states = gym_start_states("Acrobot-v1", seeds, torch.float64)
    assert torch.equal(native.rollout(net, pop, states).returns, gym_task.rollout(net, pop, seeds).returns)


@pytest.mark.filterwarnings("ignore:.*out of date")
def test_classic_control_env_without_native_version() -> None:
    """CartPole-v0 (200-step limit) has no native implementation."""
    task = GymTask("CartPole-v0", episodes=2)
    assert (task.in_features, task.out_features, task.max_steps) == (4, 2, 200)
    net, pop = _population(4, 2, 6, scale=3.0)
    fitness = task.evaluate(net, pop, 0)
    assert fitness.values.shape == (6,)
    assert fitness.values.max() <= 200 and fitness.steps == int(task.obs_norm.count)
    again = GymTask("CartPole-v0", episodes=2).evaluate(net, pop, 0)
    assert torch.equal(fitness.values, again.values)


def test_discrete_observations_are_one_hot() -> None:
    task = GymTask("FrozenLake-v1", episodes=3)
    assert (task.in_features, task.out_features) == (16, 4)
    net, pop = _population(16, 4, 5, scale=3.0)
    fitness = task.evaluate(net, pop, 0)
    assert fitness.values.shape == (5,) and bool(((fitness.values >= 0) & (fitness.values <= 1)).all())


def test_box_actions_are_squashed_to_bounds_and_async_matches_sync() -> None:
    net, pop = _population(3, 1, 4, scale=5.0)
    sync = GymTask("Pendulum-v1", episodes=2, max_steps=30, normalize_obs=False)
    asyn = GymTask(
        "Pendulum-v1", episodes=2, max_steps=30, normalize_obs=False, vectorization="async", num_envs=4
    )
    try:
        a = sync.evaluate(net, pop, 3)
        b = asyn.evaluate(net, pop, 3)
    finally:
        asyn.close()
    assert torch.allclose(a.values, b.values)
    assert a.steps == b.steps == 4 * 2 * 30
    out = torch.tensor([[100.0], [-100.0], [0.0]])
    assert sync._actions(out, None).reshape(-1).tolist() == [2.0, -2.0, 0.0]


def test_unsupported_space_names_it() -> None:
    gym.register(id="neuroevo-test/TupleObs-v0", entry_point=_TupleObsEnv, max_episode_steps=5)
    with pytest.raises(ConfigError, match="Tuple"):
        GymTask("neuroevo-test/TupleObs-v0")


def test_unknown_id_and_registry() -> None:
    with pytest.raises(ConfigError, match="not a registered Gymnasium id"):
        GymTask("NoSuchEnv-v0")
    assert TASKS.get("gym") is GymTask
    assert GymParams().vectorization == "sync"


def test_obs_norm_round_trip() -> None:
    task = GymTask("CartPole-v1", episodes=1, max_steps=20)
    net, pop = _population(4, 2, 3)
    task.evaluate(net, pop, 0)
    fresh = GymTask("CartPole-v1", episodes=1, max_steps=20)
    fresh.load_state_dict(task.state_dict())
    assert (
        torch.equal(fresh.obs_norm.mean, task.obs_norm.mean) and fresh.obs_norm.count == task.obs_norm.count
    )
    assert set(task.validate(net, pop[0])) >= {"eval_return_mean", "eval_return_std"}


class _TupleObsEnv(gym.Env):
    """An env with a Tuple observation space (unsupported by GymTask)."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Tuple((gym.spaces.Discrete(2), gym.spaces.Discrete(3)))
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return (0, 0), {}

    def step(self, action):
        return (0, 0), 0.0, False, False, {}
