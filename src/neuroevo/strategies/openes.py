"""OpenAI-ES (Salimans et al. 2017): natural-gradient-free ES with a Gaussian of fixed shape.

Members come in mirrored pairs ``center +/- sigma * eps_j`` (antithetic sampling), with
``eps_j`` keyed by (seed, generation, j). Fitness is shaped by centred ranks; the gradient
estimate ``g = 1 / (P sigma) * sum_j (w_j+ - w_j-) eps_j`` minus an L2 weight decay on the
centre is followed by Adam or SGD with momentum, under a warmup-then-decay learning rate.
``sigma`` decays geometrically toward ``sigma_min``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.shaping import shape_fitness
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams
from neuroevo.strategies.optim import Optimizer, OptimizerName, scheduled_lr

InitFn = Callable[[torch.Generator], torch.Tensor]


class OpenESParams(StrategyParams):
    sigma: float = Field(0.05, gt=0, description="noise std")
    sigma_decay: float = Field(1.0, gt=0, le=1)
    sigma_min: float = Field(0.0, ge=0)
    lr: float = Field(0.02, gt=0)
    lr_warmup: int = Field(0, ge=0, description="generations of linear warmup")
    lr_decay: float = Field(1.0, gt=0, le=1, description="lr multiplier per generation after warmup")
    lr_min: float = Field(0.0, ge=0)
    optimizer: OptimizerName = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, description="L2 coefficient on the centre")
    shaping: str = Field("centered_rank", description="centered_rank | z_score | raw")
    antithetic: bool = True


class OpenES(Strategy):
    """OpenAI-ES with mirrored sampling, rank shaping and Adam/SGD."""

    name = "openes"
    Params = OpenESParams

    def __init__(
        self,
        num_params: int,
        population_size: int = 256,
        *,
        center: torch.Tensor | None = None,
        init: InitFn | None = None,
        sigma: float = 0.05,
        sigma_decay: float = 1.0,
        sigma_min: float = 0.0,
        lr: float = 0.02,
        lr_warmup: int = 0,
        lr_decay: float = 1.0,
        lr_min: float = 0.0,
        optimizer: OptimizerName = "adam",
        momentum: float = 0.9,
        beta1: float = 0.9,
        beta2: float = 0.999,
        weight_decay: float = 0.0,
        shaping: str = "centered_rank",
        antithetic: bool = True,
        seed: int = 0,
        on_nan: OnNan = "worst",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        super().__init__(num_params, population_size, seed=seed, on_nan=on_nan)
        if antithetic and population_size % 2:
            raise ValueError(f"population_size = {population_size}; antithetic sampling needs an even number")
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        self._center = torch.as_tensor(center).reshape(-1).to(dtype).to(self.device).clone()
        self.sigma, self.sigma_decay, self.sigma_min = sigma, sigma_decay, sigma_min
        self.lr, self.lr_warmup, self.lr_decay, self.lr_min = lr, lr_warmup, lr_decay, lr_min
        self.weight_decay, self.shaping, self.antithetic = weight_decay, shaping, antithetic
        shape_fitness(torch.zeros(2), shaping)  # fail early on an unknown shaping
        self.optimizer = Optimizer(
            optimizer,
            num_params,
            beta1=beta1,
            beta2=beta2,
            momentum=momentum,
            dtype=dtype,
            device=self.device,
        )

    @property
    def center(self) -> torch.Tensor:
        return self._center

    def _noise(self) -> torch.Tensor:
        rows = self.population_size // 2 if self.antithetic else self.population_size
        eps = nrandom.population_normal(
            rows, self.num_params, self.seed, self.generation, "noise", dtype=self.dtype
        )
        return eps.to(self.device)

    def _ask(self) -> torch.Tensor:
        eps = self._noise()
        self._eps = eps
        scaled = self.sigma * eps
        if self.antithetic:
            return torch.cat([self._center + scaled, self._center - scaled])
        return self._center + scaled

    def gradient(self, population: Any, weights: torch.Tensor) -> torch.Tensor:
        """The search-gradient estimate ``1 / (P sigma) sum_j (w_j+ - w_j-) eps_j`` for shaped ``weights``."""
        if self.antithetic:
            half = self.population_size // 2
            weights = weights[:half] - weights[half:]
        return (weights @ self._eps) / (self.population_size * self.sigma)

    def _tell(self, population: Any, fitness: torch.Tensor) -> dict[str, float]:
        weights = shape_fitness(fitness, self.shaping).to(self.dtype).to(self.device)
        grad = self.gradient(population, weights)
        if self.weight_decay:
            grad = grad - self.weight_decay * self._center
        lr = scheduled_lr(self.generation, self.lr, self.lr_warmup, self.lr_decay, self.lr_min)
        self._center = self._center + self.optimizer.step(grad, lr)
        sigma_used = self.sigma
        self.sigma = max(self.sigma_min, self.sigma * self.sigma_decay)
        self._eps = None
        return {"sigma": sigma_used, "lr": lr, "grad_norm": float(grad.norm())}

    def _state(self) -> dict[str, Any]:
        return {"center": self._center, "sigma": self.sigma, "optimizer": self.optimizer.state_dict()}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._center = state["center"].to(self.dtype).to(self.device).clone()
        self.sigma = float(state["sigma"])
        self.optimizer.load_state_dict(state["optimizer"])
