"""NEAT's structural mutations (paper, section 3.1), on every child at once.

- add node: a random enabled connection ``a -> b`` is disabled and split by a new node:
  ``a -> new`` gets weight 1 and ``new -> b`` the old weight, so the network computes nearly
  what it did (the node starts with the default activation and aggregation);
- delete node: a random hidden node and its connections go (neat-python; 0 by default, the
  paper never deletes);
- add connection: a random source (inputs included) to a random non-input target, with a new
  weight; with ``feed_forward`` no cycles and no output -> output links. An existing pair is
  enabled instead under ``structural_mutation_surer``;
- delete connection: a random connection goes (0 by default).

Each applies to the children drawn for it (``single_structural_mutation``: at most one per
child), in the order above; innovation numbers come from the ``InnovationTracker``. Genes
are written into the first empty slots of their rows (``_insert``): new keys exceed every
existing one, so rows stay sorted, except for a reused innovation, after which the
connection rows are sorted again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuroevo.core.hostops import flatnonzero
from neuroevo.nn.neat.compile import slots_of
from neuroevo.nn.neat.genes import CONN_FIELDS, GENE_FILL, NODE_FIELDS, PAD
from neuroevo.nn.neat.population import NEATPopulation
from neuroevo.strategies.neat.attributes import float_init
from neuroevo.strategies.neat.innovation import InnovationTracker
from neuroevo.strategies.neat.params import GenomeConfig, NEATParams


def _choose(valid: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random True column per row of ``valid[K, W]`` and whether the row had any."""
    if valid.shape[1] == 0:
        zeros = torch.zeros(valid.shape[0], dtype=torch.long)
        return zeros, torch.zeros(valid.shape[0], dtype=torch.bool)
    u = torch.rand(valid.shape, generator=gen).add_(valid)  # valid columns in [1, 2), the others below 1
    best, column = u.max(1)
    return column, best >= 1


def _insert(
    pop: NEATPopulation,
    rows: torch.Tensor,
    prefix: str,
    values: dict[str, torch.Tensor],
    spare: int = 0,
) -> NEATPopulation:
    """Write genes into the first empty slots of genomes ``rows`` (an index tensor), in place:
    the caller owns ``pop``'s tensors. ``values[name]`` is ``[len(rows)]`` (one gene) or
    ``[len(rows), G]`` (G genes in order). When a row is full the arrays are widened once,
    with ``spare`` more empty columns for later inserts. Rows must be compact (empty slots
    only at the end).
    """
    if rows.numel() == 0:
        return pop
    keys = pop.node_key if prefix == "node" else pop.conn_innovation
    first = next(iter(values.values()))
    genes = 1 if first.dim() == 1 else first.shape[1]
    counts = pop.gene_counts()  # known for crossover's children: no count over the rows
    kind = 0 if prefix == "node" else 1
    count = counts[kind].index_select(0, rows)
    need = int(count.max()) + genes
    if need > keys.shape[1]:
        if prefix == "node":
            pop = pop.padded(need + spare, pop.conn_innovation.shape[1])
        else:
            pop = pop.padded(pop.node_key.shape[1], need + spare)
    counts[kind].index_add_(0, rows, torch.full_like(rows, genes))  # rows are distinct
    width = pop.node_key.shape[1] if prefix == "node" else pop.conn_innovation.shape[1]
    flat = (rows * width + count).unsqueeze(1).add(torch.arange(genes)).view(-1)  # distinct slots
    for name in NODE_FIELDS if prefix == "node" else CONN_FIELDS:
        t = getattr(pop, name).view(-1)  # the tables are contiguous (crossover's, or widened)
        v = values[name]
        t.index_copy_(0, flat, (v if v.dtype == t.dtype else v.to(t.dtype)).reshape(-1))
    return pop


