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

import torch

from neuroevo.strategies.neat.params import NEATParams


def round_to_total(quota: torch.Tensor, total: int) -> torch.Tensor:
    """Integers summing to ``total`` (largest remainder; ties to the lower index)."""
    base = torch.floor(quota).long()
    left = total - int(base.sum())
    if left > 0:
        frac = quota - base.double()
        order = torch.argsort(-frac, stable=True)[:left]
        base[order] += 1
    elif left < 0:
        order = torch.argsort(-base.double(), stable=True)[:-left]
        base[order] -= 1
    return base


def offspring_counts(
    p: NEATParams, fitness: torch.Tensor, member: torch.Tensor, sizes: torch.Tensor, alive: torch.Tensor
) -> torch.Tensor:
    """Children per species ``[S]`` (0 for the dead ones), summing to ``population_size``."""
    count, total_size = len(sizes), p.population_size
    f_alive = fitness[alive[member]]
    fmin, fmax = float(f_alive.min()), float(f_alive.max())
    span = max(1.0, fmax - fmin)
    mean_f = torch.zeros(count, dtype=torch.float64).index_add(0, member, fitness) / sizes.clamp(min=1)
    adjusted = torch.where(alive, (mean_f - fmin) / span, torch.zeros_like(mean_f))
    total = float(adjusted.sum())
    if total > 0:
        target = torch.clamp(adjusted / total * total_size, min=float(p.min_species_size))
    else:
        target = torch.full((count,), float(p.min_species_size), dtype=torch.float64)
    raw = p.spawn_smoothing * sizes.double() + (1 - p.spawn_smoothing) * target
    raw = torch.where(alive, raw.clamp(min=float(p.min_species_size)), torch.zeros_like(raw))
    return round_to_total(raw / raw.sum() * total_size, total_size)


def descending(values: torch.Tensor) -> torch.Tensor:
    """``argsort(-values, stable=True)`` for float64 ``values`` without NaN, through int64 keys
    in the same order (an integer sort is several times faster than a float one on the CPU)."""
    if len(values) < 1024:  # small: fewer tensor calls
        return torch.argsort(-values, stable=True)
    bits = (values.double() + 0.0).view(torch.int64)  # + 0.0: -0.0 ties with 0.0, as a float sort
    key = torch.where(bits < 0, bits ^ 0x7FFFFFFFFFFFFFFF, bits)  # negatives: order reversed
    return torch.argsort(key.bitwise_not_(), stable=True)  # ~key is strictly decreasing in key


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
    count = len(sizes)
    by_fit = descending(fitness)
    order = by_fit[torch.argsort(member[by_fit], stable=True)]  # by species, then best first
    offsets = torch.cumsum(sizes, 0) - sizes
    elites = torch.minimum(torch.minimum(spawn, sizes), torch.full_like(spawn, p.elitism))
    children = spawn - elites
    pool = torch.clamp(torch.ceil(p.survival_threshold * sizes.double()).long(), min=2)
    pool = torch.minimum(pool, sizes).clamp(min=1)
    sp_e = torch.repeat_interleave(torch.arange(count), elites)
    rank_e = torch.arange(len(sp_e)) - torch.repeat_interleave(torch.cumsum(elites, 0) - elites, elites)
    sp_c = torch.repeat_interleave(torch.arange(count), children)
    k = len(sp_c)
    i1 = (torch.rand(k, generator=gen, dtype=torch.float64) * pool[sp_c]).long()
    i2 = (torch.rand(k, generator=gen, dtype=torch.float64) * pool[sp_c]).long()
    p1 = order[offsets[sp_c] + torch.minimum(i1, pool[sp_c] - 1)]
    p2 = order[offsets[sp_c] + torch.minimum(i2, pool[sp_c] - 1)]
    first = fitness[p1] > fitness[p2]
    return Parents(order[offsets[sp_e] + rank_e], torch.where(first, p1, p2), torch.where(first, p2, p1))


__all__ = ["Parents", "choose_parents", "descending", "offspring_counts", "round_to_total"]
