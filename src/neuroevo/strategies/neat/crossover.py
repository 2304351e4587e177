"""NEAT crossover (paper, section 3.2): genes aligned by their historical markings.

The child of a fitter ``primary`` and a ``secondary`` parent has the primary's structure:
matching genes (same innovation number / node id) take each attribute from either parent
with equal chance; disjoint and excess genes come from the fitter parent. A connection
disabled in either parent is disabled in the child with probability
``crossover_disabled_rate`` (the paper's 0.75), re-enabled otherwise. Every child at once:
the alignment is one ``searchsorted`` per gene kind on the sorted rows. CPU populations
align and choose in one compiled merge walk per child instead (``merge.py``: the same draws,
the same children; 8% of a generation at P = 10,000, 5% at 150).
"""

from __future__ import annotations

import numpy as np
import torch

from neuroevo.core.hostops import flatnonzero
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
    if pop.numpy_any_size:
        return _crossover_merge(pop, primary, secondary, gen, disabled_rate, constant)
    a = pop.select(primary)
    node_fields = [f"node_{x}" for x in _NODE_ATTRIBUTES if x not in constant]
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
        where = flatnonzero(either_off & live)
        enabled.view(-1)[where] = torch.rand(len(where), generator=gen) >= disabled_rate
    k, n = a.node_key.shape
    if n:
        pos = torch.searchsorted(b["node_key"], a.node_key).clamp(max=n - 1)
        match = (b["node_key"].gather(1, pos) == a.node_key) & (a.node_key != PAD)
        for name in node_fields:
            take = match & (torch.rand(k, n, generator=gen) < 0.5)
            out[name] = torch.where(take, b[name].gather(1, pos), getattr(a, name))
    return a._with_counts(a.replace(**out))  # the primary's structure: its gene counts


def _crossover_merge(
    pop: NEATPopulation,
    primary: torch.Tensor,
    secondary: torch.Tensor,
    gen: torch.Generator,
    disabled_rate: float,
    constant: tuple[str, ...],
) -> NEATPopulation:
    """``crossover`` of a CPU population through ``merge.py``'s loops: the fields children
    copy from the primary parent are selected as tables, the others written row by row."""
    from neuroevo.strategies.neat import merge  # compiles (or loads) the loops on first use

    node_fields = [f"node_{x}" for x in _NODE_ATTRIBUTES if x not in constant]
    a = pop.select(primary, skip=("conn_weight", *node_fields))  # those are written below
    nodes, conns = pop.gene_counts()
    a.set_gene_counts(nodes.index_select(0, primary), conns.index_select(0, primary))
    pa, sa = primary.numpy(), secondary.numpy()
    out: dict[str, torch.Tensor] = {}
    k, c = a.conn_innovation.shape
    if c:
        draw = torch.rand(k, c, generator=gen).numpy()
        out["conn_weight"] = weight = torch.empty(k, c, dtype=pop.conn_weight.dtype)
        tables = (pop.conn_innovation.numpy(), pop.conn_weight.numpy(), pop.conn_enabled.numpy())
        where = torch.from_numpy(merge.conn_genes(*tables, pa, sa, draw, weight.numpy()))
        a.conn_enabled.view(-1)[where] = torch.rand(len(where), generator=gen) >= disabled_rate
    k, n = a.node_key.shape
    if n:
        slot = np.empty((k, n), dtype=np.int64)
        merge.node_matches(pop.node_key.numpy(), pa, sa, slot)
        for name in node_fields:
            draw = torch.rand(k, n, generator=gen).numpy()
            table = getattr(pop, name)
            out[name] = torch.empty(k, n, dtype=table.dtype)
            merge.node_field(table.numpy(), pa, sa, slot, draw, out[name].numpy())
    return a._with_counts(a.replace(**out))  # the primary's structure: its gene counts


__all__ = ["crossover"]
