"""MountainCar-v0 and MountainCarContinuous-v0 (Moore 1990) as in Gymnasium 1.x, batched.

State ``(position, velocity)``; reset draws position from U(-0.6, -0.4) with velocity 0.
MountainCar-v0: Discrete(3) pushes, reward -1 per step, goal ``position >= 0.5``, 200 steps.
MountainCarContinuous-v0: force in [-1, 1], reward ``100`` on reaching ``position >= 0.45``
minus ``0.1 * action**2`` (the unclipped action, as in Gymnasium), 999 steps. Gymnasium keeps
the continuous car's state in float32 and computes in float32 (NumPy's scalar rules); so does
this implementation, whatever ``dtype`` is.
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

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced=False):
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

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced=False):
        # Gymnasium's state and Box actions are float32 and NumPy keeps float32 arithmetic
        # (NEP 50), except on the first step after reset, whose state is float64. Both are
        # reproduced here, so this env agrees bit for bit with Gymnasium in either dtype.
        f32, f64 = torch.float32, torch.float64
        first = elapsed == 0
        a32 = actions[:, 0].to(f32)
        clipped = (a32 < -1.0) | (a32 > 1.0)
        force = a32.clamp(-1.0, 1.0)
        pos, vel = state.to(f64).unbind(1)
        pos32, vel32 = pos.to(f32), vel.to(f32)
        gravity = 0.0025 * torch.cos(torch.where(first, 3 * pos, (3 * pos32).to(f64)))
        push32 = force * self.power - gravity.to(f32)
        push64 = force.to(f64) * self.power - gravity
        # first step: float64 state
        v1 = vel + torch.where(clipped, push64, push32.to(f64))
        v1 = v1.clamp(-MAX_SPEED, MAX_SPEED)
        p1 = (pos + v1).clamp(MIN_POSITION, MAX_POSITION)
        v1 = torch.where((p1 == MIN_POSITION) & (v1 < 0), 0.0, v1)
        done1 = (p1 >= self.goal_position) & (v1 >= 0)
        # later steps: float32 state
        v2 = vel32 + torch.where(clipped, push64.to(f32), push32)
        v2 = v2.clamp(-MAX_SPEED, MAX_SPEED)
        p2 = (pos32 + v2).clamp(MIN_POSITION, MAX_POSITION)
        v2 = torch.where((p2 == MIN_POSITION) & (v2 < 0), 0.0, v2)
        done2 = (p2 >= self.goal_position) & (v2 >= 0)
        position = torch.where(first, p1.to(f32), p2)
        velocity = torch.where(first, v1.to(f32), v2)
        terminated = torch.where(first, done1, done2)
        reward = torch.where(terminated, 100.0, 0.0).to(f64) - a32.to(f64) ** 2 * 0.1
        new_state = torch.stack((position, velocity), dim=1).to(state.dtype)
        return new_state, reward.to(state.dtype), terminated
