"""Population Based Training (Jaderberg et al. 2017, "Population Based Training of Neural Networks").

A strategy over *members*, each a model trained by gradient descent with its own
hyperparameters. Synchronous (generational) mode: one generation is one ready interval.

1. ``ask()`` hands out a ``HyperparamPopulation``: every member's hyperparameters for the next
   ``ready_every`` training steps, and for members exploited at the last ready point the index
   of the member whose saved state they copy first.
2. The task copies those states (weights, optimiser state, step count), trains every member
   ``ready_every`` steps and returns its fitness (a validation metric).
3. ``tell(fitness)`` is the ready event of every member: **exploit** (``truncation``: the bottom
   ``truncation_fraction`` copy a top-fraction member; ``tournament``: binary tournament;
   ``none``: independent runs) and, for the members that copy, **explore** (``perturb``: each
   hyperparameter is resampled from the prior with ``resample_probability``, else multiplied by
   a factor drawn from ``perturb_factors``; ``pb2``: PB2's GP bandit for the continuous and
   integer ones, see ``neuroevo.strategies.pbt.pb2``). The new values start from the parent's.

Bounds are always respected (``bounds = "clip"`` or ``"reflect"``; see ``space``). Every draw
comes from ``neuroevo.core.random`` keys (seed, generation, member, purpose), and the state
(hyperparameters, pending copies, member steps and ages, last ready points, PB2 data, the ready
events) is in ``state_dict``, so a resumed run is bit-identical.

Each ready event (member, step, fitness, parent, old and new values) is kept in ``events``;
``write_report(report/)`` writes them to ``pbt.jsonl`` in the run folder, the best member's
schedule to ``best/schedule.json`` and the lineage plots to ``report/``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, ValidationError, field_validator

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams
from neuroevo.strategies.pbt import exploit as exploit_rules
from neuroevo.strategies.pbt import pb2
from neuroevo.strategies.pbt.population import HyperparamPopulation
from neuroevo.strategies.pbt.space import Bounds, HyperparamSpec, SearchSpace


def _default_space() -> dict[str, HyperparamSpec]:
    return {"lr": HyperparamSpec(type="continuous", low=1e-4, high=1e-1, log=True)}


class PBTParams(StrategyParams):
    population_size: int = Field(16, ge=2, description="members trained together")
    ready_every: int = Field(100, ge=1, description="training steps of each member between ready points")
    space: dict[str, HyperparamSpec] = Field(
        default_factory=_default_space,
        description="hyperparameters: [strategy.space.NAME] type, low, high, log | choices",
    )
    exploit: Literal["truncation", "tournament", "none"] = Field(
        "truncation", description="truncation | tournament (binary) | none (independent runs)"
    )
    truncation_fraction: float = Field(
        0.25, gt=0, le=0.5, description="bottom fraction that copies the top fraction"
    )
    explore: Literal["perturb", "pb2"] = Field("perturb", description="perturb | pb2 (GP bandit)")
    perturb_factors: list[float] = Field(
        default_factory=lambda: [0.8, 1.2], description="a perturbed value is multiplied by one of these"
    )
    resample_probability: float = Field(
        0.25, ge=0, le=1, description="chance that a hyperparameter is redrawn from its prior"
    )
    bounds: Bounds = Field("clip", description="clip | reflect: how an out-of-bounds value is brought back")
    pb2_window: int = Field(8, ge=1, description="PB2: ready intervals of data the GP sees")
    pb2_kappa: float = Field(2.0, ge=0, description="PB2: UCB exploration weight (mu + kappa * sigma)")
    pb2_candidates: int = Field(256, ge=1, description="PB2: random candidates per exploited member")

    @field_validator("space")
    @classmethod
    def _nonempty(cls, value: dict[str, HyperparamSpec]) -> dict[str, HyperparamSpec]:
        if not value:
            raise ValueError("empty search space; allowed: at least one [strategy.space.NAME] table")
        return value

    @field_validator("perturb_factors")
    @classmethod
    def _positive(cls, value: list[float]) -> list[float]:
        if not value or any(not (f > 0) or f == 1 for f in value):
            raise ValueError("allowed: a non-empty list of factors > 0 and != 1")
        return value


class PBT(Strategy):
    """Synchronous PBT: truncation or tournament exploit, perturb or PB2 explore."""

    name = "pbt"
    Params = PBTParams
    population_kind: ClassVar[PopulationKind] = PopulationKind.HYPERPARAMS

    def __init__(
        self,
        space: SearchSpace | dict[str, Any],
        population_size: int = 16,
        *,
        ready_every: int = 100,
        exploit: str = "truncation",
        truncation_fraction: float = 0.25,
        explore: str = "perturb",
        perturb_factors: tuple[float, ...] | list[float] = (0.8, 1.2),
        resample_probability: float = 0.25,
        bounds: Bounds = "clip",
        pb2_window: int = 8,
        pb2_kappa: float = 2.0,
        pb2_candidates: int = 256,
        seed: int = 0,
        on_nan: OnNan = "worst",
        device: Any = None,
    ):
        params = _validated(
            population_size=population_size,
            ready_every=ready_every,
            space=_space_dict(space),
            exploit=exploit,
            truncation_fraction=truncation_fraction,
            explore=explore,
            perturb_factors=list(perturb_factors),
            resample_probability=resample_probability,
            bounds=bounds,
            pb2_window=pb2_window,
            pb2_kappa=pb2_kappa,
            pb2_candidates=pb2_candidates,
            on_nan=on_nan,
        )
        self.space = space if isinstance(space, SearchSpace) else SearchSpace(params.space)
        super().__init__(len(self.space), params.population_size, seed=seed, on_nan=on_nan)
        self.p = params
        size = self.population_size
        u = nrandom.uniform((size, len(self.space)), self.seed, 0, 0, "pbt_init")
        self.values = self.space.sample(u.double())
        self.parents = torch.full((size,), -1, dtype=torch.long)
        self.member_steps = torch.zeros(size, dtype=torch.long)  # steps of the state each member starts from
        self.ages = torch.zeros(size, dtype=torch.long)  # steps since the member last copied a state
        self.start_fitness = torch.full((size,), float("nan"), dtype=torch.float64)
        self.last_ready_step = torch.full((size,), -1, dtype=torch.long)
        self.last_ready_fitness = torch.full((size,), float("nan"), dtype=torch.float64)
        d = len(self.space.bounded_columns)
        self.pb2_t = torch.zeros(0, dtype=torch.float64)
        self.pb2_x = torch.zeros(0, d, dtype=torch.float64)
        self.pb2_y = torch.zeros(0, dtype=torch.float64)
        self.pb2_generation = torch.zeros(0, dtype=torch.long)
        self.events: list[dict[str, Any]] = []
        self.best_member: list[int] | None = None  # [generation, member] of ``best``

    @classmethod
    def from_params(cls, params: StrategyParams, *, phenotype: Any = None, seed: int = 0, **kw: Any) -> PBT:
        data = params.model_dump()
        space = SearchSpace(params.space)
        data.pop("space")
        kw.pop("device", None)
        return cls(space, seed=seed, **data, **kw)

    # -- ask/tell ---------------------------------------------------------------------------
    def _ask(self) -> HyperparamPopulation:
        return HyperparamPopulation(
            self.space, self.values.clone(), self.parents.clone(), self.p.ready_every, self.generation
        )

    def member(self, population: HyperparamPopulation, index: int) -> torch.Tensor:
        return population.member(index)

    def _tell(self, population: HyperparamPopulation, fitness: torch.Tensor) -> dict[str, float]:
        g, size = self.generation, self.population_size
        step_now = self.member_steps + self.p.ready_every
        old = self.values
        self._record_pb2(step_now, old, fitness)
        parents = self._exploit(fitness)
        exploited = parents >= 0
        src = torch.where(exploited, parents, torch.arange(size))
        new = old.clone()
        if bool(exploited.any()):
            new[exploited] = self._explore(old[parents[exploited]], exploited, step_now)
        best_index = int(torch.argmax(fitness))
        if self.best is not None and self.best.generation == g:
            self.best_member = [g, best_index]
        for i in range(size):  # bookkeeping of the ready events (JSON lines), not training
            self.events.append(
                {
                    "generation": g,
                    "member": i,
                    "step": int(step_now[i]),
                    "fitness": float(fitness[i]),
                    "parent": int(src[i]),
                    "exploited": bool(exploited[i]),
                    "age": int(self.ages[i] + self.p.ready_every),
                    "old": self.space.row(old[i]),
                    "new": self.space.row(new[i]),
                }
            )
        self.last_ready_step = step_now.clone()
        self.last_ready_fitness = fitness.clone()
        self.ages = torch.where(exploited, 0, self.ages + self.p.ready_every)
        self.member_steps = step_now[src]
        self.start_fitness = fitness[src].clone()
        self.values, self.parents = new, parents
        stats: dict[str, float] = {"exploited": float(exploited.sum())}
        for i, hp in enumerate(self.space.params):
            if hp.bounded:
                stats[f"hp_{hp.name}"] = float(old[best_index, i])
        return stats

    def check_fitness(self, fitness: torch.Tensor | list[float]) -> torch.Tensor:
        """The base's NaN policy, remembering which members failed (they always copy next)."""
        raw = torch.as_tensor(fitness).detach().to("cpu", torch.float64).reshape(-1)
        self._failed = ~torch.isfinite(raw)
        return super().check_fitness(fitness)

    def _exploit(self, fitness: torch.Tensor) -> torch.Tensor:
        u = nrandom.uniform(self.population_size, self.seed, self.generation, 0, "pbt_exploit").double()
        failed = getattr(self, "_failed", None)
        if failed is None or failed.numel() != fitness.numel():
            failed = torch.zeros(fitness.numel(), dtype=torch.bool)
        if self.p.exploit == "truncation":
            return exploit_rules.truncation(fitness, self.p.truncation_fraction, u, failed)
        if self.p.exploit == "tournament":
            return exploit_rules.tournament(fitness, u, failed)
        return exploit_rules.no_exploit(fitness)

    def _explore(self, start: torch.Tensor, exploited: torch.Tensor, step_now: torch.Tensor) -> torch.Tensor:
        """New values for the exploited members, starting from their parents' ``start[k, H]``."""
        h = len(self.space)
        draws = nrandom.uniform((self.population_size, 3, h), self.seed, self.generation, 0, "pbt_explore")
        draws = draws.double()[exploited]
        factors = torch.tensor(self.p.perturb_factors, dtype=torch.float64)
        pick = (draws[:, 0] * len(factors)).long().clamp(0, len(factors) - 1)
        resample = draws[:, 1] < self.p.resample_probability
        out = self.space.perturb(start, factors[pick], resample, draws[:, 2], self.p.bounds)
        columns = self.space.bounded_columns
        if self.p.explore == "pb2" and columns and self.pb2_y.numel() >= 2:
            k = start.shape[0]
            cand = nrandom.uniform(
                (self.population_size, self.p.pb2_candidates, len(columns)),
                self.seed,
                self.generation,
                0,
                "pb2_candidates",
            ).double()[exploited]
            unit = pb2.select(
                self.pb2_t,
                self.pb2_x,
                self.pb2_y,
                float(step_now.max() + self.p.ready_every),
                self.space.to_unit(start, columns),
                cand.reshape(k, -1, len(columns)),
                self.p.pb2_kappa,
            )
            out[:, columns] = self.space.from_unit(unit, columns)
        return out

    def _record_pb2(self, step_now: torch.Tensor, values: torch.Tensor, fitness: torch.Tensor) -> None:
        """PB2's data: (step, unit hyperparameters, fitness change over the interval), last ``pb2_window``."""
        if self.p.explore != "pb2" or not self.space.bounded_columns:
            return
        has_start = torch.isfinite(self.start_fitness)
        if bool(has_start.any()):
            x = self.space.to_unit(values, self.space.bounded_columns)[has_start]
            self.pb2_t = torch.cat([self.pb2_t, step_now[has_start].double()])
            self.pb2_x = torch.cat([self.pb2_x, x])
            self.pb2_y = torch.cat([self.pb2_y, (fitness - self.start_fitness)[has_start]])
            gens = torch.full((int(has_start.sum()),), self.generation, dtype=torch.long)
            self.pb2_generation = torch.cat([self.pb2_generation, gens])
        keep = self.pb2_generation > self.generation - self.p.pb2_window
        self.pb2_t, self.pb2_x = self.pb2_t[keep], self.pb2_x[keep]
        self.pb2_y, self.pb2_generation = self.pb2_y[keep], self.pb2_generation[keep]

    # -- state -------------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "values": self.values.clone(),
            "parents": self.parents.clone(),
            "member_steps": self.member_steps.clone(),
            "ages": self.ages.clone(),
            "start_fitness": self.start_fitness.clone(),
            "last_ready_step": self.last_ready_step.clone(),
            "last_ready_fitness": self.last_ready_fitness.clone(),
            "pb2": {
                "t": self.pb2_t.clone(),
                "x": self.pb2_x.clone(),
                "y": self.pb2_y.clone(),
                "generation": self.pb2_generation.clone(),
            },
            "events": json.dumps(self.events),
            "best_member": self.best_member,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.values = state["values"].clone().double()
        self.parents = state["parents"].clone().long()
        self.member_steps = state["member_steps"].clone().long()
        self.ages = state["ages"].clone().long()
        self.start_fitness = state["start_fitness"].clone().double()
        self.last_ready_step = state["last_ready_step"].clone().long()
        self.last_ready_fitness = state["last_ready_fitness"].clone().double()
        pb = state["pb2"]
        self.pb2_t, self.pb2_x = pb["t"].clone().double(), pb["x"].clone().double()
        self.pb2_y, self.pb2_generation = pb["y"].clone().double(), pb["generation"].clone().long()
        self.events = json.loads(state["events"])
        self.best_member = None if state["best_member"] is None else list(state["best_member"])

    # -- lineage and report -------------------------------------------------------------------
    def lineage(self, generation: int | None = None, member: int | None = None) -> list[dict[str, Any]]:
        """The ready events of one member's ancestry, oldest first (default: the best member's).

        Entry ``g`` is the member whose weights were trained in interval ``g`` on the way to the
        given one, with the hyperparameters it used (``old``).
        """
        if generation is None or member is None:
            if self.best_member is None:
                return []
            generation, member = self.best_member
        size = self.population_size
        chain = []
        current = member
        for g in range(generation, -1, -1):
            event = self.events[g * size + current]
            chain.append(event)
            if g > 0:  # who did `current` copy at the start of interval g?
                current = self.events[(g - 1) * size + current]["parent"]
        return chain[::-1]

    def best_schedule(self) -> list[dict[str, Any]]:
        """The best member's hyperparameter schedule: one entry per ready interval."""
        out = []
        for e in self.lineage():
            start = e["step"] - self.p.ready_every
            out.append({"from_step": start, "to_step": e["step"], "member": e["member"], **e["old"]})
        return out

    def write_report(self, folder: Path) -> None:
        """``pbt.jsonl`` (one line per ready event), ``best/schedule.json`` and the lineage plots."""
        from neuroevo.strategies.pbt.plots import plot_pbt

        folder = Path(folder)
        run = folder.parent
        _write_text(run / "pbt.jsonl", "".join(json.dumps(e) + "\n" for e in self.events))
        if self.best_member is not None:
            schedule = {
                "generation": self.best_member[0],
                "member": self.best_member[1],
                "ready_every": self.p.ready_every,
                "schedule": self.best_schedule(),
            }
            (run / "best").mkdir(parents=True, exist_ok=True)
            _write_text(run / "best" / "schedule.json", json.dumps(schedule, indent=1))
        if self.events:
            plot_pbt(self, folder)


def _validated(**values: Any) -> PBTParams:
    """``PBTParams`` from Python arguments; a bad one is a one-line ConfigError naming the key."""
    try:
        return PBTParams(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        key = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(f"strategy.{key} = {error.get('input')!r}: {message}") from None


def _space_dict(space: SearchSpace | dict[str, Any]) -> dict[str, HyperparamSpec]:
    if isinstance(space, SearchSpace):
        return {p.name: p.spec for p in space.params}
    return {p.name: p.spec for p in SearchSpace(space).params}


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
