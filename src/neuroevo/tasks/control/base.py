"""Batched classic-control environments: N independent copies stepped as one tensor program.

An environment holds ``state[N, S]`` and ``elapsed[N]`` (steps since reset). ``step(actions,
active)`` advances every row at once; rows where ``active`` is False keep their state and
report zero reward and no termination, so finished episodes are masked rather than stepped
in a Python loop. Truncation follows Gymnasium's ``TimeLimit``: ``truncated`` is True when
``elapsed >= max_episode_steps`` (also on a terminating step).

Numerics: the state is kept in ``dtype``. With ``float64`` the dynamics follow Gymnasium's
(NumPy float64) operation order and agree with it to ~1e-12 per step; ``float32`` (the
default, faster) agrees to ~1e-6 per step, which in chaotic systems (Acrobot) grows over an
episode. Observations are returned in ``dtype`` (Gymnasium casts them to float32).
Initial states are drawn on the CPU from a ``torch.Generator`` in float64 with the same
uniform ranges as Gymnasium's ``reset`` and then moved to the device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch


class BatchedEnv(ABC):
    """Base class of the native environments. Subclasses write ``_sample``, ``_observe`` and ``_dynamics``."""

    id: ClassVar[str] = ""
    max_episode_steps: ClassVar[int] = 0
    state_dim: ClassVar[int] = 0
    obs_dim: ClassVar[int] = 0
    num_actions: ClassVar[int] = 0  # > 0 for Discrete(n) action spaces
    action_dim: ClassVar[int] = 0  # > 0 for Box action spaces
    action_low: ClassVar[tuple[float, ...]] = ()
    action_high: ClassVar[tuple[float, ...]] = ()
    block_steps: ClassVar[int] = 0  # steps per fused-rollout block; 0: fused.BLOCK_STEPS

    def __init__(
        self,
        *,
        max_episode_steps: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        self.max_steps = int(max_episode_steps or self.max_episode_steps)
        self.dtype = dtype
        self.device = torch.device(device)
        self.state = torch.zeros(0, self.state_dim, dtype=dtype, device=self.device)
        self.elapsed = torch.zeros(0, dtype=torch.long, device=self.device)

    @property
    def discrete(self) -> bool:
        """True for a ``Discrete(num_actions)`` action space, False for a ``Box(action_dim)``."""
        return self.num_actions > 0

    @property
    def num_envs(self) -> int:
        return int(self.state.shape[0])

    # -- reset / state -------------------------------------------------------------------------
    def sample_initial_states(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` initial states from Gymnasium's reset distribution, float64 on the CPU."""
        return self._sample(n, generator)

    def reset(self, initial: torch.Tensor | torch.Generator, num_envs: int | None = None) -> torch.Tensor:
        """Start episodes from ``initial`` states ``[N, S]`` or draw ``num_envs`` from a generator."""
        if isinstance(initial, torch.Generator):
            if num_envs is None:
                raise ValueError("reset(generator) needs num_envs")
            initial = self.sample_initial_states(int(num_envs), initial)
        self.set_state(initial)
        return self.observe()

    def set_state(
        self, states: torch.Tensor, elapsed: torch.Tensor | int = 0, index: torch.Tensor | None = None
    ) -> None:
        """Set the internal state ``[N, S]`` (and steps since reset) directly.

        With ``index``, only those rows are overwritten (``states`` then has one row per index).
        """
        states = torch.as_tensor(states)
        if states.dim() == 1:
            states = states.unsqueeze(0)
        if states.shape[-1] != self.state_dim:
            raise ValueError(f"{self.id} state has {self.state_dim} entries; got shape {tuple(states.shape)}")
        states = states.to(device=self.device, dtype=self.dtype)
        n = states.shape[0]
        if isinstance(elapsed, int):
            steps = torch.full((n,), elapsed, dtype=torch.long, device=self.device)
        else:
            steps = torch.as_tensor(elapsed, dtype=torch.long).to(self.device).reshape(n)
        if index is None:
            self.state, self.elapsed = states.clone(), steps.clone()
        else:
            index = torch.as_tensor(index, device=self.device)
            self.state = self.state.clone()
            self.elapsed = self.elapsed.clone()
            self.state[index] = states
            self.elapsed[index] = steps

    def observe(self) -> torch.Tensor:
        """Observations ``[N, obs_dim]`` of the current state."""
        return self._observe(self.state)

    def select(self, index: torch.Tensor) -> None:
        """Keep only rows ``index`` (a long index or bool mask): used to drop finished members."""
        self.state = self.state[index]
        self.elapsed = self.elapsed[index]

    # -- step ------------------------------------------------------------------------------------
    def step(
        self, actions: torch.Tensor, active: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Advance every row: ``obs[N, obs_dim], reward[N], terminated[N], truncated[N]``.

        ``actions``: ``[N]`` integers for discrete envs, ``[N, action_dim]`` (or ``[N]``) for
        continuous ones. Rows with ``active`` False are left unchanged and report zeros.
        """
        if not self.discrete:
            actions = torch.as_tensor(actions).to(device=self.device, dtype=self.dtype)
            actions = actions.reshape(self.num_envs, self.action_dim)
        else:
            actions = torch.as_tensor(actions).to(self.device).reshape(self.num_envs).long()
        new_state, reward, terminated = self._dynamics(self.state, actions, self.elapsed)
        elapsed = self.elapsed + 1
        if active is not None:
            new_state = torch.where(active.unsqueeze(1), new_state, self.state)
            reward = reward * active
            terminated = terminated & active
            elapsed = torch.where(active, elapsed, self.elapsed)
            truncated = (elapsed >= self.max_steps) & active
        else:
            truncated = elapsed >= self.max_steps
        self.state, self.elapsed = new_state, elapsed
        return self._observe(new_state), reward, terminated, truncated

    # -- what a concrete environment writes ---------------------------------------------------------
    @abstractmethod
    def _sample(self, n: int, generator: torch.Generator) -> torch.Tensor: ...

    @abstractmethod
    def _observe(self, state: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _dynamics(
        self, state: torch.Tensor, actions: torch.Tensor, elapsed: torch.Tensor, *, traced: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(next_state, reward, terminated)`` for every row, a pure function of its arguments.

        ``elapsed`` is the steps since reset before this step. ``traced=True`` asks for a version
        without data-dependent Python control flow (no ``.any()`` sync), for ``torch.compile``
        and the fused rollout; it computes the same values.
        """


def uniform(n: int, low: list[float], high: list[float], generator: torch.Generator) -> torch.Tensor:
    """``low + (high - low) * U[0, 1)`` in float64 on the CPU, like NumPy's ``Generator.uniform``."""
    lo = torch.tensor(low, dtype=torch.float64)
    hi = torch.tensor(high, dtype=torch.float64)
    return lo + (hi - lo) * torch.rand(n, len(low), generator=generator, dtype=torch.float64)
