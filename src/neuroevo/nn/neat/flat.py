"""Feed-forward NEAT genomes as one flat graph: a whole population without padding.

For the common case (every node sums its inputs, response 1, one activation: the NEAT
paper's networks and neat-python's XOR example) a population needs no per-genome padding
to run: the nodes of all genomes are slots of one vector ``[inputs | node genes]`` per
genome, the enabled connections one edge list, and each topological level (the longest path
from an input, as in ``compile.py``) is one gather, one scatter-add onto the biases, one
activation and one write, over exactly the nodes and edges of that level. The work is
O(enabled connections * batch), whatever the spread of genome sizes, in a number of tensor
calls that grows with the depth only. Each node adds its inputs in gene order onto its bias,
as the padded form (``run.py``) does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from neuroevo.core.hostops import argsort_stable, flatnonzero
from neuroevo.nn.activations import ACTIVATIONS, INPLACE, get_activation
from neuroevo.nn.neat.genes import PAD
from neuroevo.nn.neat.population import NEATPopulation

_BLOCK = 64  # floats: a multiple of every CPU vector width (a kernel's scalar tail is shorter)


@dataclass
class FlatLevel:
    """The nodes of one topological level (``count`` value columns, in order) and the enabled
    connections into them."""

    count: int
    bias: torch.Tensor  # [K]
    src: torch.Tensor  # [E] value column of each connection's source, in genome then gene order
    dst: torch.Tensor  # [E] its target among this level's nodes
    weight: torch.Tensor  # [E]


@dataclass
class FlatNEAT:
    """A feed-forward population lowered to the levels of a flat graph (see the module doc).
    Value columns are every genome's inputs (genome-major), then every node ordered by level."""

    num_inputs: int
    num_outputs: int
    size: int  # genomes
    levels: list[FlatLevel]
    outputs: torch.Tensor  # [P * out] value column of each genome's outputs
    activate: Callable[[torch.Tensor], torch.Tensor]
    in_place: bool  # ``activate`` overwrites its argument (else it returns new values)
    depth_sorted: bool = True  # no padded rows to order: every level touches its nodes only


def flat_applicable(pop: NEATPopulation) -> bool:
    """Whether ``pop`` is feed-forward with sum aggregation, response 1 and one activation."""
    if not pop.feed_forward or len(pop.activations) != 1:
        return False
    if pop.numpy_any_size:
        present = (pop.node_key.numpy() != PAD).astype(pop.node_response.numpy().dtype)
        return not pop.node_aggregation.numpy().any() and np.array_equal(pop.node_response.numpy(), present)
    if bool(pop.node_aggregation.any()):
        return False
    return torch.equal(pop.node_response, (pop.node_key != PAD).to(pop.node_response.dtype))


def _levels(src: torch.Tensor, dst: torch.Tensor, nodes: int, longest: int) -> torch.Tensor:
    """Each node's topological level (1 + its deepest source's; inputs, ``src == nodes``, are 0)."""
    base = torch.ones(nodes + 1, dtype=torch.long)
    base[nodes] = 0
    level = base
    for _ in range(longest + 2):
        new = base.scatter_reduce(0, dst, level.index_select(0, src) + 1, "amax", include_self=True)
        if torch.equal(new, level):
            return level[:nodes]
        level = new
    raise ValueError("a feed_forward genome has a cycle; use feed_forward = false for recurrent genomes")


