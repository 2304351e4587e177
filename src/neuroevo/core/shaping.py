"""Fitness shaping: turn raw fitness into weights that are invariant to its scale."""

from __future__ import annotations

import torch

from neuroevo.core.errors import ConfigError


def centered_rank(fitness: torch.Tensor) -> torch.Tensor:
    """Ranks mapped linearly to [-0.5, 0.5] (Salimans et al. 2017); ties broken by index."""
    n = fitness.numel()
    ranks = torch.empty(n, dtype=fitness.dtype, device=fitness.device)
    ranks[fitness.argsort(stable=True)] = torch.arange(n, dtype=fitness.dtype, device=fitness.device)
    if n == 1:
        return torch.zeros_like(fitness)
    return ranks / (n - 1) - 0.5


def z_score(fitness: torch.Tensor) -> torch.Tensor:
    """(f - mean) / std, with a zero vector when all fitnesses are equal."""
    std = fitness.std(unbiased=False)
    if std == 0:
        return torch.zeros_like(fitness)
    return (fitness - fitness.mean()) / std


SHAPINGS = {"centered_rank": centered_rank, "z_score": z_score, "raw": lambda f: f}


def shape_fitness(fitness: torch.Tensor, method: str) -> torch.Tensor:
    """Apply the named shaping: ``centered_rank`` | ``z_score`` | ``raw``."""
    try:
        return SHAPINGS[method](fitness)
    except KeyError:
        raise ConfigError(f"unknown fitness shaping {method!r}; allowed: {', '.join(SHAPINGS)}") from None
