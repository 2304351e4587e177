"""CartPole-v1 (Barto, Sutton & Anderson 1983) as in Gymnasium 1.x, batched.

State ``(x, x_dot, theta, theta_dot)``; Euler integration with ``tau = 0.02``; reward +1 on
every step including the terminating one; terminates when ``|x| > 2.4`` or
``|theta| > 12 deg``; truncated after 500 steps. Reset draws every state entry from
U(-0.05, 0.05).
"""

from __future__ import annotations

import math

import torch

from neuroevo.tasks.control.base import BatchedEnv, uniform

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4


class CartPole(BatchedEnv):
    """CartPole-v1: Discrete(2) actions (0 = push left, 1 = push right), 4 observations."""

    id = "CartPole-v1"
    max_episode_steps = 500
    state_dim = 4
    obs_dim = 4
    num_actions = 2

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return uniform(n, [-0.05] * 4, [0.05] * 4, generator)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        return state.clone()

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced=False):
        x, x_dot, theta, theta_dot = state.unbind(1)
        force = actions.to(state.dtype) * (2 * FORCE_MAG) - FORCE_MAG  # exactly +-FORCE_MAG for 1 / 0
        costheta = torch.cos(theta)
        sintheta = torch.sin(theta)
        temp = (force + POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / TOTAL_MASS
        thetaacc = (GRAVITY * sintheta - costheta * temp) / (
            LENGTH * torch.rsub(MASSPOLE * (costheta * costheta) / TOTAL_MASS, 4.0 / 3.0)  # 4/3 - (..)
        )
        xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
        # Euler: every entry s + TAU * ds, as Gymnasium's four updates, in three ops
        new_state = state + TAU * torch.stack((x_dot, xacc, theta_dot, thetaacc), dim=1)
        x, theta = new_state[:, 0], new_state[:, 2]
        terminated = (x.abs() > X_THRESHOLD) | (theta.abs() > THETA_THRESHOLD)
        reward = torch.ones_like(x)
        return new_state, reward, terminated
