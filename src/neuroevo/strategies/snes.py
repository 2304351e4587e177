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
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.strategies.base import NoiseParams, Strategy, StrategyParams

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


class SNESParams(NoiseParams, StrategyParams):
    population_size: int | None = Field(  # type: ignore[assignment]
        None, ge=2, description="members per generation; None = 4 + floor(3 ln d)"
    )
    sigma: float = Field(0.1, gt=0, description="initial std of every coordinate")
    lr_mean: float | None = Field(None, gt=0, description="eta_mu; None = 1 (the paper's)")
    lr_sigma: float | None = Field(
        None, gt=0, description="eta_sigma; None = (3 + ln d) / (5 sqrt d) (the paper's)"
    )
    sigma_min: float = Field(0.0, ge=0, description="floor on every coordinate's std")


@dataclass
class SNESState:
    """The search distribution ``N(mean, diag(sigma^2))``, both float64 on the CPU (members, noise
    and the gradient sums are computed in the strategy's ``dtype``)."""

    mean: torch.Tensor
    sigma: torch.Tensor


class SNES(Strategy):
    """Separable NES: natural-gradient ascent on the mean and per-coordinate log-std."""

    name = "snes"
    Params = SNESParams
    params: SNESParams
    state: SNESState

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        params: BaseModel | dict[str, Any] | None = None,
        center: torch.Tensor | None = None,
        init: InitFn | None = None,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        """``keys`` are ``SNESParams`` fields (sigma, lr_mean, ...), validated once; or pass ``params``."""
        p = self.params = self.resolve_params(params, population_size, keys)
        size = p.population_size or default_population_size(num_params)
        super().__init__(num_params, size, seed=seed, on_nan=p.on_nan)
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        # the distribution is kept in float64; members are handed out in ``dtype``
        mean = torch.as_tensor(center).reshape(-1).to(torch.float64).cpu().clone()
        if mean.numel() != num_params:
            raise ValueError(f"center has {mean.numel()} entries; expected {num_params}")
        sigma = torch.as_tensor(p.sigma, dtype=torch.float64).expand(num_params).clone()
        self.state = SNESState(mean=mean, sigma=sigma)
        d = num_params
        # the paper's learning rates where the config leaves them open
        self.lr_mean = 1.0 if p.lr_mean is None else float(p.lr_mean)
        self.lr_sigma = (3 + math.log(d)) / (5 * math.sqrt(d)) if p.lr_sigma is None else float(p.lr_sigma)
        self._s: torch.Tensor | None = None

    @property
    def center(self) -> torch.Tensor:
        return self.state.mean.to(self.dtype).to(self.device)

    def _ask(self) -> torch.Tensor:
        # the [P, D] work (noise, members, gradients) runs in ``dtype``, on the device; only
        # the [D] distribution is float64
        s = self.population_noise(self.population_size, self.num_params)
        self._s = s
        sigma = self.state.sigma.to(self.dtype).to(self.device)
        return torch.mul(s, sigma).add_(self.state.mean.to(self.dtype).to(self.device))

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        s, state = self._s, self.state
        u = nes_utilities(fitness).to(self.dtype).to(self.device)
        grad_mean = (u @ s).to(torch.float64).cpu()
        grad_sigma = (u @ torch.mul(s, s).sub_(1.0)).to(torch.float64).cpu()
        state.mean += self.lr_mean * state.sigma * grad_mean
        state.sigma *= torch.exp(0.5 * self.lr_sigma * grad_sigma)
        if self.params.sigma_min:
            state.sigma.clamp_(min=self.params.sigma_min)
        self._s = None
        return {"sigma_mean": float(state.sigma.mean()), "sigma_max": float(state.sigma.max())}
