"""MountainCar-v0 and MountainCarContinuous-v0 (Moore 1990) as in Gymnasium 1.x, batched.

State ``(position, velocity)``; reset draws position from U(-0.6, -0.4) with velocity 0.
MountainCar-v0: Discrete(3) pushes, reward -1 per step, goal ``position >= 0.5``, 200 steps.
MountainCarContinuous-v0: force in [-1, 1], reward ``100`` on reaching ``position >= 0.45``
minus ``0.1 * action**2`` (the unclipped action, as in Gymnasium), 999 steps. Gymnasium keeps
the continuous car's state in float32; so does this implementation (rounded after each step).
"""

from __future__ import annotations

import torch

from neuroevo.tasks.control.base import BatchedEnv, uniform

MIN_POSITION = -1.2
MAX_POSITION = 0.6
MAX_SPEED = 0.07


def _sample(n: int, generator: torch.Generator) -> torch.Tensor:
    pos = uniform(n, [-0.6], [-0.4], generator)
    return torch.cat([pos, torch.zeros_like(pos)], dim=1)


class MountainCar(BatchedEnv):
    """MountainCar-v0: Discrete(3) actions (push left, none, push right), 2 observations."""

    id = "MountainCar-v0"
    max_episode_steps = 200
    state_dim = 2
    obs_dim = 2
    num_actions = 3
    force = 0.001
    gravity = 0.0025
    goal_position = 0.5

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return _sample(n, generator)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.clone()

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor):
        position, velocity = state.unbind(1)
        velocity = velocity + (
            (actions - 1).to(state.dtype) * self.force + torch.cos(3 * position) * (-self.gravity)
        )
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        reward = torch.full_like(position, -1.0)
        return torch.stack((position, velocity), dim=1), reward, terminated


class MountainCarContinuous(BatchedEnv):
    """MountainCarContinuous-v0: Box(-1, 1, (1,)) force, 2 observations."""

    id = "MountainCarContinuous-v0"
    max_episode_steps = 999
    state_dim = 2
    obs_dim = 2
    action_dim = 1
    action_low = (-1.0,)
    action_high = (1.0,)
    power = 0.0015
    goal_position = 0.45

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return _sample(n, generator)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.clone()

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor):
        position, velocity = state.unbind(1)
        action = actions[:, 0]
        force = action.clamp(-1.0, 1.0)
        velocity = velocity + (force * self.power - 0.0025 * torch.cos(3 * position))
        velocity = velocity.clamp(-MAX_SPEED, MAX_SPEED)
        position = (position + velocity).clamp(MIN_POSITION, MAX_POSITION)
        velocity = torch.where((position == MIN_POSITION) & (velocity < 0), 0.0, velocity)
        terminated = (position >= self.goal_position) & (velocity >= 0)
        reward = torch.where(terminated, 100.0, 0.0).to(state.dtype) - action * action * 0.1
        new_state = torch.stack((position, velocity), dim=1).to(torch.float32).to(state.dtype)
        return new_state, reward, terminated
