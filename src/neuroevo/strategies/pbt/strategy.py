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

With ``ready_seconds`` an interval ends after that much training time instead (the task reports
the steps taken, ``HyperparamPopulation.trained``); such a run is not bit-identical on resume.
The asynchronous mode is ``neuroevo.pbt_async.run_async``.

Bounds are always respected (``bounds = "clip"`` or ``"reflect"``; see ``space``). Every draw
comes from ``neuroevo.core.random`` keys (seed, generation, member, purpose), and ``self.state``
(hyperparameters, pending copies, member steps and ages, last ready points, PB2 data, the best
member's index) is checkpointed, so a resumed run is bit-identical. The state stays bounded:
the ready events of every member (step, fitness, parent, exploited, age, values) go to the
metrics line as ``pbt/<member>/<field>`` (``log_members``), and ``write_report(report/)``
turns them into ``pbt.jsonl``, the best member's ``best/schedule.json`` and the lineage plots.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field, field_validator

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.strategies.base import Strategy, StrategyParams
from neuroevo.strategies.pbt import exploit as exploit_rules
from neuroevo.strategies.pbt import pb2
from neuroevo.strategies.pbt.population import HyperparamPopulation
from neuroevo.strategies.pbt.space import Bounds, HyperparamSpec, SearchSpace


def _default_space() -> dict[str, HyperparamSpec]:
    return {"lr": HyperparamSpec(type="continuous", low=1e-4, high=1e-1, log=True)}


class PBTParams(StrategyParams):
    population_size: int = Field(16, ge=2, description="members trained together")
    ready_every: int = Field(100, ge=1, description="training steps of each member between ready points")
    ready_seconds: float | None = Field(
        None,
        gt=0,
        description="if set: a ready point every N seconds of training instead (a resume is then not "
        "bit-identical: the step counts depend on the clock)",
    )
    space: dict[str, HyperparamSpec] = Field(
        default_factory=_default_space,
        description="hyperparameters, one table strategy.space.NAME each: type, low, high, log | choices",
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
    log_members: bool = Field(
        True,
        description="every member's ready event in metrics.jsonl (pbt/<i>/...): pbt.jsonl, lineage plots",
    )

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


@dataclass
class PBTState:
    """Everything PBT changes while it runs (checkpointed; bounded in the run's length)."""

    values: torch.Tensor  # [P, H] float64: hyperparameters of the next interval
    parents: torch.Tensor  # [P] long: whose saved state each member copies first (-1: its own)
    member_steps: torch.Tensor  # [P] long: training steps of the state each member starts from
    ages: torch.Tensor  # [P] long: steps since the member last copied a state
    start_fitness: torch.Tensor  # [P] float64: fitness of the state each member starts from
    last_ready_step: torch.Tensor  # [P] long
    last_ready_fitness: torch.Tensor  # [P] float64
    pb2_t: torch.Tensor  # PB2 data (the last ``pb2_window`` intervals): step, unit x, fitness change
    pb2_x: torch.Tensor
    pb2_y: torch.Tensor
    pb2_generation: torch.Tensor
    best_member: torch.Tensor  # [2] long: (generation, member) of ``best``; -1 before the first


class PBT(Strategy):
    """Synchronous PBT: truncation or tournament exploit, perturb or PB2 explore."""

    name = "pbt"
    Params = PBTParams
    params: PBTParams
    state: PBTState
    population_kind: ClassVar[PopulationKind] = PopulationKind.HYPERPARAMS
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.TRAINING})

    def __init__(
        self,
        population_size: int | None = None,
        *,
        params: BaseModel | dict[str, Any] | None = None,
        seed: int = 0,
        device: Any = None,
        **keys: Any,
    ):
        """``keys`` are ``PBTParams`` fields (space, ready_every, exploit, ...), validated once."""
        if isinstance(keys.get("space"), SearchSpace):
            keys["space"] = {h.name: h.spec for h in keys["space"].params}
        p = self.params = self.resolve_params(params, population_size, keys)
        self.space = SearchSpace(p.space)
        super().__init__(len(self.space), p.population_size, seed=seed, on_nan=p.on_nan)
        size, d = self.population_size, len(self.space.bounded_columns)
        u = nrandom.uniform((size, len(self.space)), self.seed, 0, 0, "pbt_init")
        self.state = PBTState(
            values=self.space.sample(u.double()),
            parents=torch.full((size,), -1, dtype=torch.long),
            member_steps=torch.zeros(size, dtype=torch.long),
            ages=torch.zeros(size, dtype=torch.long),
            start_fitness=torch.full((size,), float("nan"), dtype=torch.float64),
            last_ready_step=torch.full((size,), -1, dtype=torch.long),
            last_ready_fitness=torch.full((size,), float("nan"), dtype=torch.float64),
            pb2_t=torch.zeros(0, dtype=torch.float64),
            pb2_x=torch.zeros(0, d, dtype=torch.float64),
            pb2_y=torch.zeros(0, dtype=torch.float64),
            pb2_generation=torch.zeros(0, dtype=torch.long),
            best_member=torch.full((2,), -1, dtype=torch.long),
        )
        self._failed = torch.zeros(size, dtype=torch.bool)

    @classmethod
    def from_params(cls, params: StrategyParams, *, phenotype: Any = None, seed: int = 0, **kw: Any) -> PBT:
        return cls(params=params, seed=seed, **kw)

    # -- ask/tell ---------------------------------------------------------------------------
    def _ask(self) -> HyperparamPopulation:
        state = self.state
        p = self.params
        return HyperparamPopulation(
            self.space,
            state.values.clone(),
            state.parents.clone(),
            p.ready_every,
            self.generation,
            seconds=p.ready_seconds,
        )

    def member(self, population: HyperparamPopulation, index: int) -> torch.Tensor:
        return population.member(index)

    def check_fitness(self, fitness: torch.Tensor | list[float]) -> torch.Tensor:
        """The base's NaN policy, remembering which members failed (they always copy next)."""
        raw = torch.as_tensor(fitness).detach().to("cpu", torch.float64).reshape(-1)
        self._failed = ~torch.isfinite(raw)
        return super().check_fitness(fitness)

    def _tell(self, population: HyperparamPopulation, fitness: torch.Tensor) -> dict[str, float]:
        g, size, state, p = self.generation, self.population_size, self.state, self.params
        trained = population.trained_steps()
        step_now = state.member_steps + trained
        old = state.values
        self._record_pb2(step_now, old, fitness)
        parents = self._exploit(fitness)
        exploited = parents >= 0
        src = torch.where(exploited, parents, torch.arange(size))
        new = old.clone()
        if bool(exploited.any()):
            new[exploited] = self._explore(old[parents[exploited]], exploited, step_now, int(trained.max()))
        best_index = int(torch.argmax(fitness))
        if self.best is not None and self.best.generation == g:
            state.best_member = torch.tensor([g, best_index], dtype=torch.long)
        stats: dict[str, float] = {"exploited": float(exploited.sum())}
        for i, hp in enumerate(self.space.params):
            if hp.bounded:
                stats[f"hp_{hp.name}"] = float(old[best_index, i])
        if p.log_members:
            stats.update(
                _member_lines(self.space, step_now, fitness, src, exploited, state.ages + trained, old)
            )
        state.last_ready_step = step_now.clone()
        state.last_ready_fitness = fitness.clone()
        state.ages = torch.where(exploited, 0, state.ages + trained)
        state.member_steps = step_now[src]
        state.start_fitness = fitness[src].clone()
        state.values, state.parents = new, parents
        return stats

    def _exploit(self, fitness: torch.Tensor) -> torch.Tensor:
        u = nrandom.uniform(self.population_size, self.seed, self.generation, 0, "pbt_exploit").double()
        failed = self._failed if self._failed.numel() == fitness.numel() else torch.zeros_like(fitness).bool()
        if self.params.exploit == "truncation":
            return exploit_rules.truncation(fitness, self.params.truncation_fraction, u, failed)
        if self.params.exploit == "tournament":
            return exploit_rules.tournament(fitness, u, failed)
        return exploit_rules.no_exploit(fitness)

    def _explore(
        self, start: torch.Tensor, exploited: torch.Tensor, step_now: torch.Tensor, interval: int
    ) -> torch.Tensor:
        """New values for the exploited members, starting from their parents' ``start[k, H]``.

        ``interval``: the steps of the last ready interval (PB2 predicts one more of them).
        """
        p, state, h = self.params, self.state, len(self.space)
        draws = nrandom.uniform((self.population_size, 3, h), self.seed, self.generation, 0, "pbt_explore")
        draws = draws.double()[exploited]
        factors = torch.tensor(p.perturb_factors, dtype=torch.float64)
        pick = (draws[:, 0] * len(factors)).long().clamp(0, len(factors) - 1)
        resample = draws[:, 1] < p.resample_probability
        out = self.space.perturb(start, factors[pick], resample, draws[:, 2], p.bounds)
        columns = self.space.bounded_columns
        if p.explore == "pb2" and columns and state.pb2_y.numel() >= 2:
            k = start.shape[0]
            cand = nrandom.uniform(
                (self.population_size, p.pb2_candidates, len(columns)),
                self.seed,
                self.generation,
                0,
                "pb2_candidates",
            ).double()[exploited]
            unit = pb2.select(
                state.pb2_t,
                state.pb2_x,
                state.pb2_y,
                float(step_now.max() + interval),
                self.space.to_unit(start, columns),
                cand.reshape(k, -1, len(columns)),
                p.pb2_kappa,
            )
            out[:, columns] = self.space.from_unit(unit, columns)
        return out

    def _record_pb2(self, step_now: torch.Tensor, values: torch.Tensor, fitness: torch.Tensor) -> None:
        """PB2's data: (step, unit hyperparameters, fitness change over the interval), last ``pb2_window``."""
        state = self.state
        if self.params.explore != "pb2" or not self.space.bounded_columns:
            return
        has_start = torch.isfinite(state.start_fitness)
        if bool(has_start.any()):
            x = self.space.to_unit(values, self.space.bounded_columns)[has_start]
            state.pb2_t = torch.cat([state.pb2_t, step_now[has_start].double()])
            state.pb2_x = torch.cat([state.pb2_x, x])
            state.pb2_y = torch.cat([state.pb2_y, (fitness - state.start_fitness)[has_start]])
            gens = torch.full((int(has_start.sum()),), self.generation, dtype=torch.long)
            state.pb2_generation = torch.cat([state.pb2_generation, gens])
        keep = state.pb2_generation > self.generation - self.params.pb2_window
        state.pb2_t, state.pb2_x = state.pb2_t[keep], state.pb2_x[keep]
        state.pb2_y, state.pb2_generation = state.pb2_y[keep], state.pb2_generation[keep]

    # -- ready events, lineage and report -------------------------------------------------------
    def events(self, metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The ready events (one per member and generation) from the run's metrics lines.

        Each: generation, member, step, fitness, parent (whose saved state the member copies
        next; itself if none), exploited, age, and the ``old`` and ``new`` hyperparameters.
        Needs ``log_members = true``. The last generation's ``new`` values are the current ones.
        """
        size, out = self.population_size, []
        lines = [m for m in metrics if "pbt/0/parent" in m]
        for row, line in enumerate(lines):
            for i in range(size):
                old = self.space.row(torch.tensor([line[f"pbt/{i}/{n}"] for n in self.space.names]))
                if row + 1 < len(lines):
                    nxt = lines[row + 1]
                    new = self.space.row(torch.tensor([nxt[f"pbt/{i}/{n}"] for n in self.space.names]))
                else:
                    new = self.space.row(self.state.values[i])
                out.append(
                    {
                        "generation": int(line["generation"]),
                        "member": i,
                        "step": int(line[f"pbt/{i}/step"]),
                        "fitness": float(line[f"pbt/{i}/fitness"]),
                        "parent": int(line[f"pbt/{i}/parent"]),
                        "exploited": bool(line[f"pbt/{i}/exploited"]),
                        "age": int(line[f"pbt/{i}/age"]),
                        "old": old,
                        "new": new,
                    }
                )
        return out

    def lineage(self, events: list[dict[str, Any]], generation: int | None = None, member: int | None = None):
        """The ready events of one member's ancestry, oldest first (default: the best member's).

        Entry ``g`` is the member whose weights were trained in interval ``g`` on the way to the
        given one, with the hyperparameters it used (``old``).
        """
        if generation is None or member is None:
            generation, member = (int(v) for v in self.state.best_member)
        if generation < 0 or not events:
            return []
        size, first = self.population_size, int(events[0]["generation"])
        chain, current = [], member
        for g in range(generation, first - 1, -1):
            chain.append(events[(g - first) * size + current])
            if g > first:  # who did `current` copy at the start of interval g?
                current = events[(g - 1 - first) * size + current]["parent"]
        return chain[::-1]

    def schedule(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The best member's hyperparameter schedule: one entry per ready interval.

        Each interval starts from the step of the state its member started from: its lineage
        predecessor's ready point (0 for the first).
        """
        out, start = [], 0
        for e in self.lineage(events):
            out.append({"from_step": start, "to_step": e["step"], "member": e["member"], **e["old"]})
            start = e["step"]
        return out

    def write_report(self, folder: Path) -> None:
        """``pbt.jsonl``, ``best/schedule.json`` and the lineage plots, from the run's metrics lines."""
        from neuroevo.strategies.pbt.plots import plot_pbt

        folder = Path(folder)
        run = folder.parent
        if not (run / "metrics.jsonl").is_file():
            return
        metrics = []
        for raw in (run / "metrics.jsonl").read_text().splitlines():
            try:
                metrics.append(json.loads(raw))
            except json.JSONDecodeError:
                break
        events = self.events(metrics)
        if not events:
            return
        _write_text(run / "pbt.jsonl", "".join(json.dumps(e) + "\n" for e in events))
        generation, member = (int(v) for v in self.state.best_member)
        if generation >= 0:
            schedule = {
                "generation": generation,
                "member": member,
                "ready_every": self.params.ready_every,
                "schedule": self.schedule(events),
            }
            (run / "best").mkdir(parents=True, exist_ok=True)
            _write_text(run / "best" / "schedule.json", json.dumps(schedule, indent=1))
        plot_pbt(self, events, folder)


def _member_lines(
    space: SearchSpace,
    step: torch.Tensor,
    fitness: torch.Tensor,
    parent: torch.Tensor,
    exploited: torch.Tensor,
    age: torch.Tensor,
    values: torch.Tensor,
) -> dict[str, float]:
    """The ready event of every member as metrics fields ``pbt/<member>/<field>`` (floats)."""
    out: dict[str, float] = {}
    for i in range(step.numel()):  # a metrics line, not training
        out[f"pbt/{i}/step"] = float(step[i])
        out[f"pbt/{i}/fitness"] = float(fitness[i])
        out[f"pbt/{i}/parent"] = float(parent[i])
        out[f"pbt/{i}/exploited"] = float(exploited[i])
        out[f"pbt/{i}/age"] = float(age[i])
        for j, name in enumerate(space.names):
            out[f"pbt/{i}/{name}"] = float(values[i, j])
    return out


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
