"""Separable Natural Evolution Strategies (SNES; Schaul, Glasmachers & Schmidhuber 2011).

The search distribution is ``N(mu, diag(sigma^2))``. Each generation draws
``s_k ~ N(0, I)`` keyed by (seed, generation, k) and evaluates ``z_k = mu + sigma * s_k``.
Fitness is replaced by rank-based utilities (the best of ``lambda`` gets the largest):

    u_k = max(0, ln(lambda/2 + 1) - ln k) / sum_j max(0, ln(lambda/2 + 1) - ln j) - 1/lambda

The natural gradient with respect to ``mu`` and ``log sigma`` is then

    grad_mu = sum_k u_k s_k,          grad_sigma = sum_k u_k (s_k^2 - 1)
    mu    <- mu + eta_mu * sigma * grad_mu
    sigma <- sigma * exp(eta_sigma / 2 * grad_sigma)

with the paper's defaults ``lambda = 4 + floor(3 ln d)``, ``eta_mu = 1`` and
``eta_sigma = (3 + ln d) / (5 sqrt d)``. Only the per-dimension log-sigma is adapted, so a
generation costs O(lambda d): SNES scales to network-sized ``d`` where CMA-ES does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams

InitFn = Callable[[torch.Generator], torch.Tensor]


def default_population_size(num_params: int) -> int:
    """``4 + floor(3 ln d)``, the NES/CMA-ES default."""
    return 4 + int(math.floor(3 * math.log(max(1, num_params))))


def nes_utilities(fitness: torch.Tensor) -> torch.Tensor:
    """Rank utilities of NES (Wierstra et al. 2014) in member order; they sum to zero.

    The best member gets the largest utility; only the better half gets a positive one.
    """
    n = fitness.numel()
    k = torch.arange(1, n + 1, dtype=torch.float64)
    raw = torch.clamp(math.log(n / 2 + 1) - torch.log(k), min=0.0)
    by_rank = raw / raw.sum() - 1.0 / n
    order = torch.argsort(fitness, descending=True, stable=True)
    utilities = torch.empty(n, dtype=torch.float64)
    utilities[order] = by_rank
    return utilities


class SNESParams(StrategyParams):
    population_size: int | None = Field(  # type: ignore[assignment]
        None, ge=2, description="members per generation; None = 4 + floor(3 ln d)"
    )
    sigma: float = Field(0.1, gt=0, description="initial std of every coordinate")
    lr_mean: float | None = Field(None, gt=0, description="eta_mu; None = 1 (the paper's)")
    lr_sigma: float | None = Field(
        None, gt=0, description="eta_sigma; None = (3 + ln d) / (5 sqrt d) (the paper's)"
    )
    sigma_min: float = Field(0.0, ge=0, description="floor on every coordinate's std")


class SNES(Strategy):
    """Separable NES: natural-gradient ascent on the mean and per-coordinate log-std."""

    name = "snes"
    Params = SNESParams

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        center: torch.Tensor | None = None,
        init: InitFn | None = None,
        sigma: float | torch.Tensor = 0.1,
        lr_mean: float | None = None,
        lr_sigma: float | None = None,
        sigma_min: float = 0.0,
        seed: int = 0,
        on_nan: OnNan = "worst",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        population_size = population_size or default_population_size(num_params)
        super().__init__(num_params, population_size, seed=seed, on_nan=on_nan)
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        # the distribution is kept in float64; members are handed out in ``dtype``
        self.mean = torch.as_tensor(center).reshape(-1).to(torch.float64).cpu().clone()
        if self.mean.numel() != num_params:
            raise ValueError(f"center has {self.mean.numel()} entries; expected {num_params}")
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(num_params).clone()
        d = num_params
        self.lr_mean = 1.0 if lr_mean is None else float(lr_mean)
        self.lr_sigma = (3 + math.log(d)) / (5 * math.sqrt(d)) if lr_sigma is None else float(lr_sigma)
        self.sigma_min = float(sigma_min)
        self._s: torch.Tensor | None = None

    @property
    def center(self) -> torch.Tensor:
        return self.mean.to(self.dtype).to(self.device)

    def _ask(self) -> torch.Tensor:
        s = nrandom.population_normal(
            self.population_size, self.num_params, self.seed, self.generation, "noise", dtype=torch.float64
        )
        self._s = s
        return (self.mean + self.sigma * s).to(self.dtype).to(self.device)

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        s = self._s
        u = nes_utilities(fitness)
        grad_mean = u @ s
        grad_sigma = u @ (s * s - 1.0)
        self.mean += self.lr_mean * self.sigma * grad_mean
        self.sigma *= torch.exp(0.5 * self.lr_sigma * grad_sigma)
        if self.sigma_min:
            self.sigma.clamp_(min=self.sigma_min)
        self._s = None
        return {"sigma_mean": float(self.sigma.mean()), "sigma_max": float(self.sigma.max())}

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean, "sigma": self.sigma}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].to(torch.float64).cpu().clone()
        self.sigma = state["sigma"].to(torch.float64).cpu().clone()
        self._s = None
