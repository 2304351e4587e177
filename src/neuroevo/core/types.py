"""Small types shared by every layer: what a task returns, and the best member so far."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class Fitness:
    """What ``Task.evaluate`` returns.

    ``values[P]``: one scalar per member, higher is better. ``descriptors[P, K]``: optional
    behaviour descriptors (novelty search). ``steps``: environment steps or samples used,
    for throughput metrics. ``metrics``: extra per-generation scalars to log.
    """

    values: torch.Tensor
    descriptors: torch.Tensor | None = None
    steps: int = 0
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Best:
    """The best member seen so far: its parameters (any population row type), fitness and generation."""

    params: object
    fitness: float
    generation: int
