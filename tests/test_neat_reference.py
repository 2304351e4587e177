"""Straightforward per-genome NEAT evaluation and distance: the reference for the batched code."""

from __future__ import annotations

import torch

from neuroevo.nn.activations import get_activation

AGG = {
    "sum": sum,
    "product": lambda v: torch.stack(v).prod(0),
    "max": lambda v: torch.stack(v).amax(0),
    "min": lambda v: torch.stack(v).amin(0),
    "maxabs": lambda v: _maxabs(v),
    "median": lambda v: torch.stack(v).median(0).values if len(v) % 2 else _even_median(v),
    "mean": lambda v: sum(v) / len(v),
}


def _maxabs(v):
    s = torch.stack(v)
    hi, lo = s.amax(0), s.amin(0)
    return torch.where(hi.abs() >= lo.abs(), hi, lo)


def _even_median(v):
    s = torch.stack(v).sort(0).values
    k = len(v) // 2
    return 0.5 * (s[k - 1] + s[k])


def _node_out(node, inputs, value_of, batch):
    if inputs:
        agg = AGG[node["aggregation"]]([w * value_of(src) for src, w in inputs])
    else:
        agg = torch.zeros(())
    z = torch.tensor(node["bias"]) + torch.tensor(node["response"]) * agg
    return get_activation(node["activation"])(z).expand(batch)


def reference_forward(genome_json: dict, x: torch.Tensor, steps: int = 1) -> torch.Tensor:
    """Outputs [B, out] of one genome (JSON form) for x[B, in], node by node."""
    num_in, num_out = genome_json["num_inputs"], genome_json["num_outputs"]
    nodes = {n["key"]: n for n in genome_json["nodes"]}
    incoming: dict[int, list[tuple[int, float]]] = {k: [] for k in nodes}
    for c in genome_json["connections"]:
        if c["enabled"] and c["out"] in incoming and (c["in"] in nodes or 0 <= c["in"] < num_in):
            incoming[c["out"]].append((c["in"], torch.tensor(c["weight"])))
    outputs = list(range(num_in, num_in + num_out))
    if genome_json["feed_forward"]:
        memo: dict[int, torch.Tensor] = {i: x[:, i] for i in range(num_in)}

        def value(k):
            if k not in memo:
                memo[k] = _node_out(nodes[k], incoming[k], value, x.shape[0])
            return memo[k]

        return torch.stack([value(o).expand(x.shape[0]) for o in outputs], 1)
    values = {k: torch.zeros(x.shape[0]) for k in nodes}
    for i in range(num_in):
        values[i] = x[:, i]
    for _ in range(steps):
        new = {k: _node_out(nodes[k], incoming[k], lambda s: values[s], x.shape[0]) for k in nodes}
        values.update(new)
    return torch.stack([values[o].expand(x.shape[0]) for o in outputs], 1)


def reference_distance(a: dict, b: dict, cd: float, cw: float, ce: float | None = None) -> float:
    """neat-python-style compatibility distance of two genomes (JSON form), gene by gene."""
    ce = cd if ce is None else ce

    def part(ga, gb, key, diff):
        da, db = {g[key]: g for g in ga}, {g[key]: g for g in gb}
        if not da and not db:
            return 0.0
        max_a, max_b = max(da, default=-1), max(db, default=-1)
        total = 0.0
        for k, g in da.items():
            if k in db:
                total += cw * diff(g, db[k])
            else:
                total += ce if k > max_b else cd
        for k in db:
            if k not in da:
                total += ce if k > max_a else cd
        return total / max(len(da), len(db))

    def node_diff(x, y):
        return (
            abs(x["bias"] - y["bias"])
            + abs(x["response"] - y["response"])
            + (x["activation"] != y["activation"])
            + (x["aggregation"] != y["aggregation"])
        )

    def conn_diff(x, y):
        return abs(x["weight"] - y["weight"]) + (x["enabled"] != y["enabled"])

    return part(a["nodes"], b["nodes"], "key", node_diff) + part(
        a["connections"], b["connections"], "innovation", conn_diff
    )


def test_reference_on_a_hand_built_xor_network():
    """The reference itself: a known 2-2-1 XOR net (OR and NAND into AND), by hand."""

    def node(key, bias):
        return {"key": key, "bias": bias, "response": 1.0, "activation": "step", "aggregation": "sum"}

    def conn(inn, a, b, w):
        return {"innovation": inn, "in": a, "out": b, "weight": w, "enabled": True}

    genome = {
        "num_inputs": 2,
        "num_outputs": 1,
        "feed_forward": True,
        "nodes": [node(2, -1.5), node(3, -0.5), node(4, 1.5)],
        "connections": [
            conn(0, 0, 3, 1.0),
            conn(1, 1, 3, 1.0),
            conn(2, 0, 4, -1.0),
            conn(3, 1, 4, -1.0),
            conn(4, 3, 2, 1.0),
            conn(5, 4, 2, 1.0),
        ],
    }
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert reference_forward(genome, x)[:, 0].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert reference_distance(genome, genome, 1.0, 0.5) == 0.0
