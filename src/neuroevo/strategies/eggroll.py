"""EGGROLL: Evolution Strategies at the Hyperscale (2025), low-rank OpenAI-ES for large networks.

OpenAI-ES (``neuroevo.strategies.openes``) perturbs all D parameters of every member with
full-rank Gaussian noise, so a population costs P x D memory and P separate weight sets in
the forward pass. EGGROLL perturbs each weight matrix ``W (m x n)`` of member ``i`` by
``sigma * E_i`` with the low-rank ``E_i = A_i B_i^T / sqrt(r)``, ``A_i (m x r)``,
``B_i (n x r)`` standard normal (``r`` is ``rank``, capped at ``min(m, n)``); every entry
outside the matrices (biases, other parameters) gets ordinary Gaussian noise. Members come
in antithetic pairs ``+E_i`` / ``-E_i``. The factors of pair ``h`` are drawn from the key
(seed, generation, h), so a worker can regenerate a member from its key.

``ask()`` returns a ``neuroevo.nn.lowrank.LowRankPopulation`` (centre, sigma, the pairs'
factors): it is never expanded to ``P x m x n``. The phenotype computes
``x W + sigma ((x A_i) B_i^T) / sqrt(r)`` batched over members (``EggrollMLP`` for
``PopulationMLP``, ``EggrollModule`` for the ``nn.Linear`` layers of a ``ModuleAdapter``);
configs use ``[network] type = "eggroll_mlp"``.

With shaped fitness ``w`` (centred ranks) and pair weights ``w_h = w_h+ - w_h-`` the
gradient estimate for a matrix is ``1 / (P sigma sqrt(r)) sum_h w_h A_h B_h^T`` -- one matmul
of ``[m, H r]`` by ``[H r, n]`` -- and ``1 / (P sigma) sum_h w_h eps_h`` for the other entries;
then, exactly as OpenES, L2 weight decay, Adam or SGD under the warmup/decay learning-rate
schedule, and geometric sigma decay. Each update is a sum of ``H`` rank-``r`` matrices, so
it is high-rank even for ``r = 1``. With ``r = min(m, n)`` each entry of ``E_i`` has unit
variance and distinct entries are uncorrelated: the second-order statistics of OpenES noise.
``best`` is a flat ``[D]`` vector: only the single best member is materialised.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from pydantic import Field

from neuroevo.core.contracts import PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.nn.lowrank import LowRankPopulation, Slot, slot_ranks, vector_index
from neuroevo.strategies.openes import OpenES, OpenESParams

InitFn = Callable[[torch.Generator], torch.Tensor]


class EggrollParams(OpenESParams):
    rank: int = Field(1, ge=1, description="rank r of each matrix perturbation (capped at min(m, n))")


class EGGROLL(OpenES):
    """Low-rank antithetic ES over the weight matrices named by ``slots``; OpenES everywhere else.

    The search state is OpenES's (``OpenESState``); ``slots`` come from the phenotype.
    """

    population_kind = PopulationKind.LOWRANK

    name = "eggroll"
    Params = EggrollParams
    params: EggrollParams
    population_kind: ClassVar[PopulationKind] = PopulationKind.LOWRANK

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        slots: Sequence[Slot],
        **options: Any,
    ):
        """``options``: OpenES's (centre/init, seed, dtype, device, ``params``) and ``EggrollParams`` keys."""
        super().__init__(num_params, population_size, **options)
        self.slots = [(int(o), int(r), int(c)) for o, r, c in slots]
        for offset, rows, cols in self.slots:
            if offset < 0 or offset + rows * cols > num_params:
                raise ValueError(
                    f"matrix slot {(offset, rows, cols)} lies outside the {num_params} parameters"
                )
        self.ranks = slot_ranks(self.slots, self.params.rank)
        self.vector_index = vector_index(num_params, self.slots).to(self.device)

    @classmethod
    def from_params(cls, params: EggrollParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> EGGROLL:
        """Build for a phenotype that runs low-rank populations (``EggrollMLP``, ``EggrollModule``)."""
        if not hasattr(phenotype, "lowrank_slots"):
            raise ConfigError(
                f"strategy 'eggroll' needs a phenotype that runs low-rank populations, not "
                f"{type(phenotype).__name__}; allowed: network.type = 'eggroll_mlp' "
                "(or an EggrollModule in Python)"
            )
        return cls(
            phenotype.num_params,
            slots=phenotype.lowrank_slots(),
            init=phenotype.init_params,
            seed=seed,
            params=params,
            **kw,
        )

    @property
    def pairs(self) -> int:
        return self.population_size // 2 if self.params.antithetic else self.population_size

    def noise_length(self) -> int:
        """Numbers drawn per pair: the factors of every matrix plus the other entries."""
        factors = sum((rows + cols) * r for (_, rows, cols), r in zip(self.slots, self.ranks, strict=True))
        return factors + int(self.vector_index.numel())

    def _ask(self) -> LowRankPopulation:
        noise = self.population_noise(self.pairs, self.noise_length(), "eggroll")
        a, b, col = [], [], 0
        for (_, rows, cols), r in zip(self.slots, self.ranks, strict=True):
            a.append(noise[:, col : col + rows * r].view(-1, rows, r))
            col += rows * r
            b.append(noise[:, col : col + cols * r].view(-1, cols, r))
            col += cols * r
        return LowRankPopulation(
            center=self.state.center,
            sigma=self.state.sigma,
            slots=self.slots,
            ranks=self.ranks,
            a=a,
            b=b,
            vector_index=self.vector_index,
            vector_noise=noise[:, col:],
            size=self.population_size,
            antithetic=self.params.antithetic,
            seed=self.seed,
            generation=self.generation,
        )

    def member(self, population: LowRankPopulation, index: int) -> torch.Tensor:
        """One member as a flat ``[D]`` vector (the only member ever materialised)."""
        return population.member(index)

    def gradient(self, population: LowRankPopulation, weights: torch.Tensor) -> torch.Tensor:
        """``1 / (P sigma) sum_i w_i eps_i`` as a flat ``[D]`` vector, each matrix block one matmul."""
        if self.params.antithetic:
            weights = weights[: self.pairs] - weights[self.pairs :]
        scale = 1.0 / (self.population_size * population.sigma)
        # every entry is written below (the slots and ``vector_index`` cover all D); each matrix
        # product goes straight into its block of the gradient
        grad = torch.empty(self.num_params, dtype=self.dtype, device=self.device)
        for k, ((offset, rows, cols), r) in enumerate(zip(self.slots, self.ranks, strict=True)):
            a = (population.a[k] * weights.view(-1, 1, 1)).permute(1, 0, 2).reshape(rows, -1)
            b = population.b[k].permute(1, 0, 2).reshape(cols, -1)
            block = grad[offset : offset + rows * cols].view(rows, cols)
            torch.mm(a, b.T, out=block).mul_(scale / math.sqrt(r))
        grad[self.vector_index] = (weights @ population.vector_noise) * scale
        return grad
