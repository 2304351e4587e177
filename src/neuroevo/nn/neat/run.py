"""Running compiled NEAT genomes: a whole population in one batched call.

A node computes ``activation(bias + response * aggregation(w_i * x_i for its enabled
inputs))`` (a node with no enabled input aggregates to 0). Feed-forward genomes are run one
topological level at a time, all genomes and nodes at once (a gather, a scatter-reduce and
one call per activation kind present); recurrent genomes one time step at a time, every node
reading the previous step's values (as neat-python's ``RecurrentNetwork``).
"""

from __future__ import annotations

import torch

from neuroevo.nn.neat.compile import CompiledNEAT
from neuroevo.nn.neat.genes import AGGREGATIONS


def _aggregate(c: CompiledNEAT, contrib: torch.Tensor) -> torch.Tensor:
    """Per-slot aggregation of ``contrib[P, B, C]`` into ``[P, B, S]``, one pass per kind present."""
    p, b, _ = contrib.shape
    s = c.num_slots
    dst = c.dst.unsqueeze(1).expand_as(contrib)
    counts = None if c.counts is None else c.counts.unsqueeze(1)  # None: sum only
    out: torch.Tensor | None = None
    cache: dict[str, torch.Tensor] = {}

    def total() -> torch.Tensor:
        if "sum" not in cache:
            cache["sum"] = contrib.new_zeros(p, b, s).scatter_add_(2, dst, contrib)
        return cache["sum"]

    def reduce(kind: str) -> torch.Tensor:
        if kind not in cache:
            r = contrib.new_zeros(p, b, s).scatter_reduce_(2, dst, contrib, kind, include_self=False)
            cache[kind] = r
        return cache[kind]

    for k in c.agg_kinds:
        name = AGGREGATIONS[k]
        if name == "sum":
            r = total()
        elif name == "mean":
            r = total() / counts.clamp(min=1)
        elif name == "product":
            r = contrib.new_ones(p, b, s).scatter_reduce_(2, dst, contrib, "prod", include_self=True)
            r = torch.where(counts > 0, r, torch.zeros_like(r))
        elif name == "max":
            r = reduce("amax")
        elif name == "min":
            r = reduce("amin")
        elif name == "maxabs":
            hi, lo = reduce("amax"), reduce("amin")
            r = torch.where(hi.abs() >= lo.abs(), hi, lo)
        else:  # median (mean of the two middle values for an even count, as numpy/statistics)
            r = _median(c, contrib)
        if out is None:
            out = r
        else:
            out = torch.where(c.agg.unsqueeze(1) == k, r, out)
    assert out is not None
    return out


def _median(c: CompiledNEAT, contrib: torch.Tensor) -> torch.Tensor:
    p, b, width = contrib.shape
    s = c.num_slots
    if width == 0:
        return contrib.new_zeros(p, b, s)
    values, order = contrib.sort(dim=2, stable=True)
    dst = c.dst.unsqueeze(1).expand(p, b, width).gather(2, order)
    _, order2 = dst.sort(dim=2, stable=True)
    grouped = values.gather(2, order2)
    counts_all = c.counts_all.long()
    start = torch.cumsum(counts_all, 1) - counts_all
    cnt = c.counts.long()
    lo = (start + (cnt - 1).clamp(min=0) // 2).clamp(max=width - 1)
    hi = (start + cnt // 2).clamp(max=width - 1)
    lo = lo.unsqueeze(1).expand(p, b, s)
    hi = hi.unsqueeze(1).expand(p, b, s)
    med = 0.5 * (grouped.gather(2, lo) + grouped.gather(2, hi))
    return torch.where(c.counts.unsqueeze(1) > 0, med, torch.zeros_like(med))


def _activate(c: CompiledNEAT, z: torch.Tensor) -> torch.Tensor:
    """Each slot's activation of ``z`` (which it may overwrite)."""
    if c.act_inplace is not None:
        return c.act_inplace(z)
    if len(c.act_fns) == 1:
        return c.act_fns[0][1](z)
    out = z
    act = c.act.unsqueeze(1)
    for k, fn in c.act_fns:
        out = torch.where(act == k, fn(z), out)
    return out


def _step(
    c: CompiledNEAT,
    values: torch.Tensor,
    gathered: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """New slot values ``[P, B, S]`` from ``values`` (``gathered``: source values, if already
    read; ``out``: where to write them, which may be ``values`` once the sources are read)."""
    if gathered is None:
        src = c.src.unsqueeze(1).expand(values.shape[0], values.shape[1], c.src.shape[1])
        gathered = values.gather(2, src)
    contrib = gathered.mul_(c.weight.unsqueeze(1))  # gathered is a fresh tensor
    if c.response is None and c.agg_kinds == [0]:  # sum, response 1: accumulate onto the bias
        p, b, _ = contrib.shape
        bias = c.bias.unsqueeze(1).expand(p, b, c.num_slots)
        z = bias.clone() if out is None else out.copy_(bias)
        z.scatter_add_(2, c.dst.unsqueeze(1).expand_as(contrib), contrib)
        if out is not None and c.act_inplace is None:
            return out.copy_(_activate(c, z))
        return _activate(c, z)
    agg = _aggregate(c, contrib)
    if c.response is not None:
        agg = c.response.unsqueeze(1) * agg
    z = _activate(c, agg.add_(c.bias.unsqueeze(1)))
    return z if out is None else out.copy_(z)


def run_compiled(
    c: CompiledNEAT,
    x: torch.Tensor,
    *,
    steps: int = 1,
    state: torch.Tensor | None = None,
    flat_reads: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs ``[P, B, out]`` and the final slot values for inputs ``x[P, B, in]``.

    Feed-forward: one batched pass per topological level. Recurrent (``c.level is None``):
    ``steps`` synchronous updates starting from ``state`` (zeros when None). ``flat_reads``
    = False always reads sources with ``gather``: no branch on the batch size, which
    ``torch.export`` needs to keep the batch dimension dynamic.
    """
    p, b, _ = x.shape
    num_in = c.num_inputs
    if c.order is not None:
        x = x[c.order]
    if state is None:
        values = x.new_zeros(p, b, c.num_slots)
    else:
        values = state.clone()
    values[:, :, :num_in] = x
    if c.level is not None:
        # Level l recomputes every node of the rows deep enough: nodes above l get the same value
        # again (their inputs are final), nodes below it a provisional one that a later level
        # overwrites, so after the row's deepest level every node holds exactly what a
        # node-by-node topological evaluation gives. Only the inputs are restored each time.
        conns = c.src.shape[1]
        flat = None
        if flat_reads and p * b * conns <= 1 << 22:  # one flat index_select: cheaper than gather
            rows = torch.arange(p * b, device=x.device).view(p, b, 1) * c.num_slots
            flat = (rows + c.src.unsqueeze(1)).view(-1)
        for lvl in range(1, c.num_levels + 1):
            start = c.row_start[lvl - 1]
            view = values[start:]
            gathered = None
            if flat is not None:
                gathered = values.view(-1).index_select(0, flat[start * b * conns :])
                gathered = gathered.view(p - start, b, conns)
            _step(c.rows(start), view, gathered, out=view)
            view[:, :, :num_in] = x[start:]
    else:
        for _ in range(steps):
            values = _step(c, values)
            values[:, :, :num_in] = x
    out = values[:, :, num_in : num_in + c.num_outputs]
    if c.inverse is not None:
        out = out[c.inverse]
    return out, values


__all__ = ["run_compiled"]
