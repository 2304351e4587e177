"""Pendulum-v1 as in Gymnasium 1.x, batched.

State ``(theta, theta_dot)`` (theta = 0 is upright, not wrapped); reset draws theta from
U(-pi, pi) and theta_dot from U(-1, 1). Torque in [-2, 2]; reward
``-(normalize(theta)**2 + 0.1 * theta_dot**2 + 0.001 * u**2)`` computed before the update;
semi-implicit Euler with ``dt = 0.05``, speed clipped to 8; never terminates; 200 steps.
Observations ``(cos theta, sin theta, theta_dot)``.
"""

from __future__ import annotations

import math

import torch

from neuroevo.tasks.control.base import BatchedEnv, uniform

MAX_SPEED = 8.0
MAX_TORQUE = 2.0
DT = 0.05
G = 10.0
M = 1.0
L = 1.0


def angle_normalize(x: torch.Tensor) -> torch.Tensor:
    """``((x + pi) % (2 pi)) - pi`` with NumPy's floor-modulo semantics."""
    y = x + math.pi
    period = 2 * math.pi
    mod = torch.fmod(y, period)
    mod = torch.where((mod != 0) & (mod < 0), mod + period, mod)
    return mod - math.pi


class Pendulum(BatchedEnv):
    """Pendulum-v1: Box(-2, 2, (1,)) torque, 3 observations."""

    id = "Pendulum-v1"
    max_episode_steps = 200
    state_dim = 2
    obs_dim = 3
    action_dim = 1
    action_low = (-MAX_TORQUE,)
    action_high = (MAX_TORQUE,)

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return uniform(n, [-math.pi, -1.0], [math.pi, 1.0], generator)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        th, thdot = state.unbind(1)
        return torch.stack((torch.cos(th), torch.sin(th), thdot), dim=1)

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced=False):
        th, thdot = state.unbind(1)
        # the torque is a float32 Box action: as in NumPy, terms in u alone are float32
        u = actions[:, 0].to(torch.float32).clamp(-MAX_TORQUE, MAX_TORQUE)
        u_cost = (0.001 * (u**2)).to(th.dtype)
        u_acc = (3.0 / (M * L**2) * u).to(th.dtype)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + u_cost
        newthdot = thdot + (3 * G / (2 * L) * torch.sin(th) + u_acc) * DT
        newthdot = newthdot.clamp(-MAX_SPEED, MAX_SPEED)
        newth = th + newthdot * DT
        terminated = torch.zeros_like(th, dtype=torch.bool)
        return torch.stack((newth, newthdot), dim=1), -costs, terminated
