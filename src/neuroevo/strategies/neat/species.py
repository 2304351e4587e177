"""NEAT's species (paper, section 3.3): speciation by compatibility distance, and stagnation.

Speciation (neat-python's procedure, batched): each species' new representative is the
genome closest to its old one; every other genome joins the species whose representative is
closest, if within ``compatibility_threshold``, or founds a new one. ``speciate_against``
picks which representatives count for joining: the new ones just picked (``"new"``,
neat-python's rule, the default: a second distance pass) or last generation's
(``"previous"``, the paper's rule: one pass). With ``target_num_species`` the threshold moves
by ``compatibility_threshold_step`` toward that many species.

Stagnation: a species' fitness (``species_fitness_func`` of its members') updates its best
and the generation it last improved; species without improvement for ``max_stagnation``
generations die, except the ``species_elitism`` best.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from neuroevo.nn.neat.population import NEATPopulation
from neuroevo.strategies.neat.params import NEATParams
from neuroevo.strategies.neat.reproduction import as_numpy

Distance = Callable[[NEATPopulation, NEATPopulation], torch.Tensor]


def _long(values: Any = ()) -> torch.Tensor:
    return torch.as_tensor(values, dtype=torch.long)


def species_fitness(func: str, fitness: torch.Tensor, member: torch.Tensor, count: int) -> torch.Tensor:
    """Each species' fitness from its members' (``max``, ``min``, ``mean`` or ``median``)."""
    if func == "max":
        return torch.full((count,), -math.inf, dtype=torch.float64).scatter_reduce(0, member, fitness, "amax")
    if func == "min":
        return torch.full((count,), math.inf, dtype=torch.float64).scatter_reduce(0, member, fitness, "amin")
    if func == "mean":
        sums = torch.zeros(count, dtype=torch.float64).index_add(0, member, fitness)
        return sums / torch.bincount(member, minlength=count).clamp(min=1)
    return torch.stack([fitness[member == s].median() for s in range(count)])


@dataclass
class SpeciesSet:
    """The species of the current population: per species (index s) its id, the generation
    it was created and last improved, its best fitness and representative; per member its
    species index. Ids are never reused (``next_id``)."""

    id: torch.Tensor
    created: torch.Tensor
    last_improved: torch.Tensor
    best_fitness: torch.Tensor
    representatives: NEATPopulation | None
    member: torch.Tensor
    next_id: int
    threshold: float

    @classmethod
    def empty(cls, population_size: int, threshold: float, next_id: int = 0) -> SpeciesSet:
        return cls(
            _long(),
            _long(),
            _long(),
            torch.zeros(0, dtype=torch.float64),
            None,
            torch.zeros(population_size, dtype=torch.long),
            next_id,
            threshold,
        )

    def __len__(self) -> int:
        return len(self.id)

    def sizes(self) -> torch.Tensor:
        """Members per species ``[len(self)]``."""
        return torch.bincount(self.member, minlength=len(self.id))

    # -- stagnation ------------------------------------------------------------------------------
    def stagnation(self, p: NEATParams, fitness: torch.Tensor, generation: int) -> torch.Tensor:
        """Update best fitness and last improvement; the mask of species that live on."""
        sf = as_numpy(species_fitness(p.species_fitness_func, fitness, self.member, len(self)))
        improved = sf > self.best_fitness.numpy()
        self.best_fitness = torch.from_numpy(np.where(improved, sf, self.best_fitness.numpy()))
        self.last_improved = torch.from_numpy(np.where(improved, generation, self.last_improved.numpy()))
        stagnant = (generation - self.last_improved.numpy()) >= p.max_stagnation
        if p.species_elitism > 0:
            top = np.argsort(-sf, kind="stable")[: p.species_elitism]
            stagnant[top] = False
        return torch.from_numpy(~stagnant)

    # -- speciation ------------------------------------------------------------------------------
    def speciate(self, p: NEATParams, pop: NEATPopulation, generation: int, distance: Distance) -> None:
        """Assign every genome of ``pop`` to a species (see the module doc). The bookkeeping
        is in NumPy: vectors of the population's length and a few species."""
        size, thr = len(pop), self.threshold
        assign = np.full(size, -1, dtype=np.int64)
        free = np.ones(size, dtype=bool)
        kept: list[int] = []
        rep_rows: list[int] = []
        if self.representatives is not None and len(self.representatives):
            d_old = as_numpy(distance(pop, self.representatives))
            kept, rep_rows = _closest(d_old, free)
            if rep_rows:
                assign[rep_rows] = np.arange(len(kept))
                free[rep_rows] = False
            if kept and free.any():
                if p.speciate_against == "new":
                    d_new = _distance_of(distance, pop, free, pop.select(rep_rows))
                else:
                    d_new = d_old[:, kept]
                which = d_new.argmin(1)
                ok = free & (d_new[np.arange(size), which] < thr)
                assign[ok] = which[ok]
                free &= ~ok
        new_rows: list[int] = []
        while free.any():  # the first unassigned genome founds a species; the close ones join
            j = int(free.argmax())
            join = free & (_distance_of(distance, pop, free, pop.select([j]))[:, 0] < thr)
            join[j] = True
            assign[join] = len(kept) + len(new_rows)
            free &= ~join
            new_rows.append(j)
        self._renumber(kept, len(new_rows), generation)
        self.representatives = pop.select(rep_rows + new_rows)
        self.member = torch.from_numpy(assign)
        self._adjust_threshold(p)

    def _renumber(self, kept: list[int], n_new: int, generation: int) -> None:
        """Keep the species ``kept`` (in that order), then ``n_new`` new ones."""
        at = np.asarray(kept, dtype=np.int64)

        def grow(t: torch.Tensor, new: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.concatenate([t.numpy()[at], new]))

        born = np.full(n_new, generation, dtype=np.int64)
        self.id = grow(self.id, np.arange(self.next_id, self.next_id + n_new, dtype=np.int64))
        self.next_id += n_new
        self.created = grow(self.created, born)
        self.last_improved = grow(self.last_improved, born)
        self.best_fitness = grow(self.best_fitness, np.full(n_new, -math.inf))

    def _adjust_threshold(self, p: NEATParams) -> None:
        if p.target_num_species > 0:
            thr, count = self.threshold, len(self)
            if count < p.target_num_species:
                thr -= p.compatibility_threshold_step
            elif count > p.target_num_species:
                thr += p.compatibility_threshold_step
            self.threshold = max(p.compatibility_threshold_min, thr)

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        assert self.representatives is not None
        return {
            "id": self.id.clone(),
            "created": self.created.clone(),
            "last_improved": self.last_improved.clone(),
            "best_fitness": self.best_fitness.clone(),
            "representatives": self.representatives.state(),
            "member": self.member.clone(),
            "next_id": int(self.next_id),
            "compatibility_threshold": float(self.threshold),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SpeciesSet:
        return cls(
            torch.as_tensor(state["id"]).long(),
            torch.as_tensor(state["created"]).long(),
            torch.as_tensor(state["last_improved"]).long(),
            torch.as_tensor(state["best_fitness"]).double(),
            NEATPopulation.from_state(state["representatives"]),
            torch.as_tensor(state["member"]).long(),
            int(state["next_id"]),
            float(state["compatibility_threshold"]),
        )


def _closest(d_old: np.ndarray, free: np.ndarray) -> tuple[list[int], list[int]]:
    """Old species (in order) and the genome each keeps: its closest one not taken by an
    earlier species (the first of equal distances). In rounds: every remaining species' closest
    free genome at once, accepted up to the first one an earlier species of the round took."""
    kept: list[int] = []
    rows: list[int] = []
    free = free.copy()
    count = d_old.shape[1]
    while len(kept) < count and free.any():
        start = len(kept)
        picks = np.where(free[:, None], d_old[:, start:], math.inf).argmin(0).tolist()
        for s, j in enumerate(picks, start):
            if j in rows[start:]:
                break
            kept.append(s)
            rows.append(j)
        free[rows[start:]] = False
    return kept, rows


def _distance_of(
    distance: Distance, pop: NEATPopulation, rows: np.ndarray, reps: NEATPopulation
) -> np.ndarray:
    """Distances ``[P, len(reps)]``, computed only for the ``rows`` mask (others are inf)."""
    count = int(rows.sum())
    if 2 * count >= len(pop):
        return as_numpy(distance(pop, reps))
    out = np.full((len(pop), len(reps)), math.inf, dtype=np.float64)
    idx = np.flatnonzero(rows)
    out[idx] = as_numpy(distance(pop.select(idx), reps))
    return out


__all__ = ["SpeciesSet", "species_fitness"]
