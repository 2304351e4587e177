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

Asynchronous mode (``mode = "async"``, Jaderberg et al. 2017, section 3: each member has its
own ready points and exploits the *latest* saved states of the others, with no barrier for the
whole population). The members are split into ``async_groups`` groups (member ``i`` in group
``i % async_groups``) whose ready points are staggered: one generation is one *tick* of
``ready_every / async_groups`` training steps of every member, at the end of which the members
of group ``generation % async_groups`` are ready (``HyperparamPopulation.ready``), each after
``ready_every`` steps of its own (the first time, group ``g`` after ``g + 1`` ticks). The task
saves their states (a snapshot per member, kept apart from the state that goes on training);
only they exploit: truncation or tournament among the members that have a saved state, ranked
by the fitness of their last ready point, copying that saved state (``parents``). The others
train on undisturbed. Every step is keyed as in the synchronous mode, so an asynchronous run
is bit-identical on resume too. PB2 and ``ready_seconds`` are synchronous only. The threaded
driver for members of different speeds (a slow member holds only its own worker) is
``neuroevo.pbt_async.run_async`` (sequential task, Python).

Bounds are always respected (``bounds = "clip"`` or ``"reflect"``; see ``space``). Every draw
comes from ``neuroevo.core.random`` keys (seed, generation, member, purpose), and ``self.state``
(hyperparameters, pending copies, member steps and ages, last ready points, PB2 data, the best
member's index) is checkpointed, so a resumed run is bit-identical. The state stays bounded:
the ready events of every member (generation, member, step, fitness, parent, exploited, age,
old and new values) are *records*, not state (``log_members``): the runtime calls
``write_records(run folder)`` (the ``WritesRecords`` hook) at every checkpoint, which appends
the events since the last call to ``RUN/pbt.jsonl``, and a resume truncates that file to the
checkpoint it continues from. The metrics line keeps a population summary only
(``exploited``, ``hp_NAME`` of the generation's best member). ``write_report(report/)`` reads
``pbt.jsonl`` for the best member's ``best/schedule.json`` and the lineage plots.
"""

from __future__ import annotations

import bisect
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, Field, field_validator, model_validator

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
    mode: Literal["sync", "async"] = Field(
        "sync",
        description="sync: every member is ready at once, each generation | async: staggered ready points, "
        "each ready member exploits the latest saved states (a generation is one tick)",
    )
    async_groups: int = Field(
        4,
        ge=1,
        description="async: groups with staggered ready points; a tick is ready_every / async_groups steps",
    )
    log_members: bool = Field(
        True,
        description="every member's ready event as a line of RUN/pbt.jsonl (lineage, schedule, plots)",
    )

    @field_validator("space")
    @classmethod
    def _nonempty(cls, value: dict[str, HyperparamSpec]) -> dict[str, HyperparamSpec]:
        if not value:
            raise ValueError("empty search space; allowed: at least one [strategy.space.NAME] table")
        return value

    @model_validator(mode="after")
    def _async_mode(self) -> PBTParams:
        if self.mode != "async":
            return self
        if self.explore == "pb2":
            raise ValueError(
                "explore = 'pb2' with mode = 'async'; allowed: explore = 'perturb' (PB2 is sync only)"
            )
        if self.ready_seconds is not None:
            raise ValueError("ready_seconds with mode = 'async'; allowed: ready_every (steps) only")
        if self.async_groups > self.population_size or self.ready_every % self.async_groups:
            raise ValueError(
                f"async_groups = {self.async_groups}; allowed: a divisor of ready_every ({self.ready_every}) "
                f"and at most population_size ({self.population_size})"
            )
        return self

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
        #: ready events not yet written to ``pbt.jsonl`` (records, not state: see ``write_records``)
        self._records: list[dict[str, Any]] = []

    @classmethod
    def contract(cls, params: StrategyParams) -> tuple[PopulationKind, frozenset[Capability]]:
        """Asynchronous mode also needs a task that saves each member at its own ready points."""
        if getattr(params, "mode", "sync") == "async":
            return cls.population_kind, cls.needs | {Capability.READY_POINTS}
        return cls.population_kind, cls.needs

    @classmethod
    def from_params(cls, params: StrategyParams, *, phenotype: Any = None, seed: int = 0, **kw: Any) -> PBT:
        return cls(params=params, seed=seed, **kw)

    # -- ask/tell ---------------------------------------------------------------------------
    def _ask(self) -> HyperparamPopulation:
        state = self.state
        p = self.params
        ready, steps = None, p.ready_every
        if p.mode == "async":
            steps = p.ready_every // p.async_groups
            ready = torch.arange(self.population_size) % p.async_groups == self.generation % p.async_groups
        return HyperparamPopulation(
            self.space,
            state.values.clone(),
            state.parents.clone(),
            steps,
            self.generation,
            seconds=p.ready_seconds,
            ready=ready,
        )

    def member(self, population: HyperparamPopulation, index: int) -> torch.Tensor:
        return population.member(index)

    def check_fitness(self, fitness: torch.Tensor | list[float]) -> torch.Tensor:
        """The base's NaN policy, remembering which members failed (they always copy next)."""
        raw = torch.as_tensor(fitness).detach().to("cpu", torch.float64).reshape(-1)
        self._failed = ~torch.isfinite(raw)
        checked = super().check_fitness(fitness)
        ready = getattr(self._asked, "ready", None)
        if ready is not None:  # async: only the ready members have a ready point (and can be best)
            checked = torch.where(ready, checked, torch.full_like(checked, -math.inf))
        return checked

    def _tell(self, population: HyperparamPopulation, fitness: torch.Tensor) -> dict[str, float]:
        if population.ready is not None:
            return self._tell_async(population, fitness, population.ready)
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
            self._records.extend(
                ready_events(self.space, g, step_now, fitness, src, exploited, state.ages + trained, old, new)
            )
        state.last_ready_step = step_now.clone()
        state.last_ready_fitness = fitness.clone()
        state.ages = torch.where(exploited, 0, state.ages + trained)
        state.member_steps = step_now[src]
        state.start_fitness = fitness[src].clone()
        state.values, state.parents = new, parents
        return stats

    def _tell_async(
        self, population: HyperparamPopulation, fitness: torch.Tensor, ready: torch.Tensor
    ) -> dict[str, float]:
        """The ready points of the ``ready`` members at the end of one tick (asynchronous mode)."""
        g, size, state, p = self.generation, self.population_size, self.state, self.params
        trained = population.trained_steps()
        step_now = state.member_steps + trained
        old = state.values
        latest = torch.where(ready, fitness, state.last_ready_fitness)  # the last ready point's fitness
        last_step = torch.where(ready, step_now, state.last_ready_step)
        failed = ready & self._failed if self._failed.numel() == size else torch.zeros_like(ready)
        parents = self._exploit_async(latest, last_step >= 0, failed, ready)
        exploited = parents >= 0
        src = torch.where(exploited, parents, torch.arange(size))
        new = old.clone()
        if bool(exploited.any()):
            new[exploited] = self._explore(old[parents[exploited]], exploited, step_now, 0)
        if self.best is not None and self.best.generation == g:
            state.best_member = torch.tensor([g, int(torch.argmax(fitness))], dtype=torch.long)
        if p.log_members:
            idx = torch.nonzero(ready).flatten()
            self._records.extend(
                ready_events(
                    self.space,
                    g,
                    step_now[idx],
                    fitness[idx],
                    src[idx],
                    exploited[idx],
                    (state.ages + trained)[idx],
                    old[idx],
                    new[idx],
                    members=idx,
                )
            )
        best_index = int(torch.argmax(latest.nan_to_num(-math.inf)))
        stats: dict[str, float] = {"exploited": float(exploited.sum()), "ready": float(ready.sum())}
        for i, hp in enumerate(self.space.params):
            if hp.bounded:
                stats[f"hp_{hp.name}"] = float(old[best_index, i])
        state.last_ready_step, state.last_ready_fitness = last_step, latest
        state.ages = torch.where(exploited, 0, state.ages + trained)
        state.member_steps = torch.where(exploited, last_step[src], step_now)  # the parent's saved step
        state.start_fitness = torch.where(ready, latest[src], state.start_fitness)
        state.values, state.parents = new, parents
        return stats

    def _exploit_async(
        self, latest: torch.Tensor, saved: torch.Tensor, failed: torch.Tensor, ready: torch.Tensor
    ) -> torch.Tensor:
        """``parents[P]`` of the ready members: the exploit rule among the members with a saved state.

        The rule ranks the members that have reached a ready point by the fitness of their last
        one; of the ready members, those it replaces copy (a member without a saved state is
        never a parent).
        """
        u = nrandom.uniform(self.population_size, self.seed, self.generation, 0, "pbt_exploit").double()
        idx = torch.nonzero(saved).flatten()
        parents = torch.full((self.population_size,), -1, dtype=torch.long)
        if idx.numel() < 2 or self.params.exploit == "none":
            return parents
        sub_failed = failed[idx] | ~torch.isfinite(latest[idx])
        if self.params.exploit == "truncation":
            sub = exploit_rules.truncation(latest[idx], self.params.truncation_fraction, u[idx], sub_failed)
        else:
            sub = exploit_rules.tournament(latest[idx], u[idx], sub_failed)
        chosen = sub >= 0
        parents[idx[chosen]] = idx[sub[chosen]]
        return torch.where(ready, parents, torch.full_like(parents, -1))

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
    def write_records(self, folder: Path) -> Path | None:
        """The ``WritesRecords`` hook: append the ready events since the last call to ``folder/pbt.jsonl``.

        The runtime calls it with the run folder at every checkpoint (and truncates the file to
        the checkpoint on resume), so ``self._records`` holds at most ``checkpoint_every``
        generations of events.
        """
        if not self._records:
            return None
        path = Path(folder) / PBT_RECORDS
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            handle.write("".join(json.dumps(e) + "\n" for e in self._records))
            handle.flush()
        self._records.clear()
        return path

    def events(self, path: str | Path | None = None) -> list[dict[str, Any]]:
        """The ready events: those written to ``path`` (a ``pbt.jsonl``), then those not written yet.

        Each: generation, member, step, fitness, parent (whose saved state the member copies
        next; itself if none), exploited, age, and the ``old`` and ``new`` hyperparameters.
        Needs ``log_members = true``. Without a run folder nothing is written: all are in memory.
        """
        written = read_events(path) if path is not None else []
        return [*written, *self._records]

    def lineage(self, events: list[dict[str, Any]], generation: int | None = None, member: int | None = None):
        """The ready events of one member's ancestry, oldest first (default: the best member's)."""
        if generation is None or member is None:
            generation, member = (int(v) for v in self.state.best_member)
        return lineage(events, self.population_size, generation, member)

    def schedule(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The best member's hyperparameter schedule: one entry per ready interval (``schedule``)."""
        return schedule(self.lineage(events))

    def write_report(self, folder: Path) -> None:
        """``best/schedule.json`` and the lineage plots, from ``RUN/pbt.jsonl``."""
        from neuroevo.strategies.pbt.plots import plot_pbt

        folder = Path(folder)
        run = folder.parent
        events = self.events(run / PBT_RECORDS)
        if not events:
            return
        generation, member = (int(v) for v in self.state.best_member)
        if generation >= 0:
            data = {
                "generation": generation,
                "member": member,
                "ready_every": self.params.ready_every,
                "schedule": self.schedule(events),
            }
            (run / "best").mkdir(parents=True, exist_ok=True)
            _write_text(run / "best" / "schedule.json", json.dumps(data, indent=1))
        plot_pbt(self, events, folder)


#: the records file of a PBT run, in the run folder
PBT_RECORDS = "pbt.jsonl"


def ready_events(
    space: SearchSpace,
    generation: int,
    step: torch.Tensor,
    fitness: torch.Tensor,
    parent: torch.Tensor,
    exploited: torch.Tensor,
    age: torch.Tensor,
    old: torch.Tensor,
    new: torch.Tensor,
    members: torch.Tensor | None = None,
) -> list[dict[str, Any]]:
    """One ``pbt.jsonl`` record per member (row) for its ready point in ``generation``.

    ``members``: the member of each row (default: row ``i`` is member ``i``).
    """
    steps, fits, parents = step.tolist(), fitness.tolist(), parent.tolist()
    flags, ages = exploited.tolist(), age.tolist()
    ids = list(range(len(steps))) if members is None else members.tolist()
    return [  # records of one ready point, not training: a loop over members is fine here
        {
            "generation": int(generation),
            "member": int(ids[i]),
            "step": int(steps[i]),
            "fitness": float(fits[i]),
            "parent": int(parents[i]),
            "exploited": bool(flags[i]),
            "age": int(ages[i]),
            "old": space.row(old[i]),
            "new": space.row(new[i]),
        }
        for i in range(len(steps))
    ]


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """The ready events of a ``pbt.jsonl`` (none if it does not exist; a torn last line is dropped)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for raw in path.read_text().splitlines():
        try:
            out.append(json.loads(raw))
        except json.JSONDecodeError:
            break
    return out


def lineage(events: list[dict[str, Any]], size: int, generation: int, member: int) -> list[dict[str, Any]]:
    """The ready events of ``member``'s ancestry up to its ready point in ``generation``, oldest first.

    Entry ``k`` is the ready event that ended the ``k``-th interval on the way to the given
    one: the member whose weights were trained in it, with the hyperparameters it used
    (``old``). The interval that ends at a member's event starts from the state after its
    previous event: its own saved state, or, if it was exploited there, its parent's latest
    saved state at that generation. Works for both modes (synchronous: ``size`` events per
    generation; asynchronous: the ready members' only).
    """
    del size  # every member's events are found by member, in either mode
    own: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        own.setdefault(int(e["member"]), []).append(e)
    gens = {m: [int(e["generation"]) for e in evs] for m, evs in own.items()}

    def last_at(m: int, g: int) -> int:  # index in own[m] of m's last event at generation <= g
        return bisect.bisect_right(gens.get(m, []), g) - 1

    k = last_at(member, generation)
    if generation < 0 or k < 0:
        return []
    chain, m = [], member
    while k >= 0:  # walk back interval by interval
        e = own[m][k]
        chain.append(e)
        if k == 0:
            break
        prev = own[m][k - 1]
        if prev["exploited"] and int(prev["parent"]) != m:
            m = int(prev["parent"])
            k = last_at(m, int(prev["generation"]))
        else:
            k -= 1
    return chain[::-1]


def schedule(chain: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A lineage's hyperparameter schedule: ``from_step``, ``to_step``, ``member`` and the values.

    Each interval starts from the step of the state its member started from: its lineage
    predecessor's ready point (0 for the first).
    """
    out, start = [], 0
    for e in chain:
        out.append({"from_step": start, "to_step": e["step"], "member": e["member"], **e["old"]})
        start = e["step"]
    return out


def best_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The event ``PBT.best`` comes from: the first, in (generation, member) order, of the highest fitness."""
    best = None
    for e in events:
        if e["fitness"] == e["fitness"] and (best is None or e["fitness"] > best["fitness"]):
            best = e
    return best


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
