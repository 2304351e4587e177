"""OpenAI-ES (Salimans et al. 2017): natural-gradient-free ES with a Gaussian of fixed shape.

Members come in mirrored pairs ``center +/- sigma * eps_j`` (antithetic sampling), with
``eps_j`` keyed by (seed, generation, j). Fitness is shaped by centred ranks; the gradient
estimate ``g = 1 / (P sigma) * sum_j (w_j+ - w_j-) eps_j`` minus an L2 weight decay on the
centre is followed by Adam or SGD with momentum, under a warmup-then-decay learning rate.
``sigma`` decays geometrically toward ``sigma_min``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import GaussianMembers
from neuroevo.core.shaping import shape_fitness
from neuroevo.strategies.base import NoiseParams, ShapingName, Strategy, StrategyParams
from neuroevo.strategies.optim import MomentState, MomentumParams, Optimizer, OptimizerName, scheduled_lr

InitFn = Callable[[torch.Generator], torch.Tensor]


class OpenESParams(MomentumParams, NoiseParams, StrategyParams):
    sigma: float = Field(0.05, gt=0, description="initial noise std")
    sigma_decay: float = Field(1.0, gt=0, le=1, description="sigma multiplier per generation")
    sigma_min: float = Field(0.0, ge=0, description="floor of the decayed sigma")
    lr: float = Field(0.02, gt=0, description="learning rate of the centre (after warmup)")
    lr_warmup: int = Field(0, ge=0, description="generations of linear warmup")
    lr_decay: float = Field(1.0, gt=0, le=1, description="lr multiplier per generation after warmup")
    lr_min: float = Field(0.0, ge=0, description="floor of the decayed lr")
    optimizer: OptimizerName = Field("adam", description="optimiser of the centre: adam | sgd")
    weight_decay: float = Field(0.0, ge=0, description="L2 coefficient on the centre")
    shaping: ShapingName = Field(
        "centered_rank", description="fitness shaping: centered_rank | z_score | raw"
    )
    antithetic: bool = Field(True, description="mirrored pairs centre +/- sigma eps (P must be even)")


@dataclass
class OpenESState:
    """The search state of OpenES (and EGGROLL): centre, current sigma, optimiser moments."""

    center: torch.Tensor
    sigma: float
    optimizer: MomentState


class OpenES(Strategy):
    """OpenAI-ES with mirrored sampling, rank shaping and Adam/SGD."""

    name = "openes"
    Params = OpenESParams
    params: OpenESParams
    state: OpenESState

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
        """``keys`` are ``OpenESParams`` fields (sigma, lr, ...), validated once; or pass ``params``."""
        p = self.params = self.resolve_params(params, population_size, keys)
        super().__init__(num_params, p.population_size, seed=seed, on_nan=p.on_nan)
        if p.antithetic and p.population_size % 2:
            raise ValueError(
                f"population_size = {p.population_size}; antithetic sampling needs an even number"
            )
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        self.optimizer = Optimizer(p.optimizer, beta1=p.beta1, beta2=p.beta2, momentum=p.momentum)
        self.state = OpenESState(
            center=torch.as_tensor(center).reshape(-1).to(dtype).to(self.device).clone(),
            sigma=p.sigma,
            optimizer=self.optimizer.init_state(num_params, dtype, self.device),
        )
        self._eps: torch.Tensor | None = None  # this generation's noise, between ask and tell

    @property
    def center(self) -> torch.Tensor:
        return self.state.center

    @property
    def sigma(self) -> float:
        """The noise std of the next ``ask()``."""
        return self.state.sigma

    def _noise(self) -> torch.Tensor:
        rows = self.population_size // 2 if self.params.antithetic else self.population_size
        return self.population_noise(rows, self.num_params)

    def _ask(self) -> torch.Tensor:
        eps = self._noise()
        self._eps = eps
        center = self.state.center
        if not self.params.antithetic:
            return torch.mul(eps, self.state.sigma).add_(center)
        # [center + sigma eps; center - sigma eps] written into one buffer, with the same
        # roundings as GaussianMembers.rows (sigma * eps first), so a worker's rows match
        rows = eps.shape[0]
        out = torch.empty((2 * rows, eps.shape[1]), dtype=eps.dtype, device=eps.device)
        plus, minus = out[:rows], out[rows:]
        torch.mul(eps, self.state.sigma, out=plus)
        torch.sub(center, plus, out=minus)
        plus.add_(center)
        return out

    def member_recipe(self) -> GaussianMembers | None:
        """The ``RegeneratesMembers`` hook: this generation's population as centre, sigma and keys
        (None for subclasses that hand out another kind of population)."""
        if type(self)._ask is not OpenES._ask or type(self)._noise is not OpenES._noise:
            return None
        return GaussianMembers(
            self.state.center,
            self.state.sigma,
            self.seed,
            self.generation,
            self.population_size,
            self.params.antithetic,
            generator=self.noise_generator,
        )

    def gradient(self, population: Any, weights: torch.Tensor) -> torch.Tensor:
        """The search-gradient estimate ``1 / (P sigma) sum_j (w_j+ - w_j-) eps_j`` for shaped ``weights``."""
        if self.params.antithetic:
            half = self.population_size // 2
            weights = weights[:half] - weights[half:]
        return (weights @ self._eps) / (self.population_size * self.state.sigma)

    def _tell(self, population: Any, fitness: torch.Tensor) -> dict[str, float]:
        p, s = self.params, self.state
        weights = shape_fitness(fitness, p.shaping).to(self.dtype).to(self.device)
        grad = self.gradient(population, weights)
        if p.weight_decay:
            grad = grad - p.weight_decay * s.center
        lr = scheduled_lr(self.generation, p.lr, p.lr_warmup, p.lr_decay, p.lr_min)
        s.center = s.center + self.optimizer.step(s.optimizer, grad, lr)
        sigma_used = s.sigma
        s.sigma = max(p.sigma_min, s.sigma * p.sigma_decay)
        self._eps = None
        return {"sigma": sigma_used, "lr": lr, "grad_norm": float(grad.norm())}
