"""NEAT reproduction (paper, section 3.3): explicit fitness sharing, then parents per species.

Offspring counts: a surviving species' adjusted fitness is its members' mean fitness,
normalised by the population's fitness range (as neat-python); it gets offspring in
proportion, moved ``1 - spawn_smoothing`` of the way from its current size, at least
``min_species_size`` before rounding to exactly ``population_size`` (neat-python lets the
size drift by a few). Parents: within a species the ``elitism`` best are copied unchanged;
each other child has two parents drawn from the best ``survival_threshold`` fraction
(at least two), the fitter one first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuroevo.strategies.neat.params import NEATParams


def as_numpy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a NumPy array (a view for CPU tensors): the bookkeeping of reproduction and
    speciation works on vectors of a few species or members, where NumPy calls are cheaper."""
    return t.detach().cpu().numpy()


def round_to_total(quota: torch.Tensor, total: int) -> torch.Tensor:
    """Integers summing to ``total`` (largest remainder; ties to the lower index)."""
    return torch.from_numpy(_round_to_total(as_numpy(quota).astype(np.float64), total))


def _round_to_total(quota: np.ndarray, total: int) -> np.ndarray:
    base = np.floor(quota).astype(np.int64)
    left = total - int(base.sum())
    if left > 0:
        frac = quota - base
        base[np.argsort(-frac, kind="stable")[:left]] += 1
    elif left < 0:
        base[np.argsort(-base.astype(np.float64), kind="stable")[:-left]] -= 1
    return base


def offspring_counts(
    p: NEATParams, fitness: torch.Tensor, member: torch.Tensor, sizes: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """Children per species ``[S]`` (0 for the dead ones), summing to ``population_size``.

    In NumPy, as ``choose_parents``: a few dozen operations on vectors of a few species or a
    few hundred members, where a tensor call costs several times a NumPy one."""
    fit, mem, size, live = (as_numpy(t) for t in (fitness, member, sizes, alive))
    fit = fit.astype(np.float64)
    count, total_size = len(size), p.population_size
    f_alive = fit[live[mem]]
    fmin, fmax = float(f_alive.min()), float(f_alive.max())
    span = max(1.0, fmax - fmin)
    mean_f = np.bincount(mem, weights=fit, minlength=count) / np.maximum(size, 1)
    adjusted = np.where(live, (mean_f - fmin) / span, 0.0)
    total = float(adjusted.sum())
    if total > 0:
        target = np.maximum(adjusted / total * total_size, float(p.min_species_size))
    else:
        target = np.full(count, float(p.min_species_size))
    raw = p.spawn_smoothing * size.astype(np.float64) + (1 - p.spawn_smoothing) * target
    raw = np.where(live, np.maximum(raw, float(p.min_species_size)), 0.0)
    return torch.from_numpy(_round_to_total(raw / raw.sum() * total_size, total_size))


@dataclass
class Parents:
    """Who makes the next generation: elites (copied) and children's (primary, secondary)."""

    elites: torch.Tensor
    primary: torch.Tensor
    secondary: torch.Tensor


def choose_parents(
    p: NEATParams,
    fitness: torch.Tensor,
    member: torch.Tensor,
    sizes: torch.Tensor,
    spawn: torch.Tensor,
    gen: torch.Generator,
) -> Parents:
    """Elites and parent pairs for ``spawn[s]`` offspring of each species ``s``."""
    fit, mem, size, kids = as_numpy(fitness), as_numpy(member), as_numpy(sizes), as_numpy(spawn)
    count = len(size)
    # by species, then best first (ties: lower index first): two stable sorts, the species'
    # 16-bit one a radix sort (together 0.7 of ``np.lexsort``'s time at P = 10,000)
    order = np.argsort(-fit, kind="stable")
    species_of = mem[order].astype(np.int16 if count < 1 << 15 else np.int64)
    order = order[np.argsort(species_of, kind="stable")]
    offsets = np.cumsum(size) - size
    elites = np.minimum(np.minimum(kids, size), p.elitism)
    children = kids - elites
    pool = np.maximum(np.ceil(p.survival_threshold * size.astype(np.float64)).astype(np.int64), 2)
    pool = np.maximum(np.minimum(pool, size), 1)
    sp_e = np.repeat(np.arange(count), elites)
    rank_e = np.arange(len(sp_e)) - np.repeat(np.cumsum(elites) - elites, elites)
    sp_c = np.repeat(np.arange(count), children)
    k = len(sp_c)
    pool_c = pool[sp_c]
    i1 = (as_numpy(torch.rand(k, generator=gen, dtype=torch.float64)) * pool_c).astype(np.int64)
    i2 = (as_numpy(torch.rand(k, generator=gen, dtype=torch.float64)) * pool_c).astype(np.int64)
    p1 = order[offsets[sp_c] + np.minimum(i1, pool_c - 1)]
    p2 = order[offsets[sp_c] + np.minimum(i2, pool_c - 1)]
    first = fit[p1] > fit[p2]
    out = order[offsets[sp_e] + rank_e], np.where(first, p1, p2), np.where(first, p2, p1)
    return Parents(*(torch.from_numpy(np.ascontiguousarray(x)) for x in out))


__all__ = ["Parents", "choose_parents", "offspring_counts", "round_to_total"]
