"""Shared by the control and Gymnasium tasks: population size, action mapping, one-member batches."""

from __future__ import annotations

from typing import Any

import torch


def population_size(population: Any) -> int:
    """Members in ``population``: rows of a ``[P, D]`` tensor, ``len()``, or ``population_size``."""
    if isinstance(population, torch.Tensor):
        return int(population.shape[0]) if population.dim() > 1 else 1
    if hasattr(population, "__len__"):
        return len(population)
    for attr in ("population_size", "size"):
        if hasattr(population, attr):
            return int(getattr(population, attr))
    raise TypeError(f"cannot tell the size of a population of type {type(population).__name__}")


def as_population(params: Any) -> Any:
    """One member's parameters as a population of one (a ``[1, D]`` tensor or a one-item list)."""
    if isinstance(params, torch.Tensor):
        return params.unsqueeze(0) if params.dim() == 1 else params
    if isinstance(params, (list, tuple)):
        return params
    return [params]


def map_actions(
    out: torch.Tensor,
    *,
    num_actions: int = 0,
    low: torch.Tensor | None = None,
    high: torch.Tensor | None = None,
    deterministic: bool = True,
    action_noise: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Network outputs ``[N, out]`` to env actions.

    Discrete (``num_actions > 0``): argmax, or with ``deterministic=False`` a sample from the
    softmax (Gumbel-max). Continuous: ``low + (tanh(out) + 1) / 2 * (high - low)``, with
    ``deterministic=False`` adding N(0, action_noise^2) before the tanh. Noise is drawn on the
    CPU from ``generator`` so CPU and CUDA runs agree.
    """
    if num_actions > 0:
        logits = out[..., :num_actions]
        if not deterministic:
            u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).clamp_min(1e-20)
            gumbel = -torch.log(-torch.log(u))
            logits = torch.log_softmax(logits.to(torch.float64), -1) + gumbel.to(logits.device)
        return logits.argmax(-1)
    if not deterministic and action_noise > 0:
        noise = torch.randn(out.shape, generator=generator, dtype=torch.float64) * action_noise
        out = out + noise.to(device=out.device, dtype=out.dtype)
    assert low is not None and high is not None
    low = low.to(device=out.device, dtype=out.dtype)
    high = high.to(device=out.device, dtype=out.dtype)
    return low + (torch.tanh(out) + 1.0) * 0.5 * (high - low)
