"""Acrobot-v1 (Sutton 1996, "book" dynamics) as in Gymnasium 1.x, batched.

State ``(theta1, theta2, dtheta1, dtheta2)``; reset draws each from U(-0.1, 0.1) rounded to
float32 (as Gymnasium does). Torque in {-1, 0, +1}; one RK4 step of ``dt = 0.2``; angles
wrapped to [-pi, pi], velocities clipped to 4 pi and 9 pi. Reward -1 per step, 0 on the
step that reaches ``-cos(theta1) - cos(theta1 + theta2) > 1``; 500 steps.
Observations ``(cos theta1, sin theta1, cos theta2, sin theta2, dtheta1, dtheta2)``.
"""

from __future__ import annotations

from math import pi

import torch

from neuroevo.tasks.control.base import BatchedEnv, uniform

DT = 0.2
LINK_LENGTH_1 = 1.0
LINK_MASS_1 = 1.0
LINK_MASS_2 = 1.0
LINK_COM_POS_1 = 0.5
LINK_COM_POS_2 = 0.5
LINK_MOI = 1.0
MAX_VEL_1 = 4 * pi
MAX_VEL_2 = 9 * pi
G = 9.8


def _dsdt(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Time derivative of ``s[N, 4]`` under torque ``a[N]`` (Gymnasium's ``_dsdt``, book variant)."""
    m1, m2, l1, lc1, lc2 = LINK_MASS_1, LINK_MASS_2, LINK_LENGTH_1, LINK_COM_POS_1, LINK_COM_POS_2
    i1 = i2 = LINK_MOI
    theta1, theta2, dtheta1, dtheta2 = s.unbind(1)
    cos_t2 = torch.cos(theta2)
    sin_t2 = torch.sin(theta2)
    d1 = m1 * lc1**2 + m2 * (l1**2 + lc2**2 + 2 * l1 * lc2 * cos_t2) + i1 + i2
    d2 = m2 * (lc2**2 + l1 * lc2 * cos_t2) + i2
    phi2 = m2 * lc2 * G * torch.cos(theta1 + theta2 - pi / 2.0)
    phi1 = (
        -m2 * l1 * lc2 * dtheta2**2 * sin_t2
        - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin_t2
        + (m1 * lc1 + m2 * l1) * G * torch.cos(theta1 - pi / 2)
        + phi2
    )
    ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**2 * sin_t2 - phi2) / (
        m2 * lc2**2 + i2 - d2**2 / d1
    )
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return torch.stack((dtheta1, dtheta2, ddtheta1, ddtheta2), dim=1)


#: periods a traced ``_wrap`` may remove: one RK4 step moves an angle by at most
#: ``dt * (|dtheta| + dt * |ddtheta|)``, a few radians with the clipped velocities, so 4 is ample
WRAP_ROUNDS = 4


def _wrap(x: torch.Tensor, low: float, high: float, *, traced: bool = False) -> torch.Tensor:
    """Gymnasium's ``wrap``: add or subtract the period until ``low <= x <= high``.

    ``traced``: a fixed ``WRAP_ROUNDS`` rounds instead of a loop on ``.any()`` (no host sync);
    the same values whenever no angle is more than ``WRAP_ROUNDS`` periods out.
    """
    diff = high - low
    if traced:
        for _ in range(WRAP_ROUNDS):
            x = torch.where(x > high, x - diff, x)
        for _ in range(WRAP_ROUNDS):
            x = torch.where(x < low, x + diff, x)
        return x
    while bool((x > high).any()):
        x = torch.where(x > high, x - diff, x)
    while bool((x < low).any()):
        x = torch.where(x < low, x + diff, x)
    return x


class Acrobot(BatchedEnv):
    """Acrobot-v1: Discrete(3) torques (-1, 0, +1), 6 observations."""

    id = "Acrobot-v1"
    max_episode_steps = 500
    state_dim = 4
    obs_dim = 6
    num_actions = 3
    block_steps = 2  # fused rollout: four RK4 stages per step make a large unrolled block

    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return uniform(n, [-0.1] * 4, [0.1] * 4, generator).to(torch.float32).to(torch.float64)

    def _observe(self, state: torch.Tensor) -> torch.Tensor:
        t1, t2, d1, d2 = state.unbind(1)
        return torch.stack((torch.cos(t1), torch.sin(t1), torch.cos(t2), torch.sin(t2), d1, d2), dim=1)

    def _dynamics(self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced=False):
        torque = (actions - 1).to(state.dtype)
        dt = DT
        dt2 = dt / 2.0
        k1 = _dsdt(state, torque)
        k2 = _dsdt(state + dt2 * k1, torque)
        k3 = _dsdt(state + dt2 * k2, torque)
        k4 = _dsdt(state + dt * k3, torque)
        ns = state + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
        t1, t2, d1, d2 = ns.unbind(1)
        t1 = _wrap(t1, -pi, pi, traced=traced)
        t2 = _wrap(t2, -pi, pi, traced=traced)
        d1 = d1.clamp(-MAX_VEL_1, MAX_VEL_1)
        d2 = d2.clamp(-MAX_VEL_2, MAX_VEL_2)
        terminated = -torch.cos(t1) - torch.cos(t2 + t1) > 1.0
        reward = torch.where(terminated, 0.0, -1.0).to(state.dtype)
        return torch.stack((t1, t2, d1, d2), dim=1), reward, terminated
