"""NEAT's compatibility distance (paper, eq. 1, in neat-python's form), for whole populations.

``delta = (c_d * disjoint + c_e * excess + c_w * sum of matching-gene differences) / max genes``,
computed for node genes and connection genes and summed. Matching connection genes differ by
``|weight difference| + [enabled differs]``, matching node genes by ``|bias difference| +
|response difference| + [activation differs] + [aggregation differs]``.

Every pair of genomes of two populations at once: two matrix products per gene kind over
dense rows indexed by the second population's gene keys (``_matched_terms``), no Python loop
over genomes or genes. ``DistanceCache`` keeps the first population's dense rows between the
calls of one speciation. On the CPU, one compiled pass over each genome's genes against the
second population's (``compat.py``) is faster at every size, from P = 150 to 10,000.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuroevo.core.hostops import flatnonzero
from neuroevo.nn.neat.genes import AGGREGATIONS, PAD
from neuroevo.nn.neat.population import NEATPopulation


@dataclass
class DenseRows:
    """One gene kind's dense rows of a population over a union of keys, in row groups."""

    union: torch.Tensor
    groups: list[tuple[slice, torch.Tensor | None]]


@dataclass
class DistanceCache:
    """What ``compatibility_distance`` keeps about ``population`` (its first argument) between
    calls: its enabled flags as floats and its dense rows per gene kind. Speciation measures one
    population against last generation's representatives, then the new ones, then each new
    species' founder; the strategy owns one cache per speciation."""

    population: NEATPopulation
    enabled: torch.Tensor | None = None
    dense: dict[Any, Any] = field(default_factory=dict)  # DenseRows and gene lists, per gene kind


def _excess(ak: torch.Tensor, na: torch.Tensor, rk: torch.Tensor, nr: torch.Tensor) -> torch.Tensor:
    """``[n, m]`` count of genes above the other genome's largest key (rows sorted, PAD last)."""
    n, m = ak.shape[0], rk.shape[0]
    a_max = (
        ak.gather(1, (na - 1).clamp(min=0).unsqueeze(1)).squeeze(1) if ak.shape[1] else torch.zeros(n).long()
    )
    a_max = torch.where(na > 0, a_max, torch.full_like(a_max, -1))
    r_max = (
        rk.gather(1, (nr - 1).clamp(min=0).unsqueeze(1)).squeeze(1) if rk.shape[1] else torch.zeros(m).long()
    )
    r_max = torch.where(nr > 0, r_max, torch.full_like(r_max, -1))
    out = torch.zeros(n, m, dtype=torch.long)
    if ak.shape[1]:
        above = na.unsqueeze(1) - torch.searchsorted(
            ak, r_max.unsqueeze(0).expand(n, m).contiguous(), right=True
        )
        out += above.clamp(min=0)
    if rk.shape[1]:
        below = torch.searchsorted(rk, a_max.unsqueeze(0).expand(m, n).contiguous(), right=True)
        out += (nr.unsqueeze(1) - below).clamp(min=0).T
    return out


def _columns(keys: torch.Tensor, union: torch.Tensor) -> torch.Tensor:
    """Column of each of ``keys`` in the sorted, non-empty ``union`` (``len(union)`` if absent)."""
    u = union.numel()
    top = int(union[-1])
    if top <= 1 << 22:  # a lookup table over key values: cheaper than searching [n, K] keys
        lut = torch.full((top + 2,), u, dtype=torch.long)
        lut[union] = torch.arange(u)
        return lut.index_select(0, keys.clamp(max=top + 1).view(-1)).view(keys.shape)  # PAD -> absent
    pos = torch.searchsorted(union, keys).clamp_(max=u - 1)
    return torch.where((union[pos] == keys) & (keys != PAD), pos, u)


_PRESENT_ELEMENTS = 1 << 14  # gene slots from which a's dense rows are written gene by gene
_REUSE_ELEMENTS = 1 << 24  # dense rows kept for reuse: at most 64 MiB of float32 per gene kind


