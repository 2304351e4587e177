"""The table of native environments by Gymnasium id."""

from __future__ import annotations

import torch

from neuroevo.core.errors import ConfigError
from neuroevo.tasks.control.acrobot import Acrobot
from neuroevo.tasks.control.base import BatchedEnv
from neuroevo.tasks.control.cartpole import CartPole
from neuroevo.tasks.control.mountain_car import MountainCar, MountainCarContinuous
from neuroevo.tasks.control.pendulum import Pendulum

ENVS: dict[str, type[BatchedEnv]] = {
    cls.id: cls for cls in (CartPole, Acrobot, MountainCar, MountainCarContinuous, Pendulum)
}


def make_env(
    env_id: str,
    *,
    max_episode_steps: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> BatchedEnv:
    """A native batched environment by Gymnasium id (e.g. ``"CartPole-v1"``)."""
    if env_id not in ENVS:
        raise ConfigError(f"task.env = {env_id!r}; allowed: {', '.join(ENVS)}")
    return ENVS[env_id](max_episode_steps=max_episode_steps, dtype=dtype, device=device)
