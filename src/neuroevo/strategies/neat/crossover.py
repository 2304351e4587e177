"""NEAT crossover (paper, section 3.2): genes aligned by their historical markings.

The child of a fitter ``primary`` and a ``secondary`` parent has the primary's structure:
matching genes (same innovation number / node id) take each attribute from either parent
with equal chance; disjoint and excess genes come from the fitter parent. A connection
disabled in either parent is disabled in the child with probability
``crossover_disabled_rate`` (the paper's 0.75), re-enabled otherwise. Every child at once:
the alignment is one ``searchsorted`` per gene kind on the sorted rows.
"""

from __future__ import annotations

import numpy as np
import torch

from neuroevo.nn.neat.genes import PAD
from neuroevo.nn.neat.population import NEATPopulation

_NODE_ATTRIBUTES = ("bias", "response", "activation", "aggregation")


def crossover(
    pop: NEATPopulation,
    primary: torch.Tensor,
    secondary: torch.Tensor,
    gen: torch.Generator,
    *,
    disabled_rate: float,
    constant: tuple[str, ...] = (),
) -> NEATPopulation:
    """Children ``[len(primary)]`` of ``pop[primary]`` (the fitter) and ``pop[secondary]``.

    Node attributes named in ``constant`` are equal in every genome and need no choice. The
    children's tensors are new (``pop`` is left alone).
    """
    a = pop.select(primary)
    node_fields = [f"node_{x}" for x in _NODE_ATTRIBUTES if x not in constant]
    if pop.in_numpy:
        out = _crossover_numpy(pop, a, secondary.numpy(), gen, disabled_rate, node_fields)
        return a._with_counts(a.replace(**out))
    needed = ["conn_innovation", "conn_weight", "conn_enabled", "node_key", *node_fields]
    b = {name: getattr(pop, name).index_select(0, secondary) for name in needed}
    out: dict[str, torch.Tensor] = {}
    k, c = a.conn_innovation.shape
    if c:
        pos = torch.searchsorted(b["conn_innovation"], a.conn_innovation).clamp(max=c - 1)
        live = a.conn_innovation != PAD
        match = (b["conn_innovation"].gather(1, pos) == a.conn_innovation) & live
        take_w = match & (torch.rand(k, c, generator=gen) < 0.5)
        out["conn_weight"] = torch.where(take_w, b["conn_weight"].gather(1, pos), a.conn_weight)
        either_off = ~a.conn_enabled | (match & ~b["conn_enabled"].gather(1, pos))
        enabled = a.conn_enabled  # a fresh copy; False in empty slots
        where = (either_off & live).nonzero(as_tuple=True)
        enabled[where] = torch.rand(len(where[0]), generator=gen) >= disabled_rate
    k, n = a.node_key.shape
    if n:
        pos = torch.searchsorted(b["node_key"], a.node_key).clamp(max=n - 1)
        match = (b["node_key"].gather(1, pos) == a.node_key) & (a.node_key != PAD)
        for name in node_fields:
            take = match & (torch.rand(k, n, generator=gen) < 0.5)
            out[name] = torch.where(take, b[name].gather(1, pos), getattr(a, name))
    return a._with_counts(a.replace(**out))  # the primary's structure: its gene counts


def _aligned(a_keys: np.ndarray, b_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the slot of ``b_keys`` holding each key of ``a_keys`` and whether it is there
    (rows sorted, ``PAD`` last): one search of ``row * span + key`` in all of ``b``'s rows."""
    k, c = a_keys.shape
    top = max(int(a_keys[a_keys != PAD].max(initial=0)), int(b_keys[b_keys != PAD].max(initial=0)))
    span = top + 2  # PAD reads as span - 1, above every key of its row
    shift = np.arange(k, dtype=np.int64)[:, None] * span
    flat_b = (np.where(b_keys == PAD, span - 1, b_keys) + shift).reshape(-1)
    pos = np.searchsorted(flat_b, np.where(a_keys == PAD, span - 1, a_keys) + shift) - shift // span * c
    pos = np.clip(pos, 0, c - 1)
    rows = np.arange(k)[:, None]
    return pos, (b_keys[rows, pos] == a_keys) & (a_keys != PAD)


def _crossover_numpy(
    pop: NEATPopulation,
    a: NEATPopulation,
    secondary: np.ndarray,
    gen: torch.Generator,
    disabled_rate: float,
    node_fields: list[str],
) -> dict[str, torch.Tensor]:
    """``crossover``'s attribute choices for a small CPU population, on NumPy views (the same
    draws, in the same order, and the same children)."""
    out: dict[str, torch.Tensor] = {}
    k, c = a.conn_innovation.shape
    if c:
        a_key = a.conn_innovation.numpy()
        pos, match = _aligned(a_key, pop.conn_innovation.numpy()[secondary])
        b_at = (secondary[:, None], pos)
        take_w = match & (torch.rand(k, c, generator=gen).numpy() < 0.5)
        a_w = a.conn_weight.numpy()
        out["conn_weight"] = torch.from_numpy(np.where(take_w, pop.conn_weight.numpy()[b_at], a_w))
        enabled = a.conn_enabled.numpy()  # a fresh copy; False in empty slots
        either_off = ~enabled | (match & ~pop.conn_enabled.numpy()[b_at])
        where = np.nonzero(either_off & (a_key != PAD))
        enabled[where] = torch.rand(len(where[0]), generator=gen).numpy() >= disabled_rate
    k, n = a.node_key.shape
    if n:
        pos, match = _aligned(a.node_key.numpy(), pop.node_key.numpy()[secondary])
        b_at = (secondary[:, None], pos)
        for name in node_fields:
            take = match & (torch.rand(k, n, generator=gen).numpy() < 0.5)
            mine = getattr(a, name).numpy()
            out[name] = torch.from_numpy(np.where(take, getattr(pop, name).numpy()[b_at], mine))
    return out


__all__ = ["crossover"]
