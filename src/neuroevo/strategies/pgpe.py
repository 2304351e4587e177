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
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.core.shaping import shape_fitness
from neuroevo.strategies.base import NoiseParams, ShapingName, Strategy, StrategyParams
from neuroevo.strategies.optim import MomentState, MomentumParams, Optimizer

InitFn = Callable[[torch.Generator], torch.Tensor]
PGPEOptimizer = Literal["clipup", "adam", "sgd"]


@dataclass
class ClipUpState:
    """ClipUp's velocity (float64, CPU)."""

    velocity: torch.Tensor


class ClipUp:
    """ClipUp (Toklu et al. 2020): normalised gradient step, heavy-ball momentum, speed limit."""

    def __init__(self, *, momentum: float = 0.9, max_speed: float = 0.3):
        self.momentum, self.max_speed = momentum, max_speed

    def init_state(self, num_params: int) -> ClipUpState:
        return ClipUpState(velocity=torch.zeros(num_params, dtype=torch.float64))

    def step(self, state: ClipUpState, grad: torch.Tensor, lr: float) -> torch.Tensor:
        """The update to ADD to the parameters for ascent direction ``grad`` (advances ``state``)."""
        norm = grad.norm()
        direction = grad / norm if norm > 0 else grad
        state.velocity.mul_(self.momentum).add_(direction, alpha=lr)
        speed = state.velocity.norm()
        if speed > self.max_speed:
            state.velocity.mul_(self.max_speed / speed)
        return state.velocity.clone()


class PGPEParams(MomentumParams, NoiseParams, StrategyParams):
    sigma: float = Field(0.1, gt=0, description="initial std of every coordinate")
    optimizer: PGPEOptimizer = Field("clipup", description="optimiser of the mean: clipup | adam | sgd")
    lr: float = Field(0.15, gt=0, description="step size of the mean (ClipUp: max_speed / 2)")
    max_speed: float | None = Field(None, gt=0, description="ClipUp velocity limit; None = 2 * lr")
    lr_sigma: float = Field(0.1, ge=0, description="step size of sigma")
    sigma_max_change: float = Field(0.2, gt=0, description="largest relative change of sigma per step")
    sigma_min: float = Field(0.0, ge=0, description="floor on every coordinate's std")
    shaping: ShapingName = Field(
        "centered_rank", description="fitness shaping: centered_rank | z_score | raw"
    )


@dataclass
class PGPEState:
    """The search distribution ``N(mean, diag(sigma^2))`` (float64, CPU) and the optimiser's state
    (members, noise and gradient sums are computed in the strategy's ``dtype``)."""

    mean: torch.Tensor
    sigma: torch.Tensor
    optimizer: ClipUpState | MomentState


class PGPE(Strategy):
    """PGPE with symmetric sampling, adaptive per-coordinate sigma and a ClipUp/Adam/SGD mean."""

    name = "pgpe"
    Params = PGPEParams
    params: PGPEParams
    state: PGPEState

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
        """``keys`` are ``PGPEParams`` fields (sigma, lr, optimizer, ...), validated once; or ``params``."""
        p = self.params = self.resolve_params(params, population_size, keys)
        super().__init__(num_params, p.population_size, seed=seed, on_nan=p.on_nan)
        if p.population_size % 2:
            raise ValueError(
                f"population_size = {p.population_size}; symmetric sampling needs an even number"
            )
        self.dtype, self.device = dtype, torch.device(device)
        if center is None:
            center = init(nrandom.member_generator(seed, 0, 0, "init")) if init else torch.zeros(num_params)
        mean = torch.as_tensor(center).reshape(-1).to(torch.float64).cpu().clone()
        if mean.numel() != num_params:
            raise ValueError(f"center has {mean.numel()} entries; expected {num_params}")
        if p.optimizer == "clipup":
            max_speed = 2 * p.lr if p.max_speed is None else p.max_speed
            self.optimizer: ClipUp | Optimizer = ClipUp(momentum=p.momentum, max_speed=max_speed)
            moments: ClipUpState | MomentState = self.optimizer.init_state(num_params)
        else:
            self.optimizer = Optimizer(p.optimizer, beta1=p.beta1, beta2=p.beta2, momentum=p.momentum)
            moments = self.optimizer.init_state(num_params, torch.float64)
        sigma = torch.as_tensor(p.sigma, dtype=torch.float64).expand(num_params).clone()
        self.state = PGPEState(mean=mean, sigma=sigma, optimizer=moments)
        self._eps: torch.Tensor | None = None
        self._noise_buffer: torch.Tensor | None = None

    @property
    def center(self) -> torch.Tensor:
        return self.state.mean.to(self.dtype).to(self.device)

    def _ask(self) -> torch.Tensor:
        # the [P, D] work runs in ``dtype`` on the device; the [D] distribution is float64
        pairs, s = self.population_size // 2, self.state
        # eps lives only from ask to tell: one CPU buffer is refilled each generation (a fresh
        # [P/2, D] allocation would be faulted in by the kernel again, page by page)
        buf = self._noise_buffer
        if buf is None or buf.shape != (pairs, self.num_params):
            buf = self._noise_buffer = torch.empty((pairs, self.num_params), dtype=self.dtype)
        noise = self.population_noise(pairs, self.num_params, out=buf)
        mean = s.mean.to(self.dtype).to(self.device)
        out = torch.empty((2 * pairs, self.num_params), dtype=self.dtype, device=self.device)
        plus, minus = out[:pairs], out[pairs:]
        self._eps = torch.mul(noise, s.sigma.to(self.dtype).to(self.device), out=noise)
        torch.add(mean, self._eps, out=plus)
        torch.sub(mean, self._eps, out=minus)
        return out

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        p, s = self.params, self.state
        eps, pairs = self._eps, self.population_size // 2
        r = shape_fitness(fitness, p.shaping).to(torch.float64)
        r_plus, r_minus = r[:pairs], r[pairs:]
        to_eps = {"dtype": eps.dtype, "device": eps.device}
        grad_mean = (((r_plus - r_minus) / 2).to(**to_eps) @ eps).to(torch.float64).cpu() / pairs
        # sum_k b_k (eps_k^2 - sigma^2) / sigma = (sum_k b_k eps_k^2) / sigma - sigma sum_k b_k
        b = (r_plus + r_minus) / 2 - r.mean()
        b_eps2 = (b.to(**to_eps) @ eps.mul_(eps)).to(torch.float64).cpu()  # eps's last use: squared in place
        grad_sigma = (b_eps2 / s.sigma - s.sigma * float(b.sum())) / pairs
        s.mean += self.optimizer.step(s.optimizer, grad_mean, p.lr)
        limit = p.sigma_max_change * s.sigma
        s.sigma += torch.clamp(p.lr_sigma * grad_sigma, -limit, limit)
        if p.sigma_min:
            s.sigma.clamp_(min=p.sigma_min)
        self._eps = None
        return {"sigma_mean": float(s.sigma.mean()), "grad_norm": float(grad_mean.norm())}
