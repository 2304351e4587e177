"""sep-CMA-ES (Ros & Hansen 2008): CMA-ES restricted to a diagonal covariance matrix.

Everything is CMA-ES (``neuroevo.strategies.cmaes``: weighted recombination, CSA, rank-one
and rank-mu updates, IPOP restarts) except that only the diagonal of ``C`` is kept. Then
``C^1/2`` is an elementwise square root, no eigendecomposition is needed, and a generation
costs O(lambda n) time and O(n) memory instead of O(n^2) and O(n^3 / gap): usable for
networks with many thousands of weights. Because a diagonal has only ``n`` free
parameters instead of ``n (n + 1) / 2``, the paper learns it faster: both covariance
learning rates are multiplied by ``(n + 2) / 3`` (capped so that ``c_1 + c_mu <= 1``).

The paper uses positive recombination weights only, so ``active`` defaults to false here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from pydantic import Field

from neuroevo.strategies.cmaes import CMAES, F64, CMAESParams


class SepCMAESParams(CMAESParams):
    active: bool = Field(False, description="negative weights for the worse half (not in the paper)")


@dataclass
class DiagonalCovariance:
    """The diagonal ``C`` of the covariance; ``D = sqrt(C)`` is derived from it."""

    C: torch.Tensor
    D: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.D = self.C.sqrt()


class SepCMAES(CMAES):
    """CMA-ES with a diagonal covariance matrix and faster covariance learning rates."""

    name = "sep_cmaes"
    Params = SepCMAESParams
    params: SepCMAESParams

    def _setup(self, lam: int) -> None:
        super()._setup(lam)
        self._z_w_of: torch.Tensor | None = None  # the weights whose <z>_w is cached in _z_w

    def _scale_learning_rates(self) -> None:
        factor = (self.num_params + 2) / 3
        self.c_1 = min(1.0, self.c_1 * factor)
        self.c_mu = min(1.0 - self.c_1, self.c_mu * factor)

    def _new_covariance(self) -> DiagonalCovariance:
        return DiagonalCovariance(C=torch.ones(self.num_params, dtype=F64))

    # y = D z is never stored: every sum over members is taken over z (in the population's
    # dtype, so the [lambda, n] work of a float32 population is float32) and scaled by D
    def _noise_dtype(self) -> torch.dtype:
        return self.dtype

    def _members(self, z: torch.Tensor) -> torch.Tensor:
        s = self.state
        scale = (s.covariance.D * s.sigma).to(z.dtype)
        return torch.mul(z, scale).add_(s.mean.to(z.dtype))

    def _weighted_y(self, w: torch.Tensor) -> torch.Tensor:
        return self._weighted_z(w) * self.state.covariance.D

    def _weighted_z(self, w: torch.Tensor) -> torch.Tensor:
        # <z>_w is asked for twice per tell (for <y>_w = D <z>_w and for CSA): one [lambda, n] pass
        if self._z_w_of is not w:
            self._z_w_of, self._z_w = w, super()._weighted_z(w)
        return self._z_w

    def _whiten_sampled(self, z: torch.Tensor) -> torch.Tensor:
        return z  # C^-1/2 (D z) = z

    def _update_covariance(self, decay: float, p_c: torch.Tensor, w: torch.Tensor, generation: int) -> None:
        cov, z = self.state.covariance, self._z
        self._z_w_of = None
        # sum_i w_i y_i^2 with y_i^2 = z_i^2 C; z is squared in place (tell's last use of it)
        rank_mu = (w.to(z.dtype) @ z.mul_(z)).to(F64) * cov.C
        cov.C.mul_(decay).add_(p_c * p_c, alpha=self.c_1).add_(rank_mu, alpha=self.c_mu)
        cov.C.clamp_(min=1e-300)
        cov.D = cov.C.sqrt()

    def _diag_c(self) -> torch.Tensor:
        return self.state.covariance.C

    def _axis(self, i: int) -> torch.Tensor:
        axis = torch.zeros(self.num_params, dtype=F64)
        axis[i] = self.state.covariance.D[i]
        return axis