def _choose_numpy(valid: np.ndarray, gen: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``_choose`` for a NumPy mask (the same draws and picks)."""
    if valid.shape[1] == 0:
        return np.zeros(valid.shape[0], dtype=np.int64), np.zeros(valid.shape[0], dtype=bool)
    u = torch.rand(valid.shape, generator=gen).numpy()
    u += valid  # valid columns in [1, 2), the others below 1
    column = u.argmax(1)
    return column, u[np.arange(len(u)), column] >= 1


def _insert_numpy(
    pop: NEATPopulation, rows: np.ndarray, prefix: str, values: dict[str, np.ndarray], spare: int = 0
) -> NEATPopulation:
    """``_insert`` for NumPy rows and values, written through NumPy views of the tensors."""
    if rows.size == 0:
        return pop
    first = next(iter(values.values()))
    genes = 1 if first.ndim == 1 else first.shape[1]
    kind = 0 if prefix == "node" else 1
    count = pop.gene_counts()[kind].numpy()[rows]
    need = int(count.max()) + genes
    width = pop.node_key.shape[1] if prefix == "node" else pop.conn_innovation.shape[1]
    if need > width:
        if prefix == "node":
            pop = pop.padded(need + spare, pop.conn_innovation.shape[1])
        else:
            pop = pop.padded(pop.node_key.shape[1], need + spare)
    pop.gene_counts()[kind].numpy()[rows] += genes  # rows are distinct
    slots = count[:, None] + np.arange(genes)
    at = (rows[:, None], slots)
    for name in NODE_FIELDS if prefix == "node" else CONN_FIELDS:
        getattr(pop, name).numpy()[at] = values[name].reshape(slots.shape)
    return pop


def _clear(pop: NEATPopulation, mask: torch.Tensor, prefix: str) -> NEATPopulation:
    """Empty the gene slots where ``mask[K, W]`` is True (rows then need ``sort_genes``)."""
    fields = NODE_FIELDS if prefix == "node" else CONN_FIELDS
    out = {}
    for name in fields:
        t = getattr(pop, name)
        out[name] = torch.where(mask, torch.full_like(t, GENE_FILL[name]), t)
    return pop.replace(**out)


def reaches(pop: NEATPopulation, rows: torch.Tensor, start: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """For genomes ``rows``: whether a path (over all connections, enabled or not) leads from
    node ``start`` to node ``goal`` (a breadth-first spread over slot indices, all at once)."""
    num_in = pop.num_inputs
    node_key = pop.node_key.index_select(0, rows)
    conn_in = pop.conn_in.index_select(0, rows)
    conn_out = pop.conn_out.index_select(0, rows)
    live = pop.conn_innovation.index_select(0, rows) != PAD
    k, n = node_key.shape
    c = conn_in.shape[1]
    width = num_in + n + 1
    ids = torch.cat([conn_in, conn_out, start.unsqueeze(1), goal.unsqueeze(1)], 1)
    slot, found = slots_of(node_key, num_in, ids)  # one lookup for every id
    src, dst, s_slot, g_slot = slot[:, :c], slot[:, c : 2 * c], slot[:, 2 * c :][:, :1], slot[:, 2 * c + 1 :]
    ok = live & found[:, :c] & found[:, c : 2 * c]
    dst = torch.where(ok, dst, torch.full_like(dst, width - 1))
    reach = torch.zeros(k, width)
    reach.scatter_(1, s_slot, 1.0)
    for _ in range(width + 1):
        spread = reach.gather(1, src) * ok
        new = reach.scatter_reduce(1, dst, spread, "amax", include_self=True)
        new[:, width - 1] = 0
        if torch.equal(new, reach):
            break
        reach = new
    return reach.gather(1, g_slot).squeeze(1) > 0


def _reaches_compiled(
    pop: NEATPopulation, rows: np.ndarray, start: np.ndarray, goal: np.ndarray
) -> np.ndarray:
    """``reaches`` for a CPU population, through ``graph.reaches`` (a compiled walk per genome)."""
    from neuroevo.nn.neat import graph  # numba: imported, and the loop compiled, on first use

    counts = pop.gene_counts()[0].numpy()
    tables = (
        pop.node_key.numpy(),
        counts,
        pop.conn_innovation.numpy(),
        pop.conn_in.numpy(),
        pop.conn_out.numpy(),
    )
    return graph.reaches(*tables, rows, start, goal, pop.num_inputs)


@dataclass
class StructuralMutation:
    """Add/delete node, add/delete connection for a batch of children (see the module doc)."""

    params: NEATParams
    genome_config: GenomeConfig
    innovations: InnovationTracker

    def __call__(self, pop: NEATPopulation, g: torch.Generator) -> NEATPopulation:
        """The structural mutations of ``pop`` (whose tensors may be overwritten)."""
        p, k = self.params, len(pop)
        self.innovations.new_generation()
        if p.single_structural_mutation:
            probs = [p.node_add_prob, p.node_delete_prob, p.conn_add_prob, p.conn_delete_prob]
            div = max(1.0, sum(probs))
            r = torch.rand(k, generator=g)
            edges = torch.tensor([0.0, *probs]).cumsum(0) / div
            do = [(r >= edges[i]) & (r < edges[i + 1]) for i in range(4)]
        else:
            do = [torch.rand(k, generator=g) < q for q in (p.node_add_prob, p.node_delete_prob)]
            do += [torch.rand(k, generator=g) < q for q in (p.conn_add_prob, p.conn_delete_prob)]
        small = pop.in_numpy
        pop = (self.add_node_numpy if small else self.add_node)(pop, do[0], g)
        pop = self.delete_node(pop, do[1], g)
        pop, unsorted = (self.add_connection_numpy if small else self.add_connection)(pop, do[2], g)
        pop, deleted = self.delete_connection(pop, do[3], g)
        if unsorted or deleted:  # only connection rows can be out of order here
            pop = pop.sort_genes(nodes=False)
        return pop

    def add_node(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        p, cfg = self.params, self.genome_config
        sel = flatnonzero(rows)
        if sel.numel() == 0:
            return pop
        innov = pop.conn_innovation.index_select(0, sel)
        live = (innov != PAD) & pop.conn_enabled.index_select(0, sel)
        j, has = _choose(live, g)
        bias = float_init(p, "bias", (len(sel),), g)
        resp = float_init(p, "response", (len(sel),), g)
        if not bool(has.all()):
            sel, j, bias, resp, innov = sel[has], j[has], bias[has], resp[has], innov[has]
        if sel.numel() == 0:
            return pop
        split = innov.gather(1, j.unsqueeze(1)).squeeze(1)
        src, dst, w = pop.conn_in[sel, j], pop.conn_out[sel, j], pop.conn_weight[sel, j]
        new_id, in_innov, out_innov = self.innovations.split(split, src, dst)
        pop.conn_enabled[sel, j] = False
        m = len(sel)
        pop = _insert(
            pop,
            sel,
            "node",
            {
                "node_key": new_id,
                "node_bias": bias,
                "node_response": resp,
                "node_activation": torch.full((m,), cfg.act_default, dtype=torch.long),
                "node_aggregation": torch.full((m,), cfg.agg_default, dtype=torch.long),
            },
        )
        pair = lambda x, y: torch.stack([x, y], 1)  # noqa: E731  (in->new, then new->out)
        return _insert(
            pop,
            sel,
            "conn",
            {
                "conn_innovation": pair(in_innov, out_innov),
                "conn_in": pair(src, new_id),
                "conn_out": pair(new_id, dst),
                "conn_weight": pair(torch.ones(m), w),
                "conn_enabled": torch.ones(m, 2, dtype=torch.bool),
            },
            spare=1 if p.conn_add_prob > 0 else 0,  # room for add_connection
        )

    # -- the same two mutations in NumPy, for small populations (same draws, same genes) ----------
    def add_node_numpy(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        """``add_node`` on NumPy views of ``pop``'s tensors (a fraction of the per-call cost)."""
        p, cfg = self.params, self.genome_config
        sel = np.flatnonzero(rows.numpy())
        if sel.size == 0:
            return pop
        innov = pop.conn_innovation.numpy()[sel]
        live = (innov != PAD) & pop.conn_enabled.numpy()[sel]
        j, has = _choose_numpy(live, g)
        bias = float_init(p, "bias", (len(sel),), g).numpy()
        resp = float_init(p, "response", (len(sel),), g).numpy()
        if not has.all():
            sel, j, bias, resp, innov = sel[has], j[has], bias[has], resp[has], innov[has]
        if sel.size == 0:
            return pop
        m = len(sel)
        split = innov[np.arange(m), j]
        src, dst = pop.conn_in.numpy()[sel, j], pop.conn_out.numpy()[sel, j]
        w = pop.conn_weight.numpy()[sel, j]
        new_id, in_innov, out_innov = self.innovations.split(split, src, dst)
        pop.conn_enabled.numpy()[sel, j] = False
        nodes = {
            "node_key": new_id,
            "node_bias": bias,
            "node_response": resp,
            "node_activation": np.full(m, cfg.act_default),
            "node_aggregation": np.full(m, cfg.agg_default),
        }
        pop = _insert_numpy(pop, sel, "node", nodes)
        conns = {
            "conn_innovation": np.stack([in_innov, out_innov], 1),
            "conn_in": np.stack([src, new_id], 1),
            "conn_out": np.stack([new_id, dst], 1),
            "conn_weight": np.stack([np.ones(m, dtype=w.dtype), w], 1),
            "conn_enabled": np.ones((m, 2), dtype=bool),
        }
        return _insert_numpy(pop, sel, "conn", conns, spare=1 if p.conn_add_prob > 0 else 0)

    def add_connection_numpy(
        self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator
    ) -> tuple[NEATPopulation, bool]:
        """``add_connection`` on NumPy views of ``pop``'s tensors (the cycle check stays in torch)."""
        p, num_in = self.params, self.genome_config.num_inputs
        sel = np.flatnonzero(rows.numpy())
        if sel.size == 0:
            return pop, False
        m, n = len(sel), pop.node_key.shape[1]
        node_key = pop.node_key.numpy()[sel]
        nodes_ok = node_key != PAD
        si, has_s = _choose_numpy(np.concatenate([np.ones((m, num_in), dtype=bool), nodes_ok], 1), g)
        di, has_d = _choose_numpy(nodes_ok, g)
        weight = float_init(p, "weight", (m,), g).numpy()
        ok = has_s & has_d
        if not ok.any():
            return pop, False
        every = np.arange(m)
        src = np.where(si < num_in, si, node_key[every, np.clip(si - num_in, 0, max(n - 1, 0))])
        dst = node_key[every, di]
        if p.feed_forward:
            ok &= ~self._creates_cycle_numpy(pop, sel, src, dst, ok)
        same = (
            (pop.conn_in.numpy()[sel] == src[:, None])
            & (pop.conn_out.numpy()[sel] == dst[:, None])
            & (pop.conn_innovation.numpy()[sel] != PAD)
        )
        exists = same.any(1)
        if self.genome_config.surer and (ok & exists).any():
            pop.conn_enabled.numpy()[sel] |= same & (ok & exists)[:, None]
        new = ok & ~exists
        if not new.any():
            return pop, False
        sel, src, dst, weight = sel[new], src[new], dst[new], weight[new]
        innov, reused = self.innovations.connections(src, dst)
        conns = {
            "conn_innovation": innov,
            "conn_in": src,
            "conn_out": dst,
            "conn_weight": weight,
            "conn_enabled": np.full(len(sel), p.enabled_default, dtype=bool),
        }
        return _insert_numpy(pop, sel, "conn", conns), reused

    def delete_node(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        if not bool(rows.any()):
            return pop
        hidden = (pop.node_key != PAD) & (pop.node_key >= self.genome_config.first_hidden)
        j, has = _choose(hidden, g)
        do = rows & has
        if not bool(do.any()):
            return pop
        k, n = pop.node_key.shape
        victim = torch.where(do, pop.node_key[torch.arange(k), j], torch.full((k,), -2))
        node_mask = torch.zeros(k, n, dtype=torch.bool)
        node_mask[torch.arange(k)[do], j[do]] = True
        pop = _clear(pop, node_mask, "node")
        touch = (pop.conn_in == victim[:, None]) | (pop.conn_out == victim[:, None])
        pop = _clear(pop, touch & (pop.conn_innovation != PAD), "conn")
        return pop.sort_genes()  # add_connection needs compact, sorted rows

    def _creates_cycle(
        self, pop: NEATPopulation, sel: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, ok: torch.Tensor
    ) -> torch.Tensor:
        """Which of the candidate links ``src -> dst`` of genomes ``sel`` a feed-forward genome
        must refuse: output -> output, self loops, and links closing a cycle."""
        cfg = self.genome_config
        bad = (cfg.is_output(src) & cfg.is_output(dst)) | (src == dst)
        check = ok & ~bad & (src >= cfg.num_inputs)
        if bool(check.any()):
            idx = check.nonzero().squeeze(1)
            # a cycle needs a path dst -> src: none when dst feeds no connection at all
            feeds = (pop.conn_in.index_select(0, sel[idx]) == dst[idx].unsqueeze(1)).any(1)
            idx = idx[feeds]
            if idx.numel() and pop.numpy_any_size:
                rows, start, goal = sel[idx].numpy(), dst[idx].numpy(), src[idx].numpy()
                bad[idx[torch.from_numpy(_reaches_compiled(pop, rows, start, goal))]] = True
            elif idx.numel():
                bad[idx[reaches(pop, sel[idx], dst[idx], src[idx])]] = True
        return bad

    def _creates_cycle_numpy(
        self, pop: NEATPopulation, sel: np.ndarray, src: np.ndarray, dst: np.ndarray, ok: np.ndarray
    ) -> np.ndarray:
        """``_creates_cycle`` for NumPy candidates."""
        cfg = self.genome_config
        first_out, first_hidden = cfg.num_inputs, cfg.num_inputs + cfg.num_outputs
        is_out = lambda key: (key >= first_out) & (key < first_hidden)  # noqa: E731
        bad = (is_out(src) & is_out(dst)) | (src == dst)
        check = ok & ~bad & (src >= cfg.num_inputs)
        if check.any():
            idx = np.flatnonzero(check)
            # a cycle needs a path dst -> src: none when dst feeds no connection at all
            idx = idx[(pop.conn_in.numpy()[sel[idx]] == dst[idx][:, None]).any(1)]
            if idx.size:
                bad[idx[_reaches_compiled(pop, sel[idx], dst[idx], src[idx])]] = True
        return bad

    def add_connection(
        self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator
    ) -> tuple[NEATPopulation, bool]:
        """New connections, and whether a reused innovation may have left a row unsorted."""
        p, num_in = self.params, self.genome_config.num_inputs
        sel = flatnonzero(rows)
        if sel.numel() == 0:
            return pop, False
        m, n = len(sel), pop.node_key.shape[1]
        node_key = pop.node_key.index_select(0, sel)
        nodes_ok = node_key != PAD
        si, has_s = _choose(torch.cat([torch.ones(m, num_in, dtype=torch.bool), nodes_ok], 1), g)
        di, has_d = _choose(nodes_ok, g)
        weight = float_init(p, "weight", (m,), g)
        ok = has_s & has_d
        if not bool(ok.any()):
            return pop, False
        hidden_src = node_key.gather(1, (si - num_in).clamp(min=0, max=max(n - 1, 0)).unsqueeze(1)).squeeze(1)
        src = torch.where(si < num_in, si, hidden_src)
        dst = node_key.gather(1, di.unsqueeze(1)).squeeze(1)
        if p.feed_forward:
            ok &= ~self._creates_cycle(pop, sel, src, dst, ok)
        same = (
            (pop.conn_in.index_select(0, sel) == src[:, None])
            & (pop.conn_out.index_select(0, sel) == dst[:, None])
            & (pop.conn_innovation.index_select(0, sel) != PAD)
        )
        exists = same.any(1)
        if self.genome_config.surer and bool((ok & exists).any()):
            pop.conn_enabled[sel] |= same & (ok & exists)[:, None]
        new = ok & ~exists
        if not bool(new.any()):
            return pop, False
        sel, src, dst, weight = sel[new], src[new], dst[new], weight[new]
        innov, reused = self.innovations.connections(src, dst)
        pop = _insert(
            pop,
            sel,
            "conn",
            {
                "conn_innovation": innov,
                "conn_in": src,
                "conn_out": dst,
                "conn_weight": weight,
                "conn_enabled": torch.full((len(sel),), p.enabled_default, dtype=torch.bool),
            },
        )
        return pop, reused

    def delete_connection(
        self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator
    ) -> tuple[NEATPopulation, bool]:
        """One random connection fewer in each genome ``rows``; True when any went."""
        if not bool(rows.any()):
            return pop, False
        live = pop.conn_innovation != PAD
        j, has = _choose(live, g)
        do = rows & has
        if not bool(do.any()):
            return pop, False
        k, c = live.shape
        mask = torch.zeros(k, c, dtype=torch.bool)
        mask[torch.arange(k)[do], j[do]] = True
        return _clear(pop, mask, "conn"), True


__all__ = ["StructuralMutation", "reaches"]
