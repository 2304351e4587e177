"""Genetic algorithm in the style of Deep GA (Such et al. 2017).

Each generation: rank the population, keep the top ``truncation`` as parents, copy the
top ``elites`` unchanged, and fill the rest with children ``parent + mutation_power * eps``,
where ``eps`` is Gaussian noise keyed by (seed, generation, member). With
``crossover_prob > 0`` a child first takes each gene from one of two parents (uniform
crossover). Generation 0 draws every member from the phenotype's initialiser.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.strategies.base import NoiseParams, Strategy, StrategyParams

InitFn = Callable[[torch.Generator], torch.Tensor]
#: std of the Gaussian initial population when no initialiser is given (not a config key:
#: configs always initialise from the phenotype)
INIT_STD = 0.1


class TruncationParams(StrategyParams):
    """Config keys shared by the truncation-selection GAs (``ga`` and ``seed_ga``)."""

    truncation: int = Field(20, ge=1, description="parents kept each generation (top T)")
    elites: int = Field(1, ge=0, description="best members copied unchanged")
    mutation_power: float = Field(0.02, gt=0, description="sigma: std of the Gaussian mutation")
    mutation_decay: float = Field(1.0, gt=0, le=1, description="mutation_power multiplier per generation")
    mutation_min: float = Field(0.0, ge=0, description="floor of the decayed mutation power")


def check_truncation(p: TruncationParams) -> None:
    """The bounds that involve two keys: 1 <= truncation <= population_size, elites <= truncation."""
    if not 1 <= p.truncation <= p.population_size:
        raise ValueError(f"truncation = {p.truncation}; allowed: 1..population_size ({p.population_size})")
    if not 0 <= p.elites <= p.truncation:
        raise ValueError(f"elites = {p.elites}; allowed: 0..truncation ({p.truncation})")


def mutation_power_at(p: TruncationParams, generation: int) -> float:
    """``max(mutation_min, mutation_power * mutation_decay ** generation)``."""
    return max(p.mutation_min, p.mutation_power * p.mutation_decay**generation)


class GAParams(NoiseParams, TruncationParams):
    crossover_prob: float = Field(0.0, ge=0, le=1, description="chance a child is a uniform crossover")


@dataclass
class GAState:
    """The current population ``[P, D]`` (the parents of the next generation)."""

    population: torch.Tensor


class GA(Strategy):
    """Truncation-selection GA with elitism, Gaussian mutation and optional uniform crossover."""

    name = "ga"
    Params = GAParams
    params: GAParams
    state: GAState

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        params: BaseModel | dict[str, Any] | None = None,
        init: InitFn | torch.Tensor | None = None,
        init_std: float = INIT_STD,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        """``keys`` are ``GAParams`` fields (truncation, elites, mutation_power, ...); or pass ``params``.

        ``init`` is an initialiser ``init(generator)`` (one call per member) or a base vector
        that gets ``init_std * N(0, I)`` per member (zeros when None).
        """
        p = self.params = self.resolve_params(params, population_size, keys)
        super().__init__(num_params, p.population_size, seed=seed, on_nan=p.on_nan)
        check_truncation(p)
        self.dtype = dtype
        self.device = torch.device(device)
        self.state = GAState(population=self._initial_population(init, init_std))

    def _initial_population(self, init: InitFn | torch.Tensor | None, init_std: float) -> torch.Tensor:
        size, dim = self.population_size, self.num_params
        if callable(init):
            rows = [init(nrandom.member_generator(self.seed, 0, i, "init")) for i in range(size)]
            pop = torch.stack([r.reshape(-1) for r in rows])
        else:
            base = torch.zeros(dim) if init is None else torch.as_tensor(init).reshape(-1).cpu()
            noise = nrandom.population_normal(size, dim, self.seed, 0, "init", generator=self.noise_generator)
            pop = base + init_std * noise
        if pop.shape != (size, dim):
            raise ValueError(f"init produced {tuple(pop.shape)}; expected ({size}, {dim})")
        return pop.to(self.dtype).to(self.device)

    @property
    def population(self) -> torch.Tensor:
        """The population the next ``ask()`` hands out."""
        return self.state.population

    @property
    def current_mutation_power(self) -> float:
        return mutation_power_at(self.params, self.generation)

    def _ask(self) -> torch.Tensor:
        return self.state.population

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        p = self.params
        size, gen = self.population_size, self.generation + 1  # children belong to the next generation
        order = torch.argsort(fitness, descending=True, stable=True)
        parents = order[: p.truncation].to(self.device)
        n_children = size - p.elites
        members = range(p.elites, size)
        draw = {"seed": self.seed, "generation": gen, "generator": self.noise_generator}
        pick = nrandom.population_randint(p.truncation, members, 2, purpose="parents", **draw)
        # the next population is written into one buffer: elites, then each child's first parent
        # plus its mutation (the same roundings as ``first + power * noise``)
        out = torch.empty_like(population)
        if p.elites:
            torch.index_select(population, 0, parents[: p.elites], out=out[: p.elites])
        children = out[p.elites :]
        first = torch.index_select(population, 0, parents[pick[:, 0]], out=children)
        if p.crossover_prob > 0:
            coins = nrandom.population_uniform(members, 1, purpose="crossover", **draw)
            do_cross = (coins[:, 0] < p.crossover_prob).to(self.device)
            second = population[parents[pick[:, 1]]]
            masks = nrandom.population_uniform(members, self.num_params, purpose="crossover-mask", **draw)
            masks = (masks < 0.5).to(self.device)
            masks &= do_cross.unsqueeze(1)
            children.copy_(torch.where(masks, second, first))
        power = self.current_mutation_power
        noise = self.population_noise(members, self.num_params, "mutation", generation=gen)
        children.add_(noise.mul_(power))
        self.state.population = out
        assert out.shape[0] == size and n_children == children.shape[0]
        return {"mutation_power": power}
