"""A population of NEAT genomes as padded tensors: what ``NEAT.ask()`` hands out.

P genomes are node genes ``[P, N]`` and connection genes ``[P, C]`` (one tensor per gene
field, ``genes.py``), each row sorted by key (node id / innovation number) with empty slots
holding ``PAD`` at the end, so aligning two genomes by innovation number is a
``searchsorted``. Node ids: inputs are ``0 .. num_inputs-1`` (they have no genes), outputs
``num_inputs .. num_inputs+num_outputs-1`` (always present, first in every row), hidden
nodes get fresh ids from the strategy's innovation counter.

A population is indexable (``pop[i]`` is one genome dict) and sliceable (``pop[a:b]``), so
an executor can shard it; ``state()`` / ``from_state`` are its checkpoint form (tensors and
JSON only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from neuroevo.core.hostops import argsort_stable
from neuroevo.nn.neat.genes import (
    CONN_FIELDS,
    GENE_DTYPES,
    GENE_FILL,
    LEGACY_PAD,
    NODE_FIELDS,
    PAD,
    pad_columns,
)
from neuroevo.nn.neat.genome import GENOME_FORMAT, genome_from_json

NUMPY_SLOTS = 1 << 16
"""Gene slots up to which a CPU population's structural mutations run in NumPy: a tensor call
costs several NumPy calls, which is what populations up to about a thousand genomes pay for
(at P = 10,000 the tensor code is faster)."""

NUMPY_ANY_SIZE = True
"""Whether the steps whose NumPy form is as fast at every size (attribute mutation, the flat
graph and its check: torch's CPU comparisons and ``nonzero`` are several times slower than NumPy's;
crossover, the cycle check and the compatibility distance as compiled loops) run in NumPy on
every CPU population; tests switch it off to run the tensor code."""


@dataclass(eq=False)
class NEATPopulation:
    """P genomes as padded tensors (what ``NEAT.ask()`` returns and ``NEATPhenotype`` runs).

    ``activations`` names the activation of index k (a registry name); aggregations index
    ``AGGREGATIONS``. Rows are sorted by node id / innovation, ``PAD`` slots at the end.
    Populations compare and hash by identity (``eq=False``): the phenotype keys its
    compiled form and recurrent state on the population object.
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
    _gene_counts: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return int(self.node_key.shape[0])

    def __getitem__(self, index: int | slice | torch.Tensor | list[int]) -> Any:
        """``pop[i]`` is genome i as a dict; ``pop[a:b]`` / ``pop[index_tensor]`` a sub-population
        (what an executor sharding the population across workers needs)."""
        if isinstance(index, int):
            return self.genome(index)
        return self.select(index)

    @property
    def in_numpy(self) -> bool:
        """Whether this population is small enough, and on the CPU, for its structural
        mutations to run on NumPy views of its tensors (``NUMPY_SLOTS``)."""
        slots = self.node_key.numel() + self.conn_innovation.numel()
        return slots <= NUMPY_SLOTS and self.node_key.device.type == "cpu"

    @property
    def numpy_any_size(self) -> bool:
        """Whether this population is on the CPU, for the steps that run in NumPy at any size
        (``NUMPY_ANY_SIZE``)."""
        return NUMPY_ANY_SIZE and self.node_key.device.type == "cpu"

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in NODE_FIELDS + CONN_FIELDS}

    def replace(self, **tensors: torch.Tensor) -> NEATPopulation:
        """A new population with some tensors swapped (gene counts are counted again)."""
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
            out = {
                k: (v if width[k[:4]] is None else v[:, cols[k]]).index_select(0, index)
                for k, v in self.tensors.items()
                if k not in skip
            }
        for k in skip:
            shape = next(v for n, v in out.items() if n[:4] == k[:4]).shape
            fill = torch.full((), GENE_FILL[k], dtype=getattr(self, k).dtype, device=self.node_key.device)
            out[k] = fill.expand(shape)  # a read-only view, no copy
        selected = self.replace(**out)
        if self._gene_counts is not None and not skip and not isinstance(rows, slice):
            # the callers' widths keep every gene; copies, as mutation updates them in place
            counts = self._gene_counts
            selected._gene_counts = (counts[0].index_select(0, index), counts[1].index_select(0, index))
        return selected

    def node_counts(self) -> torch.Tensor:
        return _row_counts(self.node_key)

    def conn_counts(self) -> torch.Tensor:
        return _row_counts(self.conn_innovation)

    def gene_counts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(node genes, connection genes) per genome, counted once per population: speciation,
        reproduction and the phenotype's chunking all need them. (Only mutation changes a
        population's tensors in place, on fresh children, and it keeps their counts.)"""
        if self._gene_counts is None:
            self._gene_counts = (self.node_counts(), self.conn_counts())
        return self._gene_counts

    def trimmed(self) -> NEATPopulation:
        """Drop trailing columns that are empty in every row (rows must be sorted)."""
        n = max(int(self.node_counts().max()) if len(self) else 0, self.num_outputs)
        c = int(self.conn_counts().max()) if len(self) else 0
        return self.padded(n, c, shrink=True)

    def padded(self, nodes: int, conns: int, shrink: bool = False) -> NEATPopulation:
        """Widen (or with ``shrink`` narrow, to no fewer columns than the widest genome has
        genes) the node/connection arrays to the given capacity."""
        out = {}
        for name, t in self.tensors.items():
            width = nodes if name.startswith("node") else conns
            if not shrink:
                width = max(width, t.shape[1])
            out[name] = pad_columns(t, width, GENE_FILL[name])
        return self._with_counts(self.replace(**out))

    def _with_counts(self, other: NEATPopulation) -> NEATPopulation:
        """``other`` (the same genes in other slots) given this population's gene counts."""
        other._gene_counts = self._gene_counts
        return other

    def set_gene_counts(self, nodes: torch.Tensor, conns: torch.Tensor) -> None:
        """Record gene counts a caller knows (crossover: the primary parents'; mutation keeps
        them up to date), so they need not be counted again."""
        self._gene_counts = (nodes, conns)

    def sort_genes(self, nodes: bool = True, conns: bool = True) -> NEATPopulation:
        """Re-sort every row by node id and innovation number (after inserting genes);
        ``nodes`` / ``conns`` = False leaves that gene kind as it is."""
        out = {}
        if nodes:
            order = argsort_stable(self.node_key, dim=1)
            for name in NODE_FIELDS:
                out[name] = getattr(self, name).gather(1, order)
        if conns:
            order = argsort_stable(self.conn_innovation, dim=1)
            for name in CONN_FIELDS:
                out[name] = getattr(self, name).gather(1, order)
        return self._with_counts(self.replace(**out))  # sorting keeps every gene

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
        tensors = {k: torch.stack(v).to(GENE_DTYPES[k]) for k, v in cols.items()}
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
        """The population ``state()`` wrote (int64 tables of older checkpoints are converted)."""
        tensors = {k: torch.as_tensor(state[k]) for k in NODE_FIELDS + CONN_FIELDS}
        for k in ("node_key", "conn_innovation"):
            if tensors[k].dtype == torch.long:  # the int64 format: PAD was LEGACY_PAD
                tensors[k] = torch.where(tensors[k] == LEGACY_PAD, PAD, tensors[k])
        tensors = {k: v.to(GENE_DTYPES[k]) for k, v in tensors.items()}
        return cls(
            int(state["num_inputs"]),
            int(state["num_outputs"]),
            list(state["activations"]),
            feed_forward=bool(state["feed_forward"]),
            **tensors,
        )


