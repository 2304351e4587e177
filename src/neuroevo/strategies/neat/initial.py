"""NEAT's initial genomes: minimal structure, grown by evolution (paper, section 3.4).

Every genome starts with the output nodes (and ``num_hidden`` hidden ones) and the
connections of ``initial_connection``: ``full`` (inputs -> hidden -> outputs, or inputs ->
outputs without hidden nodes; ``full_direct`` adds inputs -> outputs), ``partial`` (each of
those kept with probability ``initial_connection_fraction``), or ``none``. Connection
innovations are the pair's index, node ids count up from the outputs, so all initial genomes
align gene by gene. Weights are ``weight_init_type`` draws (or any registered initialiser
per block of connections), biases and responses their attribute's new values.
"""

from __future__ import annotations

import torch

from neuroevo.nn.init import get_initializer
from neuroevo.nn.neat.genes import GENE_DTYPES, PAD
from neuroevo.nn.neat.population import NEATPopulation
from neuroevo.strategies.neat.attributes import float_init
from neuroevo.strategies.neat.params import GenomeConfig, NEATParams

Blocks = list[tuple[list[int], list[int]]]


def initial_blocks(p: NEATParams, cfg: GenomeConfig) -> Blocks:
    """(sources, targets) blocks of the initial connections, in innovation order."""
    num_in, first_hidden = cfg.num_inputs, cfg.first_hidden
    inputs = list(range(num_in))
    outputs = list(range(num_in, first_hidden))
    hiddens = list(range(first_hidden, first_hidden + p.num_hidden))
    mode = p.initial_connection
    if mode in ("none", "unconnected"):
        return []
    if p.num_hidden == 0:
        return [(inputs, outputs)]
    blocks = [(inputs, hiddens), (hiddens, outputs)]
    if mode.endswith("_direct"):
        blocks.append((inputs, outputs))
    return blocks


def _initial_weights(p: NEATParams, blocks: Blocks, gen: torch.Generator, size: int) -> torch.Tensor:
    total = sum(len(s) * len(d) for s, d in blocks)
    kind = p.weight_init_type
    if isinstance(kind, str) and kind in ("gaussian", "normal", "uniform"):
        return float_init(p, "weight", (size, total), gen)
    init = get_initializer(kind)
    rows = []
    for _ in range(size):  # once per run: registry initialisers draw one matrix at a time
        parts = [init(len(s), len(d), gen).reshape(-1) for s, d in blocks]
        rows.append(torch.cat(parts) if parts else torch.zeros(0))
    return torch.stack(rows).float().clamp(p.weight_min_value, p.weight_max_value)


def initial_population(p: NEATParams, cfg: GenomeConfig, size: int, gen: torch.Generator) -> NEATPopulation:
    """``size`` new genomes (sorted, trimmed)."""
    num_in, num_out = cfg.num_inputs, cfg.num_outputs
    blocks = initial_blocks(p, cfg)
    pairs = [(i, o) for srcs, dsts in blocks for i in srcs for o in dsts]
    npairs = len(pairs)
    node_keys = torch.arange(num_in, cfg.first_hidden + p.num_hidden, dtype=torch.long)
    n = len(node_keys)
    node_act = torch.full((size, n), cfg.act_default, dtype=torch.long)
    if cfg.output_activation is not None:
        node_act[:, :num_out] = cfg.activations.index(cfg.output_activation)
    weights = _initial_weights(p, blocks, gen, size)
    conn_in = torch.tensor([a for a, _ in pairs], dtype=torch.long).expand(size, npairs).clone()
    conn_out = torch.tensor([b for _, b in pairs], dtype=torch.long).expand(size, npairs).clone()
    innov = torch.arange(npairs, dtype=torch.long).expand(size, npairs).clone()
    if p.initial_connection.startswith("partial"):
        keep = torch.rand(size, npairs, generator=gen) < p.initial_connection_fraction
        innov = torch.where(keep, innov, torch.full_like(innov, PAD))
        conn_in = torch.where(keep, conn_in, torch.full_like(conn_in, -1))
        conn_out = torch.where(keep, conn_out, torch.full_like(conn_out, -1))
        weights = torch.where(keep, weights, torch.zeros_like(weights))
    pop = NEATPopulation(
        num_in,
        num_out,
        list(cfg.activations),
        node_key=node_keys.expand(size, n).clone(),
        node_bias=float_init(p, "bias", (size, n), gen),
        node_response=float_init(p, "response", (size, n), gen),
        node_activation=node_act,
        node_aggregation=torch.full((size, n), cfg.agg_default, dtype=torch.long),
        conn_innovation=innov,
        conn_in=conn_in,
        conn_out=conn_out,
        conn_weight=weights,
        conn_enabled=torch.where(
            innov != PAD, torch.full_like(innov, p.enabled_default, dtype=torch.bool), False
        ),
        feed_forward=p.feed_forward,
    )
    pop = pop.replace(**{k: v.to(GENE_DTYPES[k]) for k, v in pop.tensors.items()})
    return pop.sort_genes().trimmed()


__all__ = ["initial_blocks", "initial_population"]
