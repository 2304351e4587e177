"""Observation normalisation as in OpenAI-ES (Salimans et al. 2017).

Running mean and variance over every observation a policy was fed, shared by the whole
population. During an evaluation the statistics are frozen; the batch seen is merged in
afterwards (Chan et al.'s parallel update, in float64). The standard deviation is
``sqrt(max(var, 1e-2))`` as in OpenAI's starter code, so near-constant inputs are not blown
up; before any data the transform is the identity.
"""

from __future__ import annotations

from typing import Any

import torch

MIN_VAR = 1e-2


class RunningObsNorm:
    """Running mean/std of ``[*, dim]`` observations; ``state_dict`` holds tensors and floats only."""

    def __init__(self, dim: int, *, enabled: bool = True, device: torch.device | str = "cpu"):
        self.dim = int(dim)
        self.enabled = bool(enabled)
        self.device = torch.device(device)
        self.count = 0.0
        self.mean = torch.zeros(self.dim, dtype=torch.float64, device=self.device)
        self.m2 = torch.zeros(self.dim, dtype=torch.float64, device=self.device)

    @property
    def std(self) -> torch.Tensor:
        if self.count < 2:
            return torch.ones_like(self.mean)
        return (self.m2 / self.count).clamp_min(MIN_VAR).sqrt()

    def frozen(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, 1/std)`` in ``dtype`` for use during one evaluation."""
        return self.mean.to(dtype), self.std.reciprocal().to(dtype)

    def normalize(
        self, obs: torch.Tensor, frozen: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``(obs - mean) / std`` (identity when disabled)."""
        if not self.enabled:
            return obs
        mean, inv_std = frozen if frozen is not None else self.frozen(obs.dtype)
        return (obs - mean) * inv_std

    def batch_stats(self, obs: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        """``(count, sum, sum of squares)`` of ``obs[n, dim]`` in float64, to accumulate over a rollout."""
        obs = obs.to(torch.float64)
        return float(obs.shape[0]), obs.sum(0), (obs * obs).sum(0)

    def update(self, count: float, total: torch.Tensor, total_sq: torch.Tensor) -> None:
        """Merge a batch given by its count, sum and sum of squares."""
        if not self.enabled or count <= 0:
            return
        total = total.to(self.mean)
        total_sq = total_sq.to(self.mean)
        batch_mean = total / count
        batch_m2 = (total_sq - count * batch_mean * batch_mean).clamp_min(0.0)
        n = self.count + count
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * (count / n)
        self.m2 = self.m2 + batch_m2 + delta * delta * (self.count * count / n)
        self.count = n

    def update_from(self, obs: torch.Tensor) -> None:
        """Merge every row of ``obs[n, dim]``."""
        self.update(*self.batch_stats(obs.reshape(-1, self.dim)))

    def state_dict(self) -> dict[str, Any]:
        return {"count": float(self.count), "mean": self.mean.cpu().clone(), "m2": self.m2.cpu().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = float(state["count"])
        self.mean = torch.as_tensor(state["mean"], dtype=torch.float64).to(self.device).clone()
        self.m2 = torch.as_tensor(state["m2"], dtype=torch.float64).to(self.device).clone()