def _row_counts(keys: torch.Tensor) -> torch.Tensor:
    """Genes per row of sorted ``keys`` (``PAD`` last): where ``PAD`` would be inserted, a
    binary search per row (cheaper than comparing and summing every slot)."""
    if keys.numel() < 1 << 14:  # small: two tensor calls beat the search's setup
        return (keys != PAD).sum(1)
    pad = torch.full((keys.shape[0], 1), PAD, dtype=keys.dtype, device=keys.device)
    return torch.searchsorted(keys.contiguous(), pad).squeeze(1)


def as_population(obj: Any) -> NEATPopulation:
    """Accept a NEATPopulation, one genome (dict or JSON) or a list of them."""
    if isinstance(obj, NEATPopulation):
        return obj
    if isinstance(obj, dict):
        obj = [obj]
    if isinstance(obj, (list, tuple)) and obj and all(isinstance(g, dict) for g in obj):
        return NEATPopulation.from_genomes([genome_from_json(g) if "nodes" in g else g for g in obj])
    raise TypeError(f"a NEAT phenotype runs a NEATPopulation or genome dicts, not {type(obj).__name__}")


def cat_populations(parts: list[NEATPopulation], trim: bool = False) -> NEATPopulation:
    """Stack populations (widened to a common capacity; with ``trim``, cut to the widest
    genome in the same copy)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    counts = None
    if trim:
        counts = [p.gene_counts() for p in parts]
        n = max(max(int(c[0].max()) if len(c[0]) else 0 for c in counts), parts[0].num_outputs)
        c = max(int(c[1].max()) if len(c[1]) else 0 for c in counts)
    else:
        n = max(p.node_key.shape[1] for p in parts)
        c = max(p.conn_innovation.shape[1] for p in parts)
    tensors = {}
    for k in NODE_FIELDS + CONN_FIELDS:
        width = n if k.startswith("node") else c
        pieces = [getattr(p, k) for p in parts]  # wider pieces are cut as views: one copy
        tensors[k] = torch.cat([pad_columns(t, width, GENE_FILL[k], copy=False) for t in pieces])
    out = parts[0].replace(**tensors)
    if counts is not None:
        out._gene_counts = (torch.cat([c[0] for c in counts]), torch.cat([c[1] for c in counts]))
    return out


__all__ = ["NEATPopulation", "as_population", "cat_populations"]
