"""Compiling NEAT genomes: a population lowered to slot indices, once per population.

Value slots are ``[inputs | node genes | trash]``. Each connection becomes a source slot, a
target slot (the trash slot for empty and disabled genes, whose value nothing reads) and a
weight; each node slot its bias, response, activation and aggregation index. Feed-forward
genomes also get each node's topological level (the longest path from an input), so
``run.py`` can evaluate one level at a time for every genome at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from neuroevo.nn.activations import ACTIVATIONS, INPLACE, get_activation
from neuroevo.nn.neat.genes import PAD
from neuroevo.nn.neat.population import NEATPopulation

SLOT_TENSORS = ("src", "dst", "weight", "bias", "response", "act", "agg", "counts", "counts_all", "level")
"""The per-genome tensors of a ``CompiledNEAT`` (sliced and reordered together)."""


@dataclass
class CompiledNEAT:
    """A population lowered to slot indices: slots are ``[inputs | node genes | trash]``."""

    num_inputs: int
    num_outputs: int
    num_slots: int
    src: torch.Tensor  # [P, C] source slot of each connection (0 for an empty gene)
    dst: torch.Tensor  # [P, C] target slot (the trash slot for empty/disabled genes)
    weight: torch.Tensor  # [P, C] (what reaches the trash slot is never read)
    bias: torch.Tensor  # [P, S]
    response: torch.Tensor | None  # [P, S] (None: 1 on every node)
    act: torch.Tensor | None  # [P, S] activation index (-1 for inputs/trash; None: one kind)
    agg: torch.Tensor | None  # [P, S] aggregation index (None: sum everywhere)
    counts: torch.Tensor | None  # [P, S] valid incoming connections (None: sum everywhere)
    counts_all: torch.Tensor | None  # [P, S] incoming entries incl. invalid ones (trash)
    act_fns: list[tuple[int, Any]]
    agg_kinds: list[int]
    level: torch.Tensor | None  # [P, S] topological level (0 inputs/empty/trash, >=1 nodes)
    num_levels: int
    row_start: list[int] = field(default_factory=list)  # first row (depth-sorted) deeper than level l
    order: torch.Tensor | None = None  # rows are sorted by depth: compiled row i is genome order[i]
    inverse: torch.Tensor | None = None
    act_inplace: Any = None  # in-place form of the one activation present, if it has one
    depth_sorted: bool = False  # rows ordered by depth (row_start skips shallow rows)

    def rows(self, start: int) -> CompiledNEAT:
        """The compiled rows ``start:`` (views, no copies)."""
        if start == 0:
            return self
        sliced = {n: getattr(self, n)[start:] for n in SLOT_TENSORS if getattr(self, n) is not None}
        return dataclasses.replace(self, **sliced, order=None, inverse=None)


def node_slots(pop: NEATPopulation, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slot of each node id in ``ids[P, K]`` and whether that node exists in its genome."""
    return slots_of(pop.node_key, pop.num_inputs, ids)