def _edges(pop: NEATPopulation, row_start: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The enabled connections between existing nodes: genome, source id, whether the source is
    an input, source and target position among the nodes (genome-major: genome g's start at
    ``row_start[g]``), weight."""
    n = pop.node_key.shape[1]
    at = flatnonzero(pop.conn_enabled)  # empty slots are disabled
    genome = at // max(pop.conn_enabled.shape[1], 1)
    rows = pop.node_key.index_select(0, genome)  # each connection's genome's (sorted) node keys
    start = row_start.index_select(0, genome)
    ends = []
    for ids in (pop.conn_in.view(-1).index_select(0, at), pop.conn_out.view(-1).index_select(0, at)):
        col = torch.searchsorted(rows, ids.unsqueeze(1)).clamp_(max=n - 1)  # in a row's few keys
        found = rows.gather(1, col).squeeze(1) == ids
        ends.append((ids, start + col.squeeze(1), found))
    (src_id, src_pos, src_found), (_, dst_pos, dst_found) = ends
    src_in = src_id < pop.num_inputs
    out = (genome, src_id, src_in, src_pos, dst_pos, pop.conn_weight.reshape(-1).index_select(0, at))
    keep = (src_found | src_in) & dst_found
    return out if bool(keep.all()) else tuple(t[keep] for t in out)


def compile_flat(
    pop: NEATPopulation, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> FlatNEAT:
    """Lower ``pop`` (``flat_applicable``) to the levels of one flat graph (CPU populations in
    NumPy: the same integers, as fast at P = 10,000 and faster below, where tensor calls cost
    several NumPy ones)."""
    if pop.numpy_any_size:
        return _compile_flat_numpy(pop, device, dtype)
    num_in, num_out = pop.num_inputs, pop.num_outputs
    p, n = pop.node_key.shape
    node_ok = pop.node_key != PAD
    live = flatnonzero(node_ok)  # genome-major, sorted within a genome
    k = live.numel()
    counts = node_ok.sum(1)
    row_start = torch.cumsum(counts, 0) - counts  # outputs come first in a row
    genome, src_id, src_in, src_pos, dst_pos, weight = _edges(pop, row_start)
    level = _levels(torch.where(src_in, k, src_pos), dst_pos, k, n)
    if n < 1 << 15:  # levels are at most n: small keys sort several times faster
        level = level.to(torch.int16)
    order = argsort_stable(level)  # value columns: nodes by level, then genome
    by_level = level.index_select(0, order)
    rank = torch.empty(k, dtype=torch.long)
    rank[order] = torch.arange(k)
    base = p * num_in
    bounds = torch.arange(1, int(by_level[-1]) + 2 if k else 2, dtype=level.dtype)
    first = torch.searchsorted(by_level, bounds)  # first column of each level (and the end)
    counts = first.diff()  # nodes per level
    e_level = level.index_select(0, dst_pos)
    e_order = argsort_stable(e_level)
    e_sorted = e_level.index_select(0, e_order)
    src = torch.where(src_in, genome * num_in + src_id, base + rank.index_select(0, src_pos))
    dst = rank.index_select(0, dst_pos) - first.index_select(0, e_level.long() - 1)
    e_counts = torch.searchsorted(e_sorted, bounds).diff().tolist()
    bias = pop.node_bias.reshape(-1).index_select(0, live).index_select(0, order)
    outputs = base + rank.index_select(0, (row_start.unsqueeze(1) + torch.arange(num_out)).view(-1))
    node_counts = counts.tolist()
    pieces = zip(
        node_counts,
        bias.to(device, dtype).split(node_counts),
        src.index_select(0, e_order).to(device).split(e_counts),
        dst.index_select(0, e_order).to(device).split(e_counts),
        weight.index_select(0, e_order).to(device, dtype).split(e_counts),
        strict=True,
    )
    name = ACTIVATIONS.canonical(pop.activations[0])
    act = INPLACE.get(name)
    levels = [FlatLevel(*x) for x in pieces]
    return FlatNEAT(
        num_in, num_out, p, levels, outputs.to(device), act or get_activation(name), act is not None
    )


def _compile_flat_numpy(pop: NEATPopulation, device: torch.device | str, dtype: torch.dtype) -> FlatNEAT:
    """``compile_flat`` in NumPy (the same steps and results), with the walks over each
    genome's graph (connection ends, levels) as compiled loops (``graph.py``)."""
    from neuroevo.nn.neat import graph  # numba: imported, and the loops compiled, on first use

    num_in, num_out = pop.num_inputs, pop.num_outputs
    p, n = pop.node_key.shape
    c = max(pop.conn_innovation.shape[1], 1)
    node_key = pop.node_key.numpy().reshape(-1)
    live = np.flatnonzero(node_key != PAD)  # genome-major, sorted within a genome
    k = live.size
    counts = np.bincount(live // max(n, 1), minlength=p)
    row_start = np.cumsum(counts) - counts  # outputs come first in a row
    tables = pop.node_key.numpy(), counts, row_start, pop.conn_in.numpy(), pop.conn_out.numpy()
    at, src_pos, dst_pos, keep = graph.edge_ends(*tables, pop.conn_enabled.numpy(), num_in)
    genome = at // c
    src_id = pop.conn_in.numpy().reshape(-1)[at]
    weight = pop.conn_weight.numpy().reshape(-1)[at]
    src_in = src_id < num_in
    if not keep.all():
        genome, src_id, src_in, src_pos, dst_pos, weight = (
            t[keep] for t in (genome, src_id, src_in, src_pos, dst_pos, weight)
        )
    level, status = graph.levels(genome, np.where(src_in, k, src_pos), dst_pos, k, n)
    if status == graph.CYCLE:
        raise ValueError("a feed_forward genome has a cycle; use feed_forward = false for recurrent genomes")
    if n < 1 << 15:  # levels are at most n: a stable sort of 16-bit keys is a radix sort
        level = level.astype(np.int16)
    order = np.argsort(level, kind="stable")  # value columns: nodes by level, then genome
    by_level = level[order]
    rank = np.empty(k, dtype=np.int64)
    rank[order] = np.arange(k)
    base = p * num_in
    bounds = np.arange(1, int(by_level[-1]) + 2 if k else 2)
    first = np.searchsorted(by_level, bounds)  # first column of each level (and the end)
    node_counts = np.diff(first).tolist()  # nodes per level
    e_level = level[dst_pos]
    e_order = np.argsort(e_level, kind="stable")
    src = np.where(src_in, genome * num_in + src_id, base + rank[src_pos])
    dst = rank[dst_pos] - first[e_level - 1]
    e_cuts = np.searchsorted(e_level[e_order], bounds)[:-1].tolist()[1:]
    n_cuts = first[:-1].tolist()[1:]
    bias = pop.node_bias.numpy().reshape(-1)[live][order]
    outputs = base + rank[(row_start[:, None] + np.arange(num_out)).reshape(-1)]

    def tensors(a: np.ndarray, cuts: list[int], as_dtype: torch.dtype | None) -> list[torch.Tensor]:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device, as_dtype)
        return list(t.tensor_split(cuts)) if cuts else [t]

    pieces = zip(
        node_counts or [0],
        tensors(bias, n_cuts, dtype),
        tensors(src[e_order], e_cuts, None),
        tensors(dst[e_order], e_cuts, None),
        tensors(weight[e_order], e_cuts, dtype),
        strict=True,
    )
    name = ACTIVATIONS.canonical(pop.activations[0])
    act = INPLACE.get(name)
    levels = [FlatLevel(*x) for x in pieces] if node_counts else []
    out_t = torch.from_numpy(outputs).to(device)
    return FlatNEAT(num_in, num_out, p, levels, out_t, act or get_activation(name), act is not None)


def run_flat(f: FlatNEAT, x: torch.Tensor) -> torch.Tensor:
    """Outputs ``[P, B, out]`` for inputs ``x[P, B, in]``, one level at a time."""
    p, b, _ = x.shape
    start = p * f.num_inputs
    values = x.new_empty(b, start + sum(lv.count for lv in f.levels))  # batch-major columns
    values[:, :start] = x.transpose(0, 1).reshape(b, start)
    for lv in f.levels:
        # activated in a buffer of whole SIMD blocks: every value takes the vectorised path,
        # whatever its position, so a genome's outputs do not depend on the other genomes
        # (a shard of the population gives bit-identical results)
        size = b * lv.count
        buf = x.new_zeros(-(-size // _BLOCK) * _BLOCK)
        z = buf[:size].view(b, lv.count)
        z.copy_(lv.bias.expand(b, lv.count))
        z.scatter_add_(1, lv.dst.expand(b, len(lv.dst)), values.index_select(1, lv.src).mul_(lv.weight))
        done = f.activate(buf) if f.in_place else f.activate(buf).contiguous()
        values[:, start : start + lv.count] = done[:size].view(b, lv.count)
        start += lv.count
    return values.index_select(1, f.outputs).view(b, p, f.num_outputs).transpose(0, 1)


__all__ = ["FlatLevel", "FlatNEAT", "compile_flat", "flat_applicable", "run_flat"]