def _matched_terms(
    ak: torch.Tensor,
    bk: torch.Tensor,
    a_attr: tuple[list[torch.Tensor], torch.Tensor | None, list[torch.Tensor]],
    b_attr: tuple[list[torch.Tensor], torch.Tensor | None, list[torch.Tensor]],
    cats: list[int],
    cd: float,
    cw: float,
    budget: int,
    reuse: dict[Any, Any] | None = None,
    key: Any = None,
    a_counts: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[n, m]``: ``cw * (sum over matching genes of the attribute differences) - 2 cd * matches``.

    Attributes per side: (floats compared by ``|x - y|``, a 0/1 flag compared by inequality or
    None, categories compared by inequality, ``cats`` = their counts). Both sides become dense
    float32 rows over the union of ``bk``'s keys (plus one junk column for absent genes): ``P``
    the presence, ``E`` the flag (0 where absent), ``H`` one-hot categories, ``F`` the floats.
    Then

    - matches ``M = P_a P_b^T``,
    - ``sum over matches [e_a != e_b] = E_a (P_b - 2 E_b)^T + P_a E_b^T``,
    - ``sum over matches [c_a != c_b] = M - H_a H_b^T``,

    i.e. one matrix product; and ``sum over matches |f_a - f_b|`` reads, for each of the ``L``
    genes of ``b``'s genomes, ``a``'s value in that gene's column (``P_a |F_a - f|``) and sums
    them per ``b`` genome with a second product. O(n * (union * m + L)) work in a fixed
    number of tensor calls; ``budget`` bounds the dense elements per call.

    ``reuse[key]`` (kept with ``a``, see ``DistanceCache``) holds ``a``'s dense rows from the
    previous call: when ``b``'s keys are all in that call's union (speciation's second pass,
    against the new representatives, usually), they are used again instead of rebuilt. For a
    large ``a`` with its gene counts ``a_counts``, the dense rows are written from the list of
    its present genes (kept in ``reuse`` too), not from every padded slot.
    """
    f32 = torch.float32  # exact for the counts; about 1e-6 relative on the weight sums
    n, m = ak.shape[0], bk.shape[0]
    out = torch.zeros(n, m, dtype=f32)
    live_b = bk != PAD
    union = torch.unique(bk[live_b])
    if union.numel() == 0 or n == 0 or m == 0:
        return out
    groups: list[tuple[slice, torch.Tensor | None]] | None = None
    col_a = None
    kept_rows = None if reuse is None else reuse.get(key)
    if kept_rows is not None and bool(torch.isin(union, kept_rows.union).all()):
        union, groups = kept_rows.union, kept_rows.groups
    u = union.numel()
    col_b = torch.where(live_b, torch.searchsorted(union, bk).clamp_(max=u - 1), u)
    blk = u + 1
    flag = a_attr[1] is not None
    linear = (2 if flag else 1) * blk + sum(blk * k for k in cats)  # [P | E | H...]
    nf = len(a_attr[0])
    width = linear + nf * blk  # then [F...]

    def dense(col: torch.Tensor, attr, rows: slice) -> torch.Tensor:
        """``[width, rows]`` (column-major: reading a column for every row is one row copy)."""
        floats, e, cs = attr
        col = col[rows]
        buf = torch.zeros(width, col.shape[0], dtype=f32).T
        buf.scatter_(1, col, 1.0)
        off = blk
        if flag:
            buf.scatter_(1, col + off, e[rows])
            off += blk
        for c, k in zip(cs, cats, strict=True):
            buf.scatter_(1, col * k + c[rows] + off, 1.0)
            off += blk * k
        for f in floats:
            buf.scatter_(1, col + off, f[rows])
            off += blk
        return buf.T

    def dense_present(rows: slice) -> torch.Tensor:
        """``dense(col_a, a_attr, rows)`` written from ``a``'s present genes only (large tables
        are mostly empty slots): one 1-D scatter per block into the column-major buffer."""
        assert present is not None
        g_row, g_col, g_floats, g_e, g_cats, starts = present
        r0, r1 = rows.start, min(rows.stop, n)
        g0, g1 = starts[r0 // step], starts[r0 // step + 1]
        r = r1 - r0
        buf = torch.zeros(width * r, dtype=f32)
        at = g_col[g0:g1].mul(r).add_(g_row[g0:g1]).sub_(r0)  # (column, row) in the buffer
        buf.scatter_(0, at, 1.0)
        off = blk * r
        if flag:
            buf.scatter_(0, at + off, g_e[g0:g1])
            off += blk * r
        for c, k in zip(g_cats, cats, strict=True):
            # column col * k + c of the block: (col * k + c) * r + row = at * k - row * (k - 1) + c * r
            row = g_row[g0:g1] - r0
            buf.scatter_(0, (g_col[g0:g1] * k + c[g0:g1]).mul_(r).add_(row).add_(off), 1.0)
            off += blk * k * r
        for f in g_floats:
            buf.scatter_(0, at + off, f[g0:g1])
            off += blk * r
        return buf.view(width, r)

    bb = dense(col_b, b_attr, slice(None)).T
    live = (torch.arange(blk) < u).to(f32)  # the junk column never matches
    pb = bb[:, :blk] * live
    eb = bb[:, blk : 2 * blk] * live if flag else torch.zeros_like(pb)
    absb = torch.zeros_like(pb)
    for i in range(nf):
        absb += bb[:, linear + i * blk : linear + (i + 1) * blk].abs() * live
    # right[j] @ a[i, :linear] = cw * (P_a (E_b + |F_b|) + E_a (P_b - 2 E_b) + n_cat M - H_a H_b) - 2 cd M
    blocks = [cw * (eb + absb) + (cw * len(cats) - 2 * cd) * pb]
    if flag:
        blocks.append(cw * (pb - 2 * eb))
    off = (2 if flag else 1) * blk
    for k in cats:
        blocks.append(-cw * bb[:, off : off + blk * k] * (torch.arange(blk * k) < u * k))
        off += blk * k
    right = torch.cat(blocks, 1)
    # every gene of b: its genome (sorted), its column, its float values
    pair_genome, pair_gene = live_b.nonzero(as_tuple=True)
    pair_col = col_b[pair_genome, pair_gene]
    pair_values = [f[pair_genome, pair_gene].unsqueeze(1) for f in b_attr[0]]
    per_genome = torch.zeros(m, len(pair_col), dtype=f32)
    per_genome[pair_genome, torch.arange(len(pair_col))] = cw
    # sum over b's genes |F_a - f| also counts |f| for the genes a lacks (F_a = 0 there):
    # minus sum |F_b| plus P_a |F_b| (in ``right``) leaves the matching genes only
    const = -cw * absb.sum(1, keepdim=True)
    out_t = out.T  # [m, n]: results come out transposed, like the dense rows
    present = None
    step = max(1, budget // (width + len(pair_col)))
    if groups is None:
        groups = [(slice(r0, r0 + step), None) for r0 in range(0, n, step)]
        if ak.numel() >= _PRESENT_ELEMENTS and a_counts is not None:  # no writes for empty slots
            genes = None if reuse is None else reuse.get(("genes", key))
            if genes is None:  # a's genes as lists (kept for the next call)
                at = flatnonzero(ak != PAD)
                pick = lambda t: t.reshape(-1).index_select(0, at)  # noqa: E731
                floats, e, cs = a_attr
                g_row = at // ak.shape[1]  # each present slot's row
                e_at = pick(e) if e is not None else None
                genes = (g_row, pick(ak), [pick(f) for f in floats], e_at, [pick(c) for c in cs])
                if reuse is not None:
                    reuse[("genes", key)] = genes
            g_row, g_key, g_floats, e_at, g_cats = genes
            starts = torch.searchsorted(g_row, torch.arange(0, n + step, step)).tolist()
            present = (g_row, _columns(g_key, union), g_floats, e_at, g_cats, starts)
        else:
            col_a = _columns(ak, union)
        make = (lambda rows: dense(col_a, a_attr, rows)) if present is None else dense_present
        keep = reuse is not None and width * n <= _REUSE_ELEMENTS
        if keep:
            groups = [(rows, make(rows)) for rows, _ in groups]
            reuse[key] = DenseRows(union, groups)
    for rows, kept in groups:
        ba = kept if kept is not None else make(rows)  # [width, r]
        part = right @ ba[:linear]
        if nf:
            diff = None
            for i, value in enumerate(pair_values):
                col0 = linear + i * blk
                d = ba[col0 : col0 + blk].index_select(0, pair_col).sub_(value).abs_()
                diff = d if diff is None else diff.add_(d)
            assert diff is not None
            part += per_genome @ diff
            part += const
        out_t[:, rows] = part
    return out


_PAIRWISE_ELEMENTS = 1 << 16  # gene pairs up to which comparing every pair beats the dense rows (on CPU)


def _pairwise_terms(
    ak: torch.Tensor,
    bk: torch.Tensor,
    a_attr: tuple[list[torch.Tensor], torch.Tensor | None, list[torch.Tensor]],
    b_attr: tuple[list[torch.Tensor], torch.Tensor | None, list[torch.Tensor]],
    cd: float,
    cw: float,
) -> torch.Tensor:
    """``_matched_terms`` for small populations: every gene of every ``a`` genome against every
    gene of every ``b`` genome, ``[n, m, Ca, Cb]`` at once, in a dozen tensor calls (the dense
    rows take several dozen, which is what a population of a few hundred pays for)."""
    # a's empty slots become -1, which no key of b equals (b's empty slots are PAD)
    live_a = torch.where(ak != PAD, ak, -1)
    match = live_a[:, None, :, None] == bk[None, :, None, :]

    def pair(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[:, None, :, None], y[None, :, None, :]

    diff = None
    for fa, fb in zip(a_attr[0], b_attr[0], strict=True):
        x, y = pair(fa, fb)
        d = (x - y).abs_()
        diff = d if diff is None else diff.add_(d)
    flags = [(a_attr[1], b_attr[1])] if a_attr[1] is not None else []
    for ca, cb in flags + list(zip(a_attr[2], b_attr[2], strict=True)):
        x, y = pair(ca, cb)
        differs = x != y
        diff = differs.float() if diff is None else diff.add_(differs)
    count = match.sum((2, 3))
    if diff is None:  # no attribute compared: the matches only
        return count.float().mul_(-2 * cd)
    matched = diff.mul_(match).sum((2, 3))
    return matched.mul_(cw).sub_(count, alpha=2 * cd)


def _distance_compiled(
    a: NEATPopulation, b: NEATPopulation, cd: float, cw: float, constant: tuple[str, ...]
) -> torch.Tensor:
    """``compatibility_distance`` (excess counted as disjoint) of CPU populations through
    ``compat.py``'s loops: one pass over each genome's genes against all of ``b`` at once."""
    from neuroevo.strategies.neat import compat  # numba: imported, and compiled, on first use

    out = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return torch.from_numpy(out)
    (a_nodes, a_conns), (b_nodes, b_conns) = (tuple(c.numpy() for c in p.gene_counts()) for p in (a, b))

    def nodes(p: NEATPopulation) -> tuple[np.ndarray, ...]:
        fields = (p.node_key, p.node_bias, p.node_response, p.node_activation, p.node_aggregation)
        return tuple(t.numpy() for t in fields)

    def conns(p: NEATPopulation) -> tuple[np.ndarray, ...]:
        weight, enabled = p.conn_weight.numpy(), p.conn_enabled.numpy()
        return p.conn_innovation.numpy(), weight, weight, enabled, enabled  # (y, d unused)

    use = tuple(x not in constant for x in ("response", "activation", "aggregation"))
    compat.add_part(nodes(a), a_nodes, nodes(b), b_nodes, use, cd, cw, out)
    compat.add_part(conns(a), a_conns, conns(b), b_conns, (False, True, False), cd, cw, out)
    return torch.from_numpy(out)


def compatibility_distance(
    a: NEATPopulation,
    b: NEATPopulation,
    *,
    disjoint_coefficient: float = 1.0,
    weight_coefficient: float = 0.5,
    excess_coefficient: float | None = None,
    constant: tuple[str, ...] = (),
    budget: int = 1 << 18,
    cache: DistanceCache | None = None,
    pairwise_elements: int = _PAIRWISE_ELEMENTS,
) -> torch.Tensor:
    """Distances ``[len(a), len(b)]`` between every pair of genomes (node part + connection part).

    Matching genes contribute ``|bias| + |response| + [activation differs] + [aggregation
    differs]`` (nodes) or ``|weight| + [enabled differs]`` (connections) times
    ``weight_coefficient``; disjoint and excess genes count ``disjoint_coefficient`` /
    ``excess_coefficient`` each; each part is divided by the larger gene count. Node
    attributes named in ``constant`` (``response``, ``activation``, ``aggregation``) are known
    to be equal everywhere and skipped (their terms are zero).

    Matching-gene terms come from dense float32 rows over the union of ``b``'s keys
    (``_matched_terms``: two matrix products per part), so the work is O(len(a) * (len(b) *
    union + genes of b)) in a fixed number of tensor calls, independent of how ``a``'s genomes
    are padded; distances are exact to about 1e-6. ``budget`` bounds the dense elements per
    call (rows of ``a`` are processed in groups). With a ``cache`` for ``a`` (ignored if it
    belongs to another population), ``a``'s dense rows are kept for the next call against
    genomes whose keys they cover. Up to ``pairwise_elements`` gene pairs (small populations)
    every gene pair is compared directly instead (``_pairwise_terms``: fewer tensor calls).
    CPU populations (excess counted as disjoint, ``pairwise_elements`` > 0) are measured by
    ``compat.py``'s compiled loops instead, at every size, summed in float64.
    """
    cd, cw = disjoint_coefficient, weight_coefficient
    ce = cd if excess_coefficient is None else excess_coefficient
    f64 = torch.float64

    if cache is not None and cache.population is not a:
        cache = None
    if ce == cd and a.numpy_any_size and b.numpy_any_size and pairwise_elements > 0:
        return _distance_compiled(a, b, cd, cw, constant)

    def attrs(pop: NEATPopulation, kept: DistanceCache | None):
        floats = [pop.node_bias.float()]
        if "response" not in constant:
            floats.append(pop.node_response.float())
        cats = [pop.node_activation] if "activation" not in constant else []
        if "aggregation" not in constant:
            cats.append(pop.node_aggregation)
        if kept is None:
            enabled = pop.conn_enabled.float()
        else:  # speciation measures the same population several times
            if kept.enabled is None:
                kept.enabled = pop.conn_enabled.float()
            enabled = kept.enabled
        return (floats, None, cats), ([pop.conn_weight.float()], enabled, [])

    node_cats = [max(len(a.activations), len(b.activations))] if "activation" not in constant else []
    if "aggregation" not in constant:
        node_cats.append(len(AGGREGATIONS))
    (a_nodes, a_conns), (b_nodes, b_conns) = attrs(a, cache), attrs(b, None)
    total = torch.zeros(len(a), len(b))
    parts = [
        (a.node_key, b.node_key, a_nodes, b_nodes, node_cats),
        (a.conn_innovation, b.conn_innovation, a_conns, b_conns, []),
    ]
    for i, (ak, bk, aa, ba, cats) in enumerate(parts):
        na, nb = a.gene_counts()[i], b.gene_counts()[i]
        reuse = None if cache is None else cache.dense
        if len(a) * len(b) * ak.shape[1] * bk.shape[1] <= pairwise_elements:
            num = _pairwise_terms(ak, bk, aa, ba, cd, cw)
        else:
            num = _matched_terms(ak, bk, aa, ba, cats, cd, cw, budget, reuse, (i, constant, tuple(cats)), na)
        na_f, nb_f = na.float().unsqueeze(1), nb.float().unsqueeze(0)
        num += cd * na_f
        num += cd * nb_f
        if ce != cd:
            num += (ce - cd) * _excess(ak, na, bk, nb).float()
        total.addcdiv_(num, torch.maximum(na_f, nb_f).clamp_(min=1))
    return total.to(f64)


__all__ = ["DenseRows", "DistanceCache", "compatibility_distance"]