def slots_of(node_key: torch.Tensor, num_in: int, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``node_slots`` on bare tensors: ``node_key[P, N]`` sorted rows, node ``ids[P, K]``."""
    # slots are [inputs | node genes]: input ids 0..num_in-1 sort below every node id
    inputs = torch.arange(num_in, dtype=node_key.dtype, device=node_key.device)
    keys = torch.cat([inputs.expand(node_key.shape[0], num_in), node_key], 1)
    pos = torch.searchsorted(keys, ids.contiguous()).clamp_(max=keys.shape[1] - 1)
    found = keys.gather(1, pos) == ids
    return pos * found, found


def compile_population(
    pop: NEATPopulation,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    depth_sorted: bool = True,
) -> CompiledNEAT:
    """Lower genomes to slot tensors; for feed-forward genomes also compute topological levels
    (and with ``depth_sorted`` order the rows by depth, see ``sort_by_depth``)."""
    num_in, num_out = pop.num_inputs, pop.num_outputs
    p, n = pop.node_key.shape
    s = num_in + n + 1
    trash = s - 1
    src, src_ok = node_slots(pop, pop.conn_in)
    dst, dst_ok = node_slots(pop, pop.conn_out)
    # empty and disabled connections (and links into inputs) feed the trash slot, whose value
    # nothing reads: their source and weight can stay as they are
    valid = pop.conn_enabled & src_ok & dst_ok & (dst >= num_in)
    dst = trash + (dst - trash) * valid  # integer masks are exact (and cheaper than torch.where on CPU)
    weight = pop.conn_weight
    node_ok = pop.node_key != PAD

    def slots(t: torch.Tensor, fill: float | int) -> torch.Tensor:
        left = torch.full((p, num_in), fill, dtype=t.dtype)
        return torch.cat([left, t, torch.full((p, 1), fill, dtype=t.dtype)], dim=1)

    bias = slots(pop.node_bias, 0.0)  # empty slots hold GENE_FILL (0)
    # response is usually 1 on every node (neat-python's default config): then it is skipped
    response_is_one = torch.equal(pop.node_response, node_ok.to(pop.node_response.dtype))
    response = None if response_is_one else slots(pop.node_response, 0.0)
    act = None
    if len(pop.activations) == 1:
        act_kinds = [0]
    else:
        act = slots(torch.where(node_ok, pop.node_activation, torch.full_like(pop.node_activation, -1)), -1)
        act_kinds = (torch.bincount(act.view(-1) + 1)[1:].nonzero().view(-1)).tolist()
    act_fns = [(k, get_activation(pop.activations[k])) for k in act_kinds]
    act_inplace = None
    if len(act_kinds) == 1:
        act_inplace = INPLACE.get(ACTIVATIONS.canonical(pop.activations[act_kinds[0]]))
    agg, counts, counts_all = None, None, None
    agg_kinds = [0]
    if bool(pop.node_aggregation.any()):  # empty slots hold 0 (sum)
        agg_kinds = torch.bincount(pop.node_aggregation[node_ok]).nonzero().view(-1).tolist() or [0]
    if agg_kinds != [0]:  # only sum needs no per-slot kinds or counts
        agg = slots(pop.node_aggregation, 0)
        counts_all = torch.zeros(p, s).scatter_add_(1, dst, torch.ones_like(dst, dtype=torch.float32))
        counts = counts_all.clone()
        counts[:, trash] = 0

    level = None
    num_levels = 0
    if pop.feed_forward:
        base = torch.cat([torch.zeros(p, num_in), node_ok.float(), torch.zeros(p, 1)], dim=1).long()
        level = base.clone()
        for _ in range(s + 1):
            cand = (level + 1).gather(1, src)  # invalid connections land in the trash slot
            new = base.clone().scatter_reduce_(1, dst, cand, "amax", include_self=True)
            new[:, trash] = 0
            if torch.equal(new, level):
                break
            level = new
        else:
            raise ValueError(
                "a feed_forward genome has a cycle; use feed_forward = false for recurrent genomes"
            )
        num_levels = int(level.max()) if level.numel() else 0
    row_start = [0] * num_levels  # every level runs on every row until sort_by_depth

    compiled = CompiledNEAT(
        num_in,
        num_out,
        s,
        src.to(device),
        dst.to(device),
        weight.to(device, dtype),
        bias.to(device, dtype),
        None if response is None else response.to(device, dtype),
        None if act is None else act.to(device),
        None if agg is None else agg.to(device),
        None if counts is None else counts.to(device, dtype),
        None if counts_all is None else counts_all.to(device),
        act_fns,
        agg_kinds,
        None if level is None else level.to(device),
        num_levels,
        row_start,
        act_inplace=act_inplace,
    )
    return sort_by_depth(compiled) if depth_sorted else compiled


def sort_by_depth(c: CompiledNEAT) -> CompiledNEAT:
    """The same compiled genomes with rows ordered by depth, so that level l only touches the
    rows deep enough to need it: worth its cost when the population runs more than once (a
    control episode), not for one supervised batch."""
    if c.level is None or c.depth_sorted or c.src.shape[0] < 2:
        return c
    depth = c.level.amax(1)
    order, inverse, moved = None, None, {}
    if not bool((depth[1:] >= depth[:-1]).all()):
        order = torch.argsort(depth, stable=True)
        inverse = torch.argsort(order)
        depth = depth[order]
        moved = {n: getattr(c, n)[order] for n in SLOT_TENSORS if getattr(c, n) is not None}
    levels = torch.arange(1, c.num_levels + 1, device=depth.device)
    row_start = torch.searchsorted(depth, levels).tolist()
    return dataclasses.replace(
        c, **moved, row_start=row_start, order=order, inverse=inverse, depth_sorted=True
    )


__all__ = ["SLOT_TENSORS", "CompiledNEAT", "compile_population", "node_slots", "slots_of", "sort_by_depth"]
