"""Genetic algorithm in the style of Deep GA (Such et al. 2017).

Each generation: rank the population, keep the top ``truncation`` as parents, copy the
top ``elites`` unchanged, and fill the rest with children ``parent + mutation_power * eps``,
where ``eps`` is Gaussian noise keyed by (seed, generation, member). With
``crossover_prob > 0`` a child first takes each gene from one of two parents (uniform
crossover). Generation 0 draws every member from the phenotype's initialiser.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams

InitFn = Callable[[torch.Generator], torch.Tensor]


class TruncationParams(StrategyParams):
    """Config keys shared by the truncation-selection GAs (``ga`` and ``seed_ga``)."""

    truncation: int = Field(20, ge=1, description="parents kept each generation (top T)")
    elites: int = Field(1, ge=0, description="best members copied unchanged")
    mutation_power: float = Field(0.02, gt=0, description="sigma: std of the Gaussian mutation")
    mutation_decay: float = Field(1.0, gt=0, le=1, description="mutation_power multiplier per generation")
    mutation_min: float = Field(0.0, ge=0, description="floor of the decayed mutation power")


class GAParams(TruncationParams):
    crossover_prob: float = Field(0.0, ge=0, le=1, description="chance a child is a uniform crossover")


class GA(Strategy):
    """Truncation-selection GA with elitism, Gaussian mutation and optional uniform crossover."""

    name = "ga"
    Params = GAParams

    def __init__(
        self,
        num_params: int,
        population_size: int = 256,
        *,
        init: InitFn | torch.Tensor | None = None,
        init_std: float = 0.1,
        truncation: int = 20,
        elites: int = 1,
        mutation_power: float = 0.02,
        mutation_decay: float = 1.0,
        mutation_min: float = 0.0,
        crossover_prob: float = 0.0,
        seed: int = 0,
        on_nan: OnNan = "worst",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        super().__init__(num_params, population_size, seed=seed, on_nan=on_nan)
        if not 1 <= truncation <= population_size:
            raise ValueError(f"truncation = {truncation}; allowed: 1..population_size ({population_size})")
        if not 0 <= elites <= truncation:
            raise ValueError(f"elites = {elites}; allowed: 0..truncation ({truncation})")
        self.truncation = truncation
        self.elites = elites
        self.mutation_power = mutation_power
        self.mutation_decay = mutation_decay
        self.mutation_min = mutation_min
        self.crossover_prob = crossover_prob
        self.dtype = dtype
        self.device = torch.device(device)
        self.population = self._initial_population(init, init_std)

    def _initial_population(self, init: InitFn | torch.Tensor | None, init_std: float) -> torch.Tensor:
        size, dim = self.population_size, self.num_params
        if callable(init):
            rows = [init(nrandom.member_generator(self.seed, 0, i, "init")) for i in range(size)]
            pop = torch.stack([r.reshape(-1) for r in rows])
        else:
            base = torch.zeros(dim) if init is None else torch.as_tensor(init).reshape(-1).cpu()
            pop = base + init_std * nrandom.population_normal(size, dim, self.seed, 0, "init")
        if pop.shape != (size, dim):
            raise ValueError(f"init produced {tuple(pop.shape)}; expected ({size}, {dim})")
        return pop.to(self.dtype).to(self.device)

    @property
    def current_mutation_power(self) -> float:
        return max(self.mutation_min, self.mutation_power * self.mutation_decay**self.generation)

    def _ask(self) -> torch.Tensor:
        return self.population

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        size, gen = self.population_size, self.generation + 1  # children belong to the next generation
        order = torch.argsort(fitness, descending=True, stable=True)
        parents = order[: self.truncation].to(self.device)
        n_children = size - self.elites
        members = range(self.elites, size)
        pick = torch.stack(
            [nrandom.randint(self.truncation, 2, self.seed, gen, i, "parents") for i in members]
        )
        first = population[parents[pick[:, 0]]]
        if self.crossover_prob > 0:
            coins = torch.stack([nrandom.uniform(1, self.seed, gen, i, "crossover") for i in members])
            do_cross = (coins[:, 0] < self.crossover_prob).to(self.device)
            second = population[parents[pick[:, 1]]]
            masks = torch.stack(
                [nrandom.uniform(self.num_params, self.seed, gen, i, "crossover-mask") < 0.5 for i in members]
            ).to(self.device)
            masks &= do_cross.unsqueeze(1)
            first = torch.where(masks, second, first)
        power = self.current_mutation_power
        noise = nrandom.population_normal(
            members, self.num_params, self.seed, gen, "mutation", dtype=self.dtype
        )
        children = first + power * noise.to(self.device)
        self.population = (
            torch.cat([population[parents[: self.elites]], children]) if self.elites else children
        )
        assert self.population.shape[0] == size and n_children == children.shape[0]
        return {"mutation_power": power}

    def _state(self) -> dict[str, Any]:
        return {"population": self.population}

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = state["population"].to(self.dtype).to(self.device).clone()
