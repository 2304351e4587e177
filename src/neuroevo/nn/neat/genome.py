"""One NEAT genome on its own: a dict of 1-D gene tensors plus metadata, and its JSON form.

``NEATPopulation.genome(i)`` gives the dict (what ``NEAT.best.params`` holds);
``genome_to_json`` writes node and connection genes by name (activations and aggregations
as names, not indices), ``genome_from_json`` reads them back exactly (float32 values
survive the round trip). ``best/network.json`` and ``neuroevo best --export`` use this form.
"""

from __future__ import annotations

from typing import Any

import torch

from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.neat.genes import AGGREGATIONS, aggregation_index

GENOME_FORMAT = "neuroevo.neat.genome/1"


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


__all__ = ["GENOME_FORMAT", "genome_from_json", "genome_to_json"]
