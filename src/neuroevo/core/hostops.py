"""A few tensor ops through NumPy on the CPU, where torch's CPU kernels are several times slower.

Measured with torch 2.13 on one thread (``benchmarks/RESULTS.md``, NEAT at P = 10,000):
``nonzero`` of a 220,000-slot mask takes about 650 us against NumPy's 100, and a stable
``argsort`` of the rows of a ``[10000, 22]`` key table 2 ms against 0.6. NEAT's steps call
these on whole gene tables every generation. The results are the same integers either way;
on any other device the torch op runs.
"""

from __future__ import annotations

import numpy as np
import torch


def flatnonzero(mask: torch.Tensor) -> torch.Tensor:
    """Indices (int64, increasing) of the True entries of ``mask`` read row-major."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


def argsort_stable(t: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``torch.argsort(t, dim=dim, stable=True)`` (int64 indices)."""
    if t.device.type == "cpu" and t.dtype != torch.bool:
        return torch.from_numpy(np.argsort(t.numpy(), axis=dim, kind="stable"))
    return torch.argsort(t, dim=dim, stable=True)


__all__ = ["argsort_stable", "flatnonzero"]
