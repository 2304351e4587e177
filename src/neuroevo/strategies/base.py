"""The Strategy contract (ask/tell, maximising) and what every strategy shares.

``ask()`` returns a Population; the runtime evaluates it; ``tell(fitness[P])`` updates the
search distribution. ``state_dict()``/``load_state_dict()`` hold everything needed to
continue bit-identically (tensors + JSON-able values; the runtime writes them to
safetensors + JSON). ``best`` is the best member evaluated so far.

Fitness policy: a NaN or infinite fitness counts as the worst finite fitness of that
generation (``on_nan = "worst"``, the default; the count is in ``last_nan_count`` and in
metrics) or stops the run (``on_nan = "error"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.core.errors import FitnessEvaluationError
from neuroevo.core.types import Best, Fitness

OnNan = Literal["worst", "error"]


class StrategyParams(BaseModel):
    """Config keys every strategy accepts; each strategy extends this with its own."""

    model_config = ConfigDict(extra="forbid")

    population_size: int = Field(256, ge=2, description="members per generation")
    on_nan: OnNan = Field("worst", description="what a NaN/inf fitness means: 'worst' or 'error'")


class Strategy(ABC):
    """Base class: generation counter, fitness validation, NaN policy, best tracking."""

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    #: what ``ask()`` hands out; a network type must declare that it runs this kind
    population_kind: ClassVar[PopulationKind] = PopulationKind.FLAT
    #: what the task must provide (novelty search needs behaviour descriptors)
    needs: ClassVar[frozenset[Capability]] = frozenset()

    def __init__(self, num_params: int, population_size: int, *, seed: int = 0, on_nan: OnNan = "worst"):
        if on_nan not in ("worst", "error"):
            raise ValueError(f"on_nan = {on_nan!r}; allowed: worst, error")
        self.num_params = int(num_params)
        self.population_size = int(population_size)
        self.seed = int(seed)
        self.on_nan = on_nan
        self.generation = 0
        self.best: Best | None = None
        self.last_nan_count = 0
        self.descriptors: torch.Tensor | None = None
        self._asked: Any = None

    @classmethod
    def from_params(cls, params: StrategyParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> Strategy:
        """Build from validated config keys for ``phenotype`` (its size and initialiser).

        Strategies whose constructor needs more than ``num_params``, ``init`` and their
        ``Params`` fields (NEAT, EGGROLL, novelty wrappers) override this.
        """
        return cls(phenotype.num_params, init=phenotype.init_params, seed=seed, **params.model_dump(), **kw)

    @classmethod
    def contract(cls, params: StrategyParams) -> tuple[PopulationKind, frozenset[Capability]]:
        """The population kind this strategy hands out and what it needs from a task, for ``params``.

        Read by config validation before anything is built; a wrapper whose kind depends on
        its base strategy (novelty search) overrides this.
        """
        return cls.population_kind, cls.needs

    # -- the contract ---------------------------------------------------------------------
    def ask(self) -> Any:
        """The population to evaluate this generation (asking twice returns the same one)."""
        if self._asked is None:
            self._asked = self._ask()
        return self._asked

    def tell(self, fitness: torch.Tensor | list[float] | Fitness) -> dict[str, float]:
        """Update from ``fitness[P]`` (higher is better); returns strategy stats for metrics.

        A ``Fitness`` object may be passed instead; its behaviour descriptors are then
        available to ``_tell`` as ``self.descriptors`` (novelty search).
        """
        if self._asked is None:
            raise RuntimeError("tell() before ask(): ask for a population, evaluate it, then tell")
        self.descriptors = None
        if isinstance(fitness, Fitness):
            self.descriptors = fitness.descriptors
            fitness = fitness.values
        fitness = self.check_fitness(fitness)
        best_idx = int(torch.argmax(fitness))
        best_value = float(fitness[best_idx])
        if self.best is None or best_value > self.best.fitness:
            self.best = Best(self.member(self._asked, best_idx), best_value, self.generation)
        stats = self._tell(self._asked, fitness) or {}
        self._asked = None
        self.generation += 1
        return stats

    def check_fitness(self, fitness: torch.Tensor | list[float]) -> torch.Tensor:
        """Validate shape and apply the NaN policy; returns a float64 tensor on the CPU."""
        fitness = torch.as_tensor(fitness).detach().to("cpu", torch.float64).reshape(-1)
        expected = self.expected_population_size()
        if fitness.numel() != expected:
            raise ValueError(f"tell() got {fitness.numel()} fitness values; the population has {expected}")
        bad = ~torch.isfinite(fitness)
        self.last_nan_count = int(bad.sum())
        if self.last_nan_count:
            if self.on_nan == "error":
                raise FitnessEvaluationError(
                    f"generation {self.generation}: {self.last_nan_count} NaN/inf fitness values "
                    f"(on_nan = 'error'; allowed policies: worst, error)",
                    generation=self.generation,
                )
            finite = fitness[~bad]
            worst = float(finite.min()) if finite.numel() else 0.0
            fitness = torch.where(bad, torch.full_like(fitness, worst), fitness)
        return fitness

    def expected_population_size(self) -> int:
        return self.population_size

    def member(self, population: Any, index: int) -> Any:
        """A standalone copy of one member of ``population`` (a row for tensor populations)."""
        return population[index].detach().clone()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: nested dicts of tensors and JSON-able values."""
        best = None
        if self.best is not None:
            best = {
                "params": self.best.params,
                "fitness": self.best.fitness,
                "generation": self.best.generation,
            }
        return {"name": self.name, "generation": self.generation, "best": best, "state": self._state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("name", self.name) != self.name:
            raise ValueError(f"checkpoint is for strategy {state.get('name')!r}, not {self.name!r}")
        self.generation = int(state["generation"])
        best = state.get("best")
        self.best = (
            None if best is None else Best(best["params"], float(best["fitness"]), int(best["generation"]))
        )
        self._asked = None
        self._load_state(state["state"])

    # -- what a concrete strategy writes ------------------------------------------------------
    @abstractmethod
    def _ask(self) -> Any: ...

    @abstractmethod
    def _tell(self, population: Any, fitness: torch.Tensor) -> dict[str, float] | None: ...

    @abstractmethod
    def _state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_state(self, state: dict[str, Any]) -> None: ...

    @property
    def center(self) -> torch.Tensor | None:
        """The mean of the search distribution, for strategies that have one."""
        return None
