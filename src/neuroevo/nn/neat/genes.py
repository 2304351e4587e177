"""NEAT's gene fields: what a node gene and a connection gene hold, and how an empty slot reads.

A genome has node genes (key, bias, response, activation, aggregation) and connection genes
(innovation number, in, out, weight, enabled), as in Stanley & Miikkulainen (2002) and
neat-python's ``genes.py``. Stored as padded tensors (see ``population.py``), each gene
field is one column block; an empty slot holds ``GENE_FILL`` (its key is ``PAD``).
"""

from __future__ import annotations

from typing import Any

import torch

from neuroevo.core.errors import ConfigError

PAD = 2**31 - 1
"""Key of an empty gene slot; sorts after every real node id or innovation number (ids, keys
and category indices are int32: half the bytes of int64 for every table-wide step, measured
7% of a generation at P = 10,000; a run would need two billion innovations to reach it)."""

LEGACY_PAD = 2**62
"""``PAD`` of the int64 gene tables of checkpoints written before 2026-12-02 (read, converted)."""

AGGREGATIONS: tuple[str, ...] = ("sum", "product", "max", "min", "maxabs", "median", "mean")
"""Aggregation functions a node may use; genomes store the index into this tuple."""

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
GENE_DTYPES: dict[str, torch.dtype] = {
    "node_key": torch.int32,
    "node_bias": torch.float32,
    "node_response": torch.float32,
    "node_activation": torch.int32,
    "node_aggregation": torch.int32,
    "conn_innovation": torch.int32,
    "conn_in": torch.int32,
    "conn_out": torch.int32,
    "conn_weight": torch.float32,
    "conn_enabled": torch.bool,
}


def aggregation_index(name: str) -> int:
    """Index of an aggregation name in ``AGGREGATIONS``; a ConfigError lists the allowed ones."""
    if name not in AGGREGATIONS:
        raise ConfigError(f"aggregation {name!r}; allowed: {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS.index(name)


def pad_columns(t: torch.Tensor, width: int, fill: Any, copy: bool = True) -> torch.Tensor:
    """``t[K, W]`` cut or padded (with ``fill``) to ``width`` columns (``copy`` = False: a cut
    may be a view of ``t``)."""
    have = t.shape[1]
    if have == width:
        return t.contiguous()
    if have > width:
        return t[:, :width].contiguous() if copy else t[:, :width]
    return torch.constant_pad_nd(t, (0, width - have), fill)  # one call (exact for integer fills)


__all__ = [
    "AGGREGATIONS",
    "CONN_FIELDS",
    "GENE_DTYPES",
    "GENE_FILL",
    "LEGACY_PAD",
    "NODE_FIELDS",
    "PAD",
    "aggregation_index",
    "pad_columns",
]
