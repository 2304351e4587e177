"""NEAT genomes as padded tensors, and the phenotype that runs a whole population of them.

A population of P genomes is a :class:`NEATPopulation`: node genes ``[P, N]`` and connection
genes ``[P, C]``, each row sorted by key (node id / innovation number) with empty slots
holding ``PAD`` at the end, so alignment by innovation number is a ``searchsorted``.

Node ids: inputs are ``0 .. num_inputs-1`` (they have no genes), outputs are
``num_inputs .. num_inputs+num_outputs-1`` (always present, first in every row), hidden nodes
get fresh ids from the strategy's counter. A node computes
``activation(bias + response * aggregation(w_i * x_i for its enabled inputs))``; a node with
no enabled input aggregates to 0 (so it outputs ``activation(bias)``).

Evaluation (:class:`NEATPhenotype`): a population is compiled once into value slots
``[inputs | nodes | trash]``, connection source/target slot indices and per-slot bias,
response, activation and aggregation indices. Feed-forward genomes are run one topological
level at a time, all genomes and nodes at once (a gather, a scatter-reduce and one call per
activation kind present); recurrent genomes are run one time step at a time, every node
reading the previous step's values (as neat-python's RecurrentNetwork). ``chunk_size`` bounds
memory by compiling and running that many genomes at a time.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import Field, field_validator

from neuroevo.core.contracts import PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS, INPLACE, get_activation
from neuroevo.nn.networks import NetworkParams, register_network

PAD = 2**62
"""Key of an empty gene slot; sorts after every real node id or innovation number."""

AGGREGATIONS: tuple[str, ...] = ("sum", "product", "max", "min", "maxabs", "median", "mean")
"""Aggregation functions a node may use; genomes store the index into this tuple."""

GENOME_FORMAT = "neuroevo.neat.genome/1"

NODE_FIELDS = ("node_key", "node_bias", "node_response", "node_activation", "node_aggregation")
CONN_FIELDS = ("conn_innovation", "conn_in", "conn_out", "conn_weight", "conn_enabled")
GENE_FILL: dict[str, Any] = {
    "node_key": PAD,
    "node_bias": 0.0,
    "node_response": 0.0,
    "node_activation": 0,
    "node_aggregation": 0,
    "conn_innovation": PAD,
    "conn_in": -1,
    "conn_out": -1,
    "conn_weight": 0.0,
    "conn_enabled": False,
}


def aggregation_index(name: str) -> int:
    """Index of an aggregation name in ``AGGREGATIONS``; a ConfigError lists the allowed ones."""
    if name not in AGGREGATIONS:
        raise ConfigError(f"aggregation {name!r}; allowed: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS.index(name)


def pad_columns(t: torch.Tensor, width: int, fill: Any, copy: bool = True) -> torch.Tensor:
    """``t[K, W]`` cut or padded (with ``fill``) to ``width`` columns (``copy`` = False: a cut
    may be a view of ``t``)."""
    if t.shape[1] >= width:
        return t[:, :width].contiguous() if copy else t[:, :width]
    extra = torch.full((t.shape[0], width - t.shape[1]), fill, dtype=t.dtype, device=t.device)
    return torch.cat([t, extra], dim=1)


@dataclass
class NEATPopulation:
    """P genomes as padded tensors (what ``NEAT.ask()`` returns and ``NEATPhenotype`` runs).

    ``activations`` names the activation of index k (a registry name); aggregations index
    ``AGGREGATIONS``. Rows are sorted by node id / innovation, ``PAD`` slots at the end.
    """

    num_inputs: int
    num_outputs: int
    activations: list[str]
    node_key: torch.Tensor
    node_bias: torch.Tensor
    node_response: torch.Tensor
    node_activation: torch.Tensor
    node_aggregation: torch.Tensor
    conn_innovation: torch.Tensor
    conn_in: torch.Tensor
    conn_out: torch.Tensor
    conn_weight: torch.Tensor
    conn_enabled: torch.Tensor
    feed_forward: bool = True
    cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __len__(self) -> int:
        return int(self.node_key.shape[0])

    def __getitem__(self, index: int | slice | torch.Tensor | list[int]) -> Any:
        """``pop[i]`` is genome i as a dict; ``pop[a:b]`` / ``pop[index_tensor]`` a sub-population
        (what an executor sharding the population across workers needs)."""
        if isinstance(index, int):
            return self.genome(index)
        return self.select(index)

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in NODE_FIELDS + CONN_FIELDS}

    def replace(self, **tensors: torch.Tensor) -> NEATPopulation:
        """A new population with some tensors swapped (the compiled cache is not carried)."""
        values = {**self.tensors, **tensors}
        return NEATPopulation(
            self.num_inputs,
            self.num_outputs,
            list(self.activations),
            feed_forward=self.feed_forward,
            **values,
        )

    def select(
        self,
        rows: torch.Tensor | slice | list[int],
        nodes: int | None = None,
        conns: int | None = None,
        skip: tuple[str, ...] = (),
    ) -> NEATPopulation:
        """The genomes at ``rows`` (an index tensor or list, a boolean mask, or a slice);
        ``nodes`` / ``conns`` keep only that many gene columns (at most the current width) in
        the same copy, for callers that know the selected rows' gene counts. Fields named in
        ``skip`` are not copied (they hold GENE_FILL), for callers that never read them."""
        width = {"node": nodes, "conn": conns}
        cols = {k: slice(None, width[k[:4]]) for k in NODE_FIELDS + CONN_FIELDS}
        if isinstance(rows, slice):
            out = {k: v[rows, cols[k]] for k, v in self.tensors.items() if k not in skip}
        else:
            index = torch.as_tensor(rows)
            index = index.nonzero().squeeze(1) if index.dtype == torch.bool else index.long()
            out = {k: v[:, cols[k]].index_select(0, index) for k, v in self.tensors.items() if k not in skip}
        for k in skip:
            shape = next(v for n, v in out.items() if n[:4] == k[:4]).shape
            fill = torch.full((), GENE_FILL[k], dtype=getattr(self, k).dtype, device=self.node_key.device)
            out[k] = fill.expand(shape)  # a read-only view, no copy
        return self.replace(**out)

    def node_counts(self) -> torch.Tensor:
        return (self.node_key != PAD).sum(1)

    def conn_counts(self) -> torch.Tensor:
        return (self.conn_innovation != PAD).sum(1)

    def gene_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(node genes, connection genes) per genome, counted once per population: speciation,
        reproduction and the phenotype's chunking all need them. (Only mutation changes a
        population's tensors in place, on fresh children nobody has counted yet.)"""
        if "gene_counts" not in self.cache:
            self.cache["gene_counts"] = (self.node_counts(), self.conn_counts())
        return self.cache["gene_counts"]

    def trimmed(self) -> NEATPopulation:
        """Drop trailing columns that are empty in every row (rows must be sorted)."""
        n = max(int(self.node_counts().max()) if len(self) else 0, self.num_outputs)
        c = int(self.conn_counts().max()) if len(self) else 0
        return self.padded(n, c, shrink=True)

    def padded(self, nodes: int, conns: int, shrink: bool = False) -> NEATPopulation:
        """Widen (or with ``shrink`` narrow) the node/connection arrays to the given capacity."""
        out = {}
        for name, t in self.tensors.items():
            width = nodes if name.startswith("node") else conns
            if not shrink:
                width = max(width, t.shape[1])
            out[name] = pad_columns(t, width, GENE_FILL[name])
        return self.replace(**out)

    def sort_genes(self, nodes: bool = True, conns: bool = True) -> NEATPopulation:
        """Re-sort every row by node id and innovation number (after inserting genes);
        ``nodes`` / ``conns`` = False leaves that gene kind as it is."""
        out = {}
        if nodes:
            order = torch.argsort(self.node_key, dim=1, stable=True)
            for name in NODE_FIELDS:
                out[name] = getattr(self, name).gather(1, order)
        if conns:
            order = torch.argsort(self.conn_innovation, dim=1, stable=True)
            for name in CONN_FIELDS:
                out[name] = getattr(self, name).gather(1, order)
        return self.replace(**out)

    # -- single genomes --------------------------------------------------------------------------
    def genome(self, index: int) -> dict[str, Any]:
        """Genome ``index`` as a dict of 1-D tensors (padding removed) plus JSON metadata."""
        n = int((self.node_key[index] != PAD).sum())
        c = int((self.conn_innovation[index] != PAD).sum())
        out: dict[str, Any] = {
            "format": GENOME_FORMAT,
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "feed_forward": self.feed_forward,
            "activations": list(self.activations),
        }
        for name in NODE_FIELDS:
            out[name] = getattr(self, name)[index, :n].detach().clone().cpu()
        for name in CONN_FIELDS:
            out[name] = getattr(self, name)[index, :c].detach().clone().cpu()
        return out

    @classmethod
    def from_genomes(cls, genomes: list[dict[str, Any]]) -> NEATPopulation:
        """Stack genome dicts (from ``genome()`` or ``genome_from_json``) into one population."""
        if not genomes:
            raise ValueError("from_genomes needs at least one genome")
        first = genomes[0]
        names: list[str] = []
        for g in genomes:
            for a in g["activations"]:
                if a not in names:
                    names.append(a)
        n = max(len(g["node_key"]) for g in genomes)
        c = max(len(g["conn_innovation"]) for g in genomes)
        cols: dict[str, list[torch.Tensor]] = {k: [] for k in NODE_FIELDS + CONN_FIELDS}
        for g in genomes:
            remap = torch.tensor([names.index(a) for a in g["activations"]] or [0], dtype=torch.long)
            order_n = torch.argsort(torch.as_tensor(g["node_key"], dtype=torch.long), stable=True)
            order_c = torch.argsort(torch.as_tensor(g["conn_innovation"], dtype=torch.long), stable=True)
            for name in NODE_FIELDS + CONN_FIELDS:
                t = torch.as_tensor(g[name])[order_n if name.startswith("node") else order_c]
                if name == "node_activation":
                    t = remap[t.long()]
                width = n if name.startswith("node") else c
                cols[name].append(pad_columns(t.unsqueeze(0), width, GENE_FILL[name])[0])
        dtypes = {
            "node_key": torch.long,
            "node_activation": torch.long,
            "node_aggregation": torch.long,
            "conn_innovation": torch.long,
            "conn_in": torch.long,
            "conn_out": torch.long,
            "conn_enabled": torch.bool,
        }
        tensors = {k: torch.stack(v).to(dtypes.get(k, torch.float32)) for k, v in cols.items()}
        return cls(
            int(first["num_inputs"]),
            int(first["num_outputs"]),
            names,
            feed_forward=bool(first.get("feed_forward", True)),
            **tensors,
        )

    # -- checkpoints -----------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Tensors + JSON only (for the runtime's safetensors/JSON checkpoint split)."""
        return {
            "num_inputs": self.num_inputs,
            "num_outputs": self.num_outputs,
            "feed_forward": self.feed_forward,
            "activations": list(self.activations),
            **{k: v.detach().cpu().contiguous() for k, v in self.tensors.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NEATPopulation:
        tensors = {k: torch.as_tensor(state[k]) for k in NODE_FIELDS + CONN_FIELDS}
        return cls(
            int(state["num_inputs"]),
            int(state["num_outputs"]),
            list(state["activations"]),
            feed_forward=bool(state["feed_forward"]),
            **tensors,
        )


# -- genome JSON -----------------------------------------------------------------------------------


def genome_to_json(genome: dict[str, Any]) -> dict[str, Any]:
    """A genome dict as plain JSON (names instead of indices); ``genome_from_json`` inverts it."""
    acts = genome["activations"]
    nodes = [
        {
            "key": int(k),
            "bias": float(b),
            "response": float(r),
            "activation": acts[int(a)],
            "aggregation": AGGREGATIONS[int(g)],
        }
        for k, b, r, a, g in zip(
            genome["node_key"].tolist(),
            genome["node_bias"].tolist(),
            genome["node_response"].tolist(),
            genome["node_activation"].tolist(),
            genome["node_aggregation"].tolist(),
            strict=True,
        )
    ]
    conns = [
        {"innovation": int(i), "in": int(a), "out": int(b), "weight": float(w), "enabled": bool(e)}
        for i, a, b, w, e in zip(
            genome["conn_innovation"].tolist(),
            genome["conn_in"].tolist(),
            genome["conn_out"].tolist(),
            genome["conn_weight"].tolist(),
            genome["conn_enabled"].tolist(),
            strict=True,
        )
    ]
    return {
        "format": GENOME_FORMAT,
        "num_inputs": int(genome["num_inputs"]),
        "num_outputs": int(genome["num_outputs"]),
        "feed_forward": bool(genome["feed_forward"]),
        "nodes": nodes,
        "connections": conns,
    }


def genome_from_json(spec: dict[str, Any]) -> dict[str, Any]:
    """Rebuild a genome dict from ``genome_to_json`` output (float32 values round-trip exactly)."""
    if spec.get("format") != GENOME_FORMAT:
        raise ConfigError(f"genome format {spec.get('format')!r}; allowed: {GENOME_FORMAT}")
    nodes, conns = spec["nodes"], spec["connections"]
    acts: list[str] = []
    for n in nodes:
        name = ACTIVATIONS.canonical(n["activation"])
        if name not in acts:
            acts.append(name)
    return {
        "format": GENOME_FORMAT,
        "num_inputs": int(spec["num_inputs"]),
        "num_outputs": int(spec["num_outputs"]),
        "feed_forward": bool(spec.get("feed_forward", True)),
        "activations": acts,
        "node_key": torch.tensor([n["key"] for n in nodes], dtype=torch.long),
        "node_bias": torch.tensor([n["bias"] for n in nodes], dtype=torch.float32),
        "node_response": torch.tensor([n["response"] for n in nodes], dtype=torch.float32),
        "node_activation": torch.tensor(
            [acts.index(ACTIVATIONS.canonical(n["activation"])) for n in nodes], dtype=torch.long
        ),
        "node_aggregation": torch.tensor(
            [aggregation_index(n["aggregation"]) for n in nodes], dtype=torch.long
        ),
        "conn_innovation": torch.tensor([c["innovation"] for c in conns], dtype=torch.long),
        "conn_in": torch.tensor([c["in"] for c in conns], dtype=torch.long),
        "conn_out": torch.tensor([c["out"] for c in conns], dtype=torch.long),
        "conn_weight": torch.tensor([c["weight"] for c in conns], dtype=torch.float32),
        "conn_enabled": torch.tensor([bool(c["enabled"]) for c in conns], dtype=torch.bool),
    }


def as_population(obj: Any) -> NEATPopulation:
    """Accept a NEATPopulation, one genome (dict or JSON) or a list of them."""
    if isinstance(obj, NEATPopulation):
        return obj
    if isinstance(obj, dict):
        obj = [obj]
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(g, dict) for g in obj):
        return NEATPopulation.from_genomes([genome_from_json(g) if "nodes" in g else g for g in obj])
    raise TypeError(f"a NEAT phenotype runs a NEATPopulation or genome dicts, not {type(obj).__name__}")


# -- compilation -----------------------------------------------------------------------------------


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
        names = ("src", "dst", "weight", "bias", "response", "act", "agg", "counts", "counts_all", "level")
        sliced = {n: getattr(self, n)[start:] for n in names if getattr(self, n) is not None}
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
    names = ("src", "dst", "weight", "bias", "response", "act", "agg", "counts", "counts_all", "level")
    order, inverse, moved = None, None, {}
    if not bool((depth[1:] >= depth[:-1]).all()):
        order = torch.argsort(depth, stable=True)
        inverse = torch.argsort(order)
        depth = depth[order]
        moved = {n: getattr(c, n)[order] for n in names if getattr(c, n) is not None}
    levels = torch.arange(1, c.num_levels + 1, device=depth.device)
    row_start = torch.searchsorted(depth, levels).tolist()
    return dataclasses.replace(
        c, **moved, row_start=row_start, order=order, inverse=inverse, depth_sorted=True
    )


# -- batched evaluation ----------------------------------------------------------------------------


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


# -- the phenotype ---------------------------------------------------------------------------------


class NEATModule(torch.nn.Module):
    """One NEAT genome as a plain ``torch.nn.Module``: ``forward(x[B, in]) -> [B, out]``.

    The compiled slot tensors are buffers (so ``.to(device)`` and ``state_dict()`` work);
    feed-forward genomes are evaluated level by level, recurrent ones run ``steps`` updates
    per call and keep their node values between calls (``reset()`` clears them).
    """

    _TENSORS = ("src", "dst", "weight", "bias", "response", "act", "agg", "counts", "counts_all", "level")

    def __init__(self, genome: dict[str, Any], steps: int = 1):
        super().__init__()
        self.genome_json = genome_to_json(genome)
        self.steps = int(steps)
        compiled = compile_population(NEATPopulation.from_genomes([genome]))
        self._meta = compiled
        for name in self._TENSORS:
            value = getattr(compiled, name)
            if value is not None:
                self.register_buffer(name, value.clone())
        self._state: torch.Tensor | None = None

    def reset(self) -> None:
        self._state = None

    def compiled(self) -> CompiledNEAT:
        """The slot tensors as a ``CompiledNEAT`` on this module's device."""
        values = {name: getattr(self, name, None) for name in self._TENSORS}
        m = self._meta
        return CompiledNEAT(
            m.num_inputs,
            m.num_outputs,
            m.num_slots,
            act_fns=m.act_fns,
            agg_kinds=m.agg_kinds,
            num_levels=m.num_levels,
            row_start=m.row_start,
            act_inplace=m.act_inplace,
            **values,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = x.dim() == 1
        xb = x.reshape(1, -1, x.shape[-1]).to(self.weight.dtype)
        c = self.compiled()
        state = self._state if self._state is not None and self._state.shape[1] == xb.shape[1] else None
        out, values = run_compiled(c, xb, steps=self.steps, state=state, flat_reads=False)
        if c.level is None:
            self._state = values.detach()
        out = out[0]
        return out[0] if single else out

    def extra_repr(self) -> str:
        g = self.genome_json
        return (
            f"nodes={len(g['nodes'])}, connections={len(g['connections'])}, feed_forward={g['feed_forward']}"
        )


class NEATPhenotype:
    """Runs a NEAT population: ``forward(population, x[P, B, in] | x[B, in]) -> [P, B, out]``.

    ``population`` is what ``NEAT.ask()`` returns (a :class:`NEATPopulation`), or one genome
    (dict or JSON), or a list of genomes. ``recurrent_steps``: updates per call for recurrent
    genomes; with ``stateful`` their node values persist between calls on the same population
    (for control tasks; ``reset_state(population)`` clears them), otherwise every call starts
    from zeros. ``chunk_size`` (0 = all) bounds memory: genomes are compiled and run in chunks;
    populations of at least ``2 * group_min`` genomes are also grouped by size (at most 8
    groups), each padded only to its own largest genome.
    ``output_activation`` (None = evolved like any node) fixes the output nodes' activation.
    """

    num_params = 0

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        *,
        recurrent_steps: int = 1,
        stateful: bool = False,
        chunk_size: int = 0,
        output_activation: str | None = None,
        group_min: int = 1250,
    ):
        if num_inputs < 1 or num_outputs < 1:
            raise ConfigError("network.type = 'neat' needs a task with inputs and outputs")
        self.in_features = int(num_inputs)
        self.out_features = int(num_outputs)
        self.recurrent_steps = int(recurrent_steps)
        self.stateful = bool(stateful)
        self.chunk_size = int(chunk_size)
        self.group_min = int(group_min)
        self.output_activation = (
            None if output_activation is None else ACTIVATIONS.canonical(output_activation)
        )

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """NEAT draws its own initial genomes; there is no flat parameter vector."""
        return torch.zeros(0)

    def _chunks(
        self, pop: NEATPopulation, device: torch.device, dtype: torch.dtype
    ) -> tuple[list[CompiledNEAT], torch.Tensor | None]:
        """Compiled chunks (cached on the population) and the row order they hold (None = as is).

        Large populations are ordered by genome size first, so each chunk is trimmed to the
        widths of similar genomes instead of the largest one.
        """
        key = ("compiled", self.chunk_size, str(device), dtype)
        if key not in pop.cache:
            size = len(pop)
            step = self.chunk_size if self.chunk_size > 0 else max(size, 1)
            order = None
            nodes, conns = pop.gene_counts()
            if size >= 2 * self.group_min:
                step = min(step, -(-size // min(8, size // self.group_min)))
                order = torch.argsort(nodes + conns, stable=True)
            chunks = []
            for start in range(0, size, step):
                rows = slice(start, start + step) if order is None else order[start : start + step]
                width_n = max(int(nodes[rows].max()), pop.num_outputs) if size else pop.num_outputs
                width_c = int(conns[rows].max()) if size else 0
                # selected and trimmed in one copy; compilation never reads innovation numbers
                part = pop.select(rows, width_n, width_c, skip=("conn_innovation",))
                chunks.append(compile_population(part, device, dtype, depth_sorted=False))
            inverse = None if order is None else torch.argsort(order).to(device)
            pop.cache[key] = (chunks, None if order is None else order.to(device), inverse)
        elif not pop.cache.get(key + ("depth_sorted",)):  # run again (an episode): sort once
            chunks, order, inverse = pop.cache[key]
            pop.cache[key] = ([sort_by_depth(c) for c in chunks], order, inverse)
            pop.cache[key + ("depth_sorted",)] = True
        return pop.cache[key]

    def _population(self, population: Any) -> NEATPopulation:
        """``population`` as a NEATPopulation; genome lists are converted once per object (the
        control task calls ``forward`` every step with the same list, and recurrent state lives
        on the converted population)."""
        if isinstance(population, NEATPopulation):
            return population
        last = getattr(self, "_last", None)
        if last is not None and last[0] is population:
            return last[1]
        pop = as_population(population)
        self._last = (population, pop)
        return pop

    def forward(self, population: Any, x: torch.Tensor) -> torch.Tensor:
        pop = self._population(population)
        if pop.num_inputs != self.in_features or pop.num_outputs != self.out_features:
            raise ValueError(
                f"genomes have {pop.num_inputs} inputs / {pop.num_outputs} outputs; "
                f"this phenotype expects {self.in_features} / {self.out_features}"
            )
        if not torch.is_floating_point(x):
            x = x.float()
        size = len(pop)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(size, -1, -1)
        if x.dim() != 3 or x.shape[0] != size or x.shape[2] != self.in_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected [P={size}, B, {self.in_features}] or [B, in]"
            )
        chunks, order, inverse = self._chunks(pop, x.device, x.dtype)
        if order is not None:
            x = x.index_select(0, order)
        states = pop.cache.setdefault("state", {}) if self.stateful else {}
        outs = []
        start = 0
        for i, c in enumerate(chunks):
            rows = c.src.shape[0]
            xc = x[start : start + rows]
            state = states.get(i)
            if state is not None and state.shape[1] != xc.shape[1]:
                state = None
            out, values = run_compiled(c, xc, steps=self.recurrent_steps, state=state)
            if self.stateful and c.level is None:
                states[i] = values
            outs.append(out)
            start += rows
        out = torch.cat(outs, dim=0) if len(outs) > 1 else outs[0]
        return out if inverse is None else out.index_select(0, inverse)

    __call__ = forward

    def reset_state(self, population: Any) -> None:
        """Forget recurrent node values kept for ``population`` (start of a new episode)."""
        self._population(population).cache.pop("state", None)

    def to_module(self, genome: Any) -> NEATModule:
        """One genome as a plain ``torch.nn.Module``."""
        return NEATModule(_one_genome(genome), steps=self.recurrent_steps)

    def named_tensors(self, genome: Any) -> dict[str, torch.Tensor]:
        """The genome's gene tensors (for safetensors); names are in ``member_spec``."""
        g = _one_genome(genome)
        return {k: g[k].detach().contiguous() for k in NODE_FIELDS + CONN_FIELDS}

    def member_spec(self, genome: Any) -> dict[str, Any]:
        """The genome as JSON (round-trips through ``member_from_spec``)."""
        return genome_to_json(_one_genome(genome))

    def member_from_spec(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The genome dict back from ``member_spec`` JSON."""
        return genome_from_json(spec)

    def spec(self) -> dict[str, Any]:
        return {
            "type": "neat",
            "num_inputs": self.in_features,
            "num_outputs": self.out_features,
            "recurrent_steps": self.recurrent_steps,
            "stateful": self.stateful,
            "chunk_size": self.chunk_size,
            "output_activation": self.output_activation,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> NEATPhenotype:
        return cls(
            spec["num_inputs"],
            spec["num_outputs"],
            recurrent_steps=spec.get("recurrent_steps", 1),
            stateful=spec.get("stateful", False),
            chunk_size=spec.get("chunk_size", 0),
            output_activation=spec.get("output_activation"),
        )


def _one_genome(genome: Any) -> dict[str, Any]:
    if isinstance(genome, NEATPopulation):
        if len(genome) != 1:
            raise ValueError(f"expected one genome, got a population of {len(genome)}")
        return genome.genome(0)
    if isinstance(genome, dict):
        return genome_from_json(genome) if "nodes" in genome else genome
    raise TypeError(f"expected a NEAT genome dict or JSON, not {type(genome).__name__}")


# -- config ----------------------------------------------------------------------------------------


class NEATNetworkParams(NetworkParams):
    """``[network] type = "neat"``: how genomes are run (the genome knobs live in ``[strategy]``)."""

    recurrent_steps: int = Field(1, ge=1, description="updates per call for recurrent genomes")
    stateful: bool = Field(False, description="recurrent node values persist between calls (control)")
    chunk_size: int = Field(0, ge=0, description="genomes compiled and run at a time; 0 = all")
    output_activation: str | None = Field(
        None, description="fix the output nodes' activation; None = evolved (activation_default)"
    )

    @field_validator("output_activation")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None:
            ACTIVATIONS.canonical(value)
        return value


def build_neat(
    params: NEATNetworkParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    **kw: Any,
) -> NEATPhenotype:
    """Size a NEAT phenotype from the task (the task's default output activation is not imposed)."""
    return NEATPhenotype(
        in_features,
        out_features,
        recurrent_steps=params.recurrent_steps,
        stateful=params.stateful,
        chunk_size=params.chunk_size,
        output_activation=params.output_activation,
    )


register_network(
    "neat",
    NEATNetworkParams,
    build_neat,
    from_spec=NEATPhenotype.from_spec,
    runs=(PopulationKind.NEAT,),
    description="NEAT genomes compiled to padded tensors (topology evolves)",
)

__all__ = [
    "AGGREGATIONS",
    "CONN_FIELDS",
    "GENE_FILL",
    "NODE_FIELDS",
    "PAD",
    "CompiledNEAT",
    "NEATModule",
    "NEATNetworkParams",
    "NEATPhenotype",
    "NEATPopulation",
    "aggregation_index",
    "as_population",
    "build_neat",
    "compile_population",
    "genome_from_json",
    "genome_to_json",
    "node_slots",
    "run_compiled",
    "slots_of",
]
