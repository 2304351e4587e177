"""The native batched envs agree with Gymnasium 1.x step by step (float64 mode, 1e-5 relative).

A batch of K Gymnasium envs and one native env of K rows are driven with the same random
actions; whenever a Gymnasium episode ends, that env is reset (seeded) and the native row
is set to the Gymnasium reset state. Observations, internal state, reward, terminated and
truncated are compared on every step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.tasks.control import ENVS, make_env

K = 4  # envs in lockstep
STEPS = 800  # per env (at least one full episode): >= 3200 env steps per id


def _gym_state(env: gym.Env) -> np.ndarray:
    return np.asarray(env.unwrapped.state, dtype=np.float64)


def _close(ours: np.ndarray, theirs: np.ndarray, rtol: float) -> bool:
    return bool(np.all(np.abs(ours - theirs) <= rtol * np.abs(theirs) + 1e-12))


@pytest.mark.parametrize("env_id", list(ENVS))
def test_matches_gymnasium_float64(env_id: str) -> None:
    envs = [gym.make(env_id) for _ in range(K)]
    seeds = iter(range(10_000))
    for env in envs:
        env.reset(seed=next(seeds))
        env.action_space.seed(next(seeds))
    ours = make_env(env_id, dtype=torch.float64)
    ours.set_state(torch.tensor(np.stack([_gym_state(e) for e in envs])))
    assert ours.max_steps == envs[0].spec.max_episode_steps
    episodes = terminations = truncations = 0
    for t in range(max(STEPS, ours.max_steps + 20)):
        actions = [e.action_space.sample() for e in envs]
        results = [e.step(a) for e, a in zip(envs, actions, strict=True)]
        if ours.discrete:
            act = torch.tensor([int(a) for a in actions])
        else:
            act = torch.tensor(np.stack(actions).astype(np.float64))
        obs, reward, terminated, truncated = ours.step(act)
        for i, (g_obs, g_rew, g_term, g_trunc, _) in enumerate(results):
            where = f"{env_id} step {t} env {i}"
            assert _close(obs[i].numpy().astype(np.float32), g_obs, 1e-5), where
            assert _close(ours.state[i].numpy(), _gym_state(envs[i]), 1e-5), where
            assert abs(float(reward[i]) - g_rew) <= 1e-5 * abs(g_rew) + 1e-12, where
            assert bool(terminated[i]) == g_term, where
            assert bool(truncated[i]) == g_trunc, where
            if g_term or g_trunc:
                episodes += 1
                terminations += g_term
                truncations += g_trunc
                envs[i].reset(seed=next(seeds))
                ours.set_state(torch.tensor(_gym_state(envs[i])), index=torch.tensor([i]))
    assert episodes > 0


def test_float32_default_close_to_gymnasium() -> None:
    """float32 mode: one step from Gymnasium states agrees to float32 precision."""
    for env_id in ENVS:
        env = gym.make(env_id)
        env.reset(seed=1)
        env.action_space.seed(1)
        ours = make_env(env_id)
        assert ours.dtype == torch.float32
        for _ in range(50):
            ours.set_state(torch.tensor(_gym_state(env)))
            action = env.action_space.sample()
            g_obs, g_rew, g_term, _, _ = env.step(action)
            act = torch.tensor([int(action)]) if ours.discrete else torch.tensor(action)[None]
            obs, reward, terminated, _ = ours.step(act)
            assert np.allclose(obs[0].numpy(), g_obs, rtol=1e-4, atol=1e-5), env_id
            assert abs(float(reward[0]) - g_rew) <= 1e-4 * abs(g_rew) + 1e-5, env_id
            if g_term:
                env.reset()


@pytest.mark.parametrize("env_id", list(ENVS))
def test_initial_state_distribution(env_id: str) -> None:
    """Reset draws lie in Gymnasium's ranges and fill them; Acrobot's are float32-rounded."""
    ours = make_env(env_id, dtype=torch.float64)
    states = ours.sample_initial_states(4000, nrandom.member_generator(0, 0, 0, "test"))
    ref = gym.make(env_id)
    theirs = []
    for seed in range(400):
        ref.reset(seed=seed)
        theirs.append(_gym_state(ref))
    theirs = np.stack(theirs)
    lo, hi = theirs.min(0), theirs.max(0)
    ours_lo, ours_hi = states.min(0).values.numpy(), states.max(0).values.numpy()
    span = np.maximum(hi - lo, 1e-9)
    assert np.all(ours_lo >= lo - 0.02 * span - 1e-12) and np.all(ours_hi <= hi + 0.02 * span + 1e-12)
    assert np.all(ours_lo <= lo + 0.05 * span) and np.all(ours_hi >= hi - 0.05 * span)
    if env_id == "Acrobot-v1":
        assert torch.equal(states, states.float().double())


def test_masked_rows_do_not_move() -> None:
    env = make_env("CartPole-v1", dtype=torch.float64)
    env.reset(nrandom.member_generator(0, 0, 0, "t"), num_envs=6)
    before = env.state.clone()
    active = torch.tensor([True, False, True, False, True, False])
    _, reward, terminated, truncated = env.step(torch.ones(6, dtype=torch.long), active)
    assert torch.equal(env.state[~active], before[~active])
    assert not torch.equal(env.state[active], before[active])
    assert torch.equal(reward, active.double())
    assert not terminated[~active].any() and not truncated[~active].any()
    assert env.elapsed.tolist() == [1, 0, 1, 0, 1, 0]


def test_truncation_at_max_steps() -> None:
    env = make_env("Pendulum-v1", max_episode_steps=3)
    env.reset(nrandom.member_generator(0, 0, 0, "t"), num_envs=2)
    flags = [bool(env.step(torch.zeros(2, 1))[3][0]) for _ in range(3)]
    assert flags == [False, False, True]


def test_unknown_env_lists_allowed() -> None:
    with pytest.raises(ConfigError, match="CartPole-v1"):
        make_env("Walker-v9")
