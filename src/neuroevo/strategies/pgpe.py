"""PGPE: Policy Gradients with Parameter-based Exploration (Sehnke et al. 2010), with ClipUp.

The search distribution is ``N(mu, diag(sigma^2))``. Members come in symmetric pairs
``mu + eps_k`` and ``mu - eps_k`` with ``eps_k = sigma * n_k``, ``n_k ~ N(0, I)`` keyed by
(seed, generation, k); the population is ``[mu + eps_1..K, mu - eps_1..K]``. With shaped
fitness ``r`` (centred ranks by default) and baseline ``b = mean(r)`` the paper's
symmetric-sampling gradients are, averaged over the K pairs,

    grad_mu    = 1/K sum_k eps_k (r_k+ - r_k-) / 2
    grad_sigma = 1/K sum_k ((r_k+ + r_k-) / 2 - b) (eps_k^2 - sigma^2) / sigma

``sigma`` follows ``grad_sigma`` with rate ``lr_sigma``, each coordinate's change clipped to
``sigma_max_change * sigma`` (Toklu et al. 2020). ``mu`` follows ``grad_mu`` through an
optimiser, by default ClipUp (Toklu et al. 2020): the gradient is normalised to unit length,
accumulated with momentum into a velocity ``v <- m v + lr g/|g|``, and the velocity is clipped
to ``|v| <= max_speed``; the paper recommends ``lr = max_speed / 2``. Adam and SGD
(``neuroevo.strategies.optim``) are the alternatives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.shaping import shape_fitness
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams
from neuroevo.strategies.optim import Optimizer

InitFn = Callable[[torch.Generator], torch.Tensor]
PGPEOptimizer = Literal["clipup", "adam", "sgd"]


class ClipUp:
    """ClipUp (Toklu et al. 2020): normalised gradient step, heavy-ball momentum, speed limit."""

    def __init__(self, num_params: int, *, momentum: float = 0.9, max_speed: float = 0.3):
        self.momentum, self.max_speed = momentum, max_speed
        self.velocity = torch.zeros(num_params, dtype=torch.float64)

    def step(self, grad: torch.Tensor, lr: float) -> torch.Tensor:
        """The update to ADD to the parameters for ascent direction ``grad``."""
        norm = grad.norm()
        direction = grad / norm if norm > 0 else grad
        self.velocity.mul_(self.momentum).add_(direction, alpha=lr)
        speed = self.velocity.norm()
        if speed > self.max_speed:
            self.velocity.mul_(self.max_speed / speed)
        return self.velocity.clone()

    def state_dict(self) -> dict[str, Any]:
        return {"velocity": self.velocity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.velocity = state["velocity"].to(torch.float64).cpu().clone()


class PGPEParams(StrategyParams):
    sigma: float = Field(0.1, gt=0, description="initial std of every coordinate")
    optimizer: PGPEOptimizer = Field("clipup", description="optimiser of the mean: clipup | adam | sgd")
    lr: float = Field(0.15, gt=0, description="step size of the mean (ClipUp: max_speed / 2)")
    max_speed: float | None = Field(None, gt=0, description="ClipUp velocity limit; None = 2 * lr")
    momentum: float = Field(0.9, ge=0, lt=1, description="ClipUp and SGD momentum")
    beta1: float = Field(0.9, ge=0, lt=1, description="Adam")
    beta2: float = Field(0.999, ge=0, lt=1, description="Adam")
    lr_sigma: float = Field(0.1, ge=0, description="step size of sigma")
    sigma_max_change: float = Field(0.2, gt=0, description="largest relative change of sigma per step")
    sigma_min: float = Field(0.0, ge=0, description="floor on every coordinate's std")
    shaping: str = Field("centered_rank", description="centered_rank | z_score | raw")


class PGPE(Strategy):
    """PGPE with symmetric sampling, adaptive per-coordinate sigma and a ClipUp/Adam/SGD mean."""

    name = "pgpe"
    Params = PGPEParams

    def __init__(
        self,
        num_params: int,
        population_size: int = 256,
        *,
        center: torch.Tensor | None = None,
        init: InitFn | None = None,
        sigma: float | torch.Tensor = 0.1,
        optimizer: PGPEOptimizer = "clipup",
        lr: float = 0.15,
        max_speed: float | None = None,
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        lr_sigma: float = 0.1,
        sigma_max_change: float = 0.2,
        sigma_min: float = 0.0,
        shaping: str = "centered_rank",
        seed: int = 0,
        on_nan: OnNan = "worst",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        super().__init__(num_params, population_size, seed=seed, on_nan=on_nan)
        if population_size % 2:
            raise ValueError(f"population_size = {population_size}; symmetric sampling needs an even number")
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        self.mean = torch.as_tensor(center).reshape(-1).to(torch.float64).cpu().clone()
        if self.mean.numel() != num_params:
            raise ValueError(f"center has {self.mean.numel()} entries; expected {num_params}")
        self.sigma = torch.as_tensor(sigma, dtype=torch.float64).expand(num_params).clone()
        self.lr, self.lr_sigma = lr, lr_sigma
        self.sigma_max_change, self.sigma_min, self.shaping = sigma_max_change, sigma_min, shaping
        shape_fitness(torch.zeros(2), shaping)  # fail early on an unknown shaping
        if optimizer == "clipup":
            self.optimizer: ClipUp | Optimizer = ClipUp(
                num_params, momentum=momentum, max_speed=2 * lr if max_speed is None else max_speed
            )
        elif optimizer in ("adam", "sgd"):
            self.optimizer = Optimizer(
                optimizer, num_params, beta1=beta1, beta2=beta2, momentum=momentum, dtype=torch.float64
            )
        else:
            raise ValueError(f"optimizer = {optimizer!r}; allowed: clipup, adam, sgd")
        self._eps: torch.Tensor | None = None

    @property
    def center(self) -> torch.Tensor:
        return self.mean.to(self.dtype).to(self.device)

    def _ask(self) -> torch.Tensor:
        pairs = self.population_size // 2
        noise = nrandom.population_normal(
            pairs, self.num_params, self.seed, self.generation, "noise", dtype=torch.float64
        )
        self._eps = self.sigma * noise
        return torch.cat([self.mean + self._eps, self.mean - self._eps]).to(self.dtype).to(self.device)

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        eps, pairs = self._eps, self.population_size // 2
        r = shape_fitness(fitness, self.shaping).to(torch.float64)
        r_plus, r_minus = r[:pairs], r[pairs:]
        grad_mean = ((r_plus - r_minus) / 2) @ eps / pairs
        baseline = r.mean()
        grad_sigma = ((r_plus + r_minus) / 2 - baseline) @ ((eps * eps - self.sigma**2) / self.sigma) / pairs
        self.mean += self.optimizer.step(grad_mean, self.lr)
        limit = self.sigma_max_change * self.sigma
        self.sigma += torch.clamp(self.lr_sigma * grad_sigma, -limit, limit)
        if self.sigma_min:
            self.sigma.clamp_(min=self.sigma_min)
        self._eps = None
        return {"sigma_mean": float(self.sigma.mean()), "grad_norm": float(grad_mean.norm())}

    def _state(self) -> dict[str, Any]:
        return {"mean": self.mean, "sigma": self.sigma, "optimizer": self.optimizer.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.mean = state["mean"].to(torch.float64).cpu().clone()
        self.sigma = state["sigma"].to(torch.float64).cpu().clone()
        self.optimizer.load_state_dict(state["optimizer"])
        self._eps = None
