"""NEAT: NeuroEvolution of Augmenting Topologies (Stanley & Miikkulainen 2002).

Genomes have node genes (bias, response, activation, aggregation) and connection genes
(weight, enabled) with global innovation numbers. Each generation:

1. species fitness (``species_fitness_func``) updates each species' best and its last
   improvement; species stagnant for ``max_stagnation`` generations are removed, except the
   ``species_elitism`` best;
2. explicit fitness sharing: a species' adjusted fitness is its members' mean fitness
   (normalised by the population's fitness range, as neat-python), and it gets offspring in
   proportion (``spawn_smoothing`` of the way from its current size, at least
   ``min_species_size`` before rounding to exactly ``population_size``);
3. within a species the ``elitism`` best are copied; the rest are children of two parents
   drawn from the best ``survival_threshold`` fraction: crossover aligned by innovation
   number (matching genes take each attribute from either parent, disjoint and excess genes
   come from the fitter parent; a gene disabled in either parent is disabled with
   probability ``crossover_disabled_rate``), then mutation: add node (split a random enabled
   connection: it is disabled, in->new gets weight 1, new->out the old weight), delete node,
   add connection (random source incl. inputs, random non-input target; no cycles and no
   output->output links when ``feed_forward``), delete connection, then weight/bias/response
   perturbation or replacement, enabled redraws, activation and aggregation changes;
4. the same structural mutation within a generation gets the same innovation number (a split
   of the same connection gets the same node id and connection innovations);
5. speciation by compatibility distance (neat-python's form:
   ``(c_w * sum of matching-gene differences + c_d * disjoint + c_e * excess) / max genes``
   summed over node and connection genes); each species' new representative is the genome
   closest to its old one; others join the species whose representative is closest, if within
   ``compatibility_threshold``, or found a new one. ``speciate_against`` picks which
   representatives count: the new ones just picked (``"new"``, neat-python's rule, the default:
   a second distance pass) or last generation's (``"previous"``, the paper's rule: one pass). With
   ``target_num_species`` the threshold moves by ``compatibility_threshold_step`` toward that
   many species.

Everything is done on padded tensors for the whole population at once (no Python loop over
genomes or genes); compatibility distances are two matrix products per gene kind
over dense rows indexed by the representatives' gene keys (``compatibility_distance``). All
randomness comes from ``neuroevo.core.random`` keyed by (seed, generation, purpose), so a
state_dict round trip continues bit-identically. Config names follow neat-python where it has
one; defaults are its XOR example's, except ``activation_default = "neat_sigmoid"``
(neat-python's ``sigmoid`` is the steepened one) and ``conn_delete_prob = node_delete_prob = 0``
(the paper never deletes genes; with neat-python's 0.5 / 0.2 our XOR runs needed several
times more generations). Offspring counts are rounded to exactly ``population_size`` (neat-python
lets the size drift by a few).

``ask()`` returns a :class:`~neuroevo.nn.neat_graph.NEATPopulation` for
:class:`~neuroevo.nn.neat_graph.NEATPhenotype`; ``best.params`` is one genome as a dict of
tensors plus JSON metadata (``NEATPhenotype.member_spec`` turns it into plain JSON).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator

from neuroevo.core import memory
from neuroevo.core import random as nrandom
from neuroevo.core.contracts import PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.init import INITIALIZERS, get_initializer
from neuroevo.nn.neat_graph import (
    AGGREGATIONS,
    CONN_FIELDS,
    GENE_FILL,
    NODE_FIELDS,
    PAD,
    NEATPopulation,
    aggregation_index,
    pad_columns,
    slots_of,
)
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams

InitialConnection = Literal[
    "full",
    "full_nodirect",
    "full_direct",
    "partial",
    "partial_nodirect",
    "partial_direct",
    "none",
    "unconnected",
]
_PAIR = 1 << 31  # node ids stay far below this; a (src, dst) pair is src * _PAIR + dst


class NEATParams(StrategyParams):
    """NEAT config keys (neat-python names); defaults follow neat-python's XOR example."""

    population_size: int = Field(150, ge=2, description="genomes per generation (neat-python pop_size)")
    reset_on_extinction: bool = Field(False, description="restart from new genomes if every species dies")
    # genome structure
    feed_forward: bool = Field(True, description="no cycles; false allows recurrent connections")
    num_hidden: int = Field(0, ge=0, description="hidden nodes in the initial genomes")
    initial_connection: InitialConnection = Field(
        "full", description="full[_nodirect|_direct], partial[_nodirect|_direct], none/unconnected"
    )
    initial_connection_fraction: float = Field(0.5, ge=0, le=1, description="kept fraction for partial")
    # node activation / aggregation
    activation_default: str = Field("neat_sigmoid", description="activation of new nodes (registry name)")
    activation_options: list[str] = Field(
        default_factory=lambda: ["neat_sigmoid"],
        description="activations a mutation may pick (registry names)",
    )
    activation_mutate_rate: float = Field(0.0, ge=0, le=1, description="per node: chance of a random option")
    aggregation_default: str = Field("sum", description="one of " + ", ".join(AGGREGATIONS))
    aggregation_options: list[str] = Field(
        default_factory=lambda: ["sum"], description="aggregations a mutation may pick"
    )
    aggregation_mutate_rate: float = Field(0.0, ge=0, le=1, description="per node: chance of a random option")
    # bias
    bias_init_mean: float = Field(0.0, description="mean of new values")
    bias_init_stdev: float = Field(1.0, ge=0, description="stdev of new values")
    bias_init_type: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="gaussian: N(mean, stdev); uniform: U(mean -/+ 2 stdev)"
    )
    bias_max_value: float = Field(30.0, description="values are clamped to at most this")
    bias_min_value: float = Field(-30.0, description="values are clamped to at least this")
    bias_mutate_power: float = Field(0.5, ge=0, description="stdev of the Gaussian perturbation")
    bias_mutate_rate: float = Field(0.7, ge=0, le=1, description="per gene: chance of a perturbation")
    bias_replace_rate: float = Field(0.1, ge=0, le=1, description="per gene: chance of a fresh value instead")
    # response (multiplies the aggregate)
    response_init_mean: float = Field(1.0, description="mean of new values")
    response_init_stdev: float = Field(0.0, ge=0, description="stdev of new values")
    response_init_type: Literal["gaussian", "uniform"] = Field(
        "gaussian", description="gaussian: N(mean, stdev); uniform: U(mean -/+ 2 stdev)"
    )
    response_max_value: float = Field(30.0, description="values are clamped to at most this")
    response_min_value: float = Field(-30.0, description="values are clamped to at least this")
    response_mutate_power: float = Field(0.0, ge=0, description="stdev of the Gaussian perturbation")
    response_mutate_rate: float = Field(0.0, ge=0, le=1, description="per gene: chance of a perturbation")
    response_replace_rate: float = Field(
        0.0, ge=0, le=1, description="per gene: chance of a fresh value instead"
    )
    # weights
    weight_init_mean: float = Field(0.0, description="mean of new values")
    weight_init_stdev: float = Field(1.0, ge=0, description="stdev of new values")
    weight_init_type: str | dict[str, Any] = Field(
        "gaussian",
        description="gaussian | uniform (mean/stdev), or an initialiser name/table for the initial genomes",
    )
    weight_max_value: float = Field(30.0, description="values are clamped to at most this")
    weight_min_value: float = Field(-30.0, description="values are clamped to at least this")
    weight_mutate_power: float = Field(0.5, ge=0, description="stdev of the Gaussian perturbation")
    weight_mutate_rate: float = Field(0.8, ge=0, le=1, description="per gene: chance of a perturbation")
    weight_replace_rate: float = Field(
        0.1, ge=0, le=1, description="per gene: chance of a fresh value instead"
    )
    # enabled
    enabled_default: bool = Field(True, description="new connections start enabled")
    enabled_mutate_rate: float = Field(0.01, ge=0, le=1, description="chance enabled is redrawn 50/50")
    enabled_rate_to_true_add: float = Field(
        0.0, ge=0, le=1, description="extra redraw rate for disabled genes"
    )
    enabled_rate_to_false_add: float = Field(
        0.0, ge=0, le=1, description="extra redraw rate for enabled genes"
    )
    # structural mutation
    conn_add_prob: float = Field(0.5, ge=0, le=1, description="per child: chance of adding a connection")
    conn_delete_prob: float = Field(
        0.0, ge=0, le=1, description="0 as in the paper (NEAT never deletes); neat-python's XOR example: 0.5"
    )
    node_add_prob: float = Field(0.2, ge=0, le=1, description="per child: chance of splitting a connection")
    node_delete_prob: float = Field(
        0.0, ge=0, le=1, description="0 as in the paper; neat-python's XOR example: 0.2"
    )
    single_structural_mutation: bool = Field(False, description="at most one structural mutation per child")
    structural_mutation_surer: bool | Literal["default"] = Field(
        "default",
        description="adding an existing connection enables it; default = single_structural_mutation",
    )
    crossover_disabled_rate: float = Field(
        0.75,
        ge=0,
        le=1,
        description="a gene disabled in either parent is disabled in the child (paper: 0.75)",
    )
    # speciation
    compatibility_disjoint_coefficient: float = Field(1.0, ge=0, description="c1 = c2 of the paper")
    compatibility_excess_coefficient: float | None = Field(
        None, ge=0, description="separate c1 for excess genes; None = the disjoint coefficient"
    )
    compatibility_weight_coefficient: float = Field(0.5, ge=0, description="c3 of the paper")
    compatibility_threshold: float = Field(
        3.0, gt=0, description="distance below which genomes share a species"
    )
    target_num_species: int = Field(0, ge=0, description="0 = fixed threshold; else adjust toward this")
    compatibility_threshold_step: float = Field(0.1, gt=0, description="threshold change per generation")
    compatibility_threshold_min: float = Field(0.1, gt=0, description="the threshold never goes below this")
    speciate_against: Literal["previous", "new"] = Field(
        "new",
        description="genomes join the closest species by distance to last generation's representatives "
        "(the paper; one distance pass) or to the new ones picked from this generation (neat-python)",
    )
    # stagnation and reproduction
    species_fitness_func: Literal["max", "min", "mean", "median"] = Field(
        "max", description="species fitness for stagnation, from its members' fitness"
    )
    max_stagnation: int = Field(20, ge=1, description="generations without improvement before removal")
    species_elitism: int = Field(2, ge=0, description="best species protected from stagnation")
    elitism: int = Field(2, ge=0, description="best genomes of each species copied unchanged")
    survival_threshold: float = Field(0.2, gt=0, le=1, description="fraction of a species allowed to breed")
    min_species_size: int = Field(2, ge=1, description="offspring floor of a surviving species")
    spawn_smoothing: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="fraction of a species' current size kept in its next size (neat-python 0.5)",
    )

    @field_validator("activation_default")
    @classmethod
    def _act(cls, value: str) -> str:
        return ACTIVATIONS.canonical(value)

    @field_validator("activation_options")
    @classmethod
    def _acts(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("activation_options needs at least one name")
        return [ACTIVATIONS.canonical(v) for v in value]

    @field_validator("aggregation_default")
    @classmethod
    def _agg(cls, value: str) -> str:
        aggregation_index(value)
        return value

    @field_validator("aggregation_options")
    @classmethod
    def _aggs(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("aggregation_options needs at least one name")
        for v in value:
            aggregation_index(v)
        return value

    @field_validator("weight_init_type")
    @classmethod
    def _winit(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and value in ("gaussian", "normal", "uniform"):
            return value
        if isinstance(value, str):
            INITIALIZERS.canonical(value)
        else:
            get_initializer(value)
        return value

    @model_validator(mode="after")
    def _ranges(self) -> NEATParams:
        for name in ("bias", "response", "weight"):
            lo, hi = getattr(self, f"{name}_min_value"), getattr(self, f"{name}_max_value")
            if lo > hi:
                raise ValueError(f"{name}_min_value = {lo} > {name}_max_value = {hi}")
        return self


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen)


def _choose(valid: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One uniformly random True column per row of ``valid[K, W]`` and whether the row had any."""
    if valid.shape[1] == 0:
        zeros = torch.zeros(valid.shape[0], dtype=torch.long)
        return zeros, torch.zeros(valid.shape[0], dtype=torch.bool)
    u = _rand(gen, *valid.shape).add_(valid)  # valid columns in [1, 2), the others below 1
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
    with ``spare`` more empty columns for later inserts.

    Rows must be compact (empty slots only at the end). New node ids and new innovation
    numbers are larger than every existing one, so rows stay sorted.
    """
    if rows.numel() == 0:
        return pop
    keys = pop.node_key if prefix == "node" else pop.conn_innovation
    first = next(iter(values.values()))
    genes = 1 if first.dim() == 1 else first.shape[1]
    count = (keys.index_select(0, rows) != PAD).sum(1)
    need = int(count.max()) + genes
    if need > keys.shape[1]:
        if prefix == "node":
            pop = pop.padded(need + spare, pop.conn_innovation.shape[1])
        else:
            pop = pop.padded(pop.node_key.shape[1], need + spare)
    slots = count.unsqueeze(1) + torch.arange(genes)
    rows = rows.unsqueeze(1).expand_as(slots)
    for name in NODE_FIELDS if prefix == "node" else CONN_FIELDS:
        t = getattr(pop, name)
        t.index_put_((rows, slots), values[name].to(t.dtype).view(slots.shape))
    return pop


def _clear(pop: NEATPopulation, mask: torch.Tensor, prefix: str) -> NEATPopulation:
    """Empty the gene slots where ``mask[K, W]`` is True (rows then need ``sort_genes``)."""
    fields = NODE_FIELDS if prefix == "node" else CONN_FIELDS
    out = {}
    for name in fields:
        t = getattr(pop, name)
        out[name] = torch.where(mask, torch.full_like(t, GENE_FILL[name]), t)
    return pop.replace(**out)


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
        out.cache["gene_counts"] = tuple(torch.cat([c[i] for c in counts]) for i in (0, 1))
    return out


# -- compatibility distance ------------------------------------------------------------------------


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
    reuse: dict[str, Any] | None = None,
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

    ``reuse`` (a dict kept with ``a``) holds ``a``'s dense rows from the previous call: when
    ``b``'s keys are all in that call's union (speciation's second pass, against the new
    representatives, usually), they are used again instead of rebuilt.
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
    if reuse is not None and "union" in reuse and bool(torch.isin(union, reuse["union"]).all()):
        union, groups = reuse["union"], reuse["groups"]
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
    if groups is None:
        col_a = _columns(ak, union)
        step = max(1, budget // (width + len(pair_col)))
        groups = [(slice(r0, r0 + step), None) for r0 in range(0, n, step)]
        keep = reuse is not None and width * n <= _REUSE_ELEMENTS
        if keep:
            groups = [(rows, dense(col_a, a_attr, rows)) for rows, _ in groups]
            reuse.update(union=union, groups=groups)
    for rows, kept in groups:
        ba = kept if kept is not None else dense(col_a, a_attr, rows)  # [width, r]
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


def compatibility_distance(
    a: NEATPopulation,
    b: NEATPopulation,
    *,
    disjoint_coefficient: float = 1.0,
    weight_coefficient: float = 0.5,
    excess_coefficient: float | None = None,
    constant: tuple[str, ...] = (),
    budget: int = 1 << 18,
    reuse: bool = False,
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
    call (rows of ``a`` are processed in groups). With ``reuse``, ``a``'s dense rows are kept
    in ``a.cache`` for the next call against genomes whose keys they cover.
    """
    cd, cw = disjoint_coefficient, weight_coefficient
    ce = cd if excess_coefficient is None else excess_coefficient
    f64 = torch.float64

    def attrs(pop: NEATPopulation):
        floats = [pop.node_bias.float()]
        if "response" not in constant:
            floats.append(pop.node_response.float())
        cats = [pop.node_activation] if "activation" not in constant else []
        if "aggregation" not in constant:
            cats.append(pop.node_aggregation)
        if "enabled_float" not in pop.cache:  # speciation measures the same population several times
            pop.cache["enabled_float"] = pop.conn_enabled.float()
        enabled = pop.cache["enabled_float"]
        return (floats, None, cats), ([pop.conn_weight.float()], enabled, [])

    node_cats = [max(len(a.activations), len(b.activations))] if "activation" not in constant else []
    if "aggregation" not in constant:
        node_cats.append(len(AGGREGATIONS))
    (a_nodes, a_conns), (b_nodes, b_conns) = attrs(a), attrs(b)
    total = torch.zeros(len(a), len(b))
    parts = [
        (a.node_key, b.node_key, a_nodes, b_nodes, node_cats),
        (a.conn_innovation, b.conn_innovation, a_conns, b_conns, []),
    ]
    for i, (ak, bk, aa, ba, cats) in enumerate(parts):
        na, nb = a.gene_counts()[i], b.gene_counts()[i]
        kept = a.cache.setdefault(("dense", i, constant, tuple(cats)), {}) if reuse else None
        num = _matched_terms(ak, bk, aa, ba, cats, cd, cw, budget, kept)
        na_f, nb_f = na.float().unsqueeze(1), nb.float().unsqueeze(0)
        num += cd * na_f
        num += cd * nb_f
        if ce != cd:
            num += (ce - cd) * _excess(ak, na, bk, nb).float()
        total.addcdiv_(num, torch.maximum(na_f, nb_f).clamp_(min=1))
    return total.to(f64)


# -- the strategy ----------------------------------------------------------------------------------


class NEAT(Strategy):
    """NEAT over a population of padded-tensor genomes; ``ask()`` returns a ``NEATPopulation``."""

    population_kind = PopulationKind.NEAT

    name = "neat"
    Params = NEATParams

    def __init__(
        self,
        num_inputs: int,
        num_outputs: int,
        population_size: int = 150,
        *,
        seed: int = 0,
        on_nan: OnNan = "worst",
        output_activation: str | None = None,
        **options: Any,
    ):
        self.params = NEATParams(population_size=population_size, on_nan=on_nan, **options)
        memory.keep_freed_memory()  # NEAT builds and drops many large tensors per generation
        super().__init__(0, population_size, seed=seed, on_nan=on_nan)
        p = self.params
        if num_inputs < 1 or num_outputs < 1:
            raise ConfigError(
                f"NEAT needs inputs and outputs; got {num_inputs} inputs, {num_outputs} outputs"
            )
        self.num_inputs, self.num_outputs = int(num_inputs), int(num_outputs)
        names = [p.activation_default, *p.activation_options]
        self.output_activation = (
            None if output_activation is None else ACTIVATIONS.canonical(output_activation)
        )
        if self.output_activation is not None:
            names.append(self.output_activation)
        self.activations = list(dict.fromkeys(names))
        self.act_default = self.activations.index(p.activation_default)
        self.act_options = torch.tensor([self.activations.index(a) for a in p.activation_options])
        self.agg_default = aggregation_index(p.aggregation_default)
        self.agg_options = torch.tensor([aggregation_index(a) for a in p.aggregation_options])
        self.surer = (
            p.single_structural_mutation
            if p.structural_mutation_surer == "default"
            else p.structural_mutation_surer
        )
        self.compatibility_threshold = p.compatibility_threshold
        # node attributes that can never differ under this config (skipped in distances/mutation)
        constant = []
        if p.response_init_stdev == 0 and p.response_mutate_rate == 0 and p.response_replace_rate == 0:
            constant.append("response")
        if len(self.activations) == 1:
            constant.append("activation")
        if len(set(p.aggregation_options) | {p.aggregation_default}) == 1:
            constant.append("aggregation")
        self._constant = tuple(constant)
        self.next_species_id = 0
        self.species_history: list[dict[str, Any]] = []
        self.population = self._initial_population(0)
        self._empty_species()
        self._speciate(self.population, 0)

    @classmethod
    def from_params(cls, params: NEATParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> NEAT:
        """Build from config keys; inputs, outputs and any fixed output activation come from ``phenotype``."""
        options = params.model_dump()
        kw.setdefault("output_activation", getattr(phenotype, "output_activation", None))
        kw.pop("device", None)
        kw.pop("dtype", None)
        return cls(phenotype.in_features, phenotype.out_features, seed=seed, **options, **kw)

    # -- randomness ------------------------------------------------------------------------------
    def _gen(self, generation: int, purpose: str) -> torch.Generator:
        return nrandom.member_generator(self.seed, generation, 0, "neat-" + purpose)

    def _float_init(self, name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        p = self.params
        mean, stdev = getattr(p, f"{name}_init_mean"), getattr(p, f"{name}_init_stdev")
        lo, hi = getattr(p, f"{name}_min_value"), getattr(p, f"{name}_max_value")
        kind = getattr(p, f"{name}_init_type")
        if kind == "uniform":
            a, b = max(lo, mean - 2 * stdev), min(hi, mean + 2 * stdev)
            return torch.rand(shape, generator=gen) * (b - a) + a
        return (torch.randn(shape, generator=gen) * stdev + mean).clamp(lo, hi)

    def _float_mutate(self, name: str, values: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        p = self.params
        rate, replace = getattr(p, f"{name}_mutate_rate"), getattr(p, f"{name}_replace_rate")
        power = getattr(p, f"{name}_mutate_power")
        lo, hi = getattr(p, f"{name}_min_value"), getattr(p, f"{name}_max_value")
        r = torch.rand(values.shape, generator=gen)
        noise = torch.randn(values.shape, generator=gen)
        perturbed = (values + noise * power).clamp(lo, hi)
        out = torch.where(r < rate, perturbed, values)
        if replace > 0:  # fresh values are drawn only for the genes that get one
            where = ((r >= rate) & (r < rate + replace)).nonzero(as_tuple=True)
            out[where] = self._float_init(name, (len(where[0]),), gen)
        return out

    # -- initial genomes -------------------------------------------------------------------------
    def _initial_population(self, generation: int) -> NEATPopulation:
        p = self.params
        size, num_in, num_out, hidden = self.population_size, self.num_inputs, self.num_outputs, p.num_hidden
        gen = self._gen(generation, "init")
        outputs = list(range(num_in, num_in + num_out))
        hiddens = list(range(num_in + num_out, num_in + num_out + hidden))
        inputs = list(range(num_in))
        mode = p.initial_connection
        blocks: list[tuple[list[int], list[int]]] = []
        if mode not in ("none", "unconnected"):
            if hidden == 0:
                blocks = [(inputs, outputs)]
            else:
                blocks = [(inputs, hiddens), (hiddens, outputs)]
                if mode.endswith("_direct"):
                    blocks.append((inputs, outputs))
        pairs = [(i, o) for srcs, dsts in blocks for i in srcs for o in dsts]
        npairs = len(pairs)
        node_keys = torch.tensor(outputs + hiddens, dtype=torch.long)
        n = len(node_keys)
        node_act = torch.full((size, n), self.act_default, dtype=torch.long)
        if self.output_activation is not None:
            node_act[:, :num_out] = self.activations.index(self.output_activation)
        weights = self._initial_weights(blocks, gen, size)
        conn_in = torch.tensor([a for a, _ in pairs], dtype=torch.long).expand(size, npairs).clone()
        conn_out = torch.tensor([b for _, b in pairs], dtype=torch.long).expand(size, npairs).clone()
        innov = torch.arange(npairs, dtype=torch.long).expand(size, npairs).clone()
        if mode.startswith("partial"):
            keep = torch.rand(size, npairs, generator=gen) < p.initial_connection_fraction
            innov = torch.where(keep, innov, torch.full_like(innov, PAD))
            conn_in = torch.where(keep, conn_in, torch.full_like(conn_in, -1))
            conn_out = torch.where(keep, conn_out, torch.full_like(conn_out, -1))
            weights = torch.where(keep, weights, torch.zeros_like(weights))
        pop = NEATPopulation(
            num_in,
            num_out,
            list(self.activations),
            node_key=node_keys.expand(size, n).clone(),
            node_bias=self._float_init("bias", (size, n), gen),
            node_response=self._float_init("response", (size, n), gen),
            node_activation=node_act,
            node_aggregation=torch.full((size, n), self.agg_default, dtype=torch.long),
            conn_innovation=innov,
            conn_in=conn_in,
            conn_out=conn_out,
            conn_weight=weights,
            conn_enabled=torch.where(
                innov != PAD, torch.full_like(innov, p.enabled_default, dtype=torch.bool), False
            ),
            feed_forward=p.feed_forward,
        )
        if generation == 0:
            self.next_node_id = num_in + num_out + hidden
            self.next_innovation = npairs
        return pop.sort_genes().trimmed()

    def _initial_weights(self, blocks: list[tuple[list[int], list[int]]], gen: torch.Generator, size: int):
        p = self.params
        total = sum(len(s) * len(d) for s, d in blocks)
        kind = p.weight_init_type
        if isinstance(kind, str) and kind in ("gaussian", "normal", "uniform"):
            name_kind = "uniform" if kind == "uniform" else "gaussian"
            mean, stdev = p.weight_init_mean, p.weight_init_stdev
            lo, hi = p.weight_min_value, p.weight_max_value
            if name_kind == "uniform":
                a, b = max(lo, mean - 2 * stdev), min(hi, mean + 2 * stdev)
                return torch.rand(size, total, generator=gen) * (b - a) + a
            return (torch.randn(size, total, generator=gen) * stdev + mean).clamp(lo, hi)
        init = get_initializer(kind)
        rows = []
        for _ in range(size):
            parts = [init(len(s), len(d), gen).reshape(-1) for s, d in blocks]
            rows.append(torch.cat(parts) if parts else torch.zeros(0))
        w = torch.stack(rows).float()
        return w.clamp(p.weight_min_value, p.weight_max_value)

    # -- speciation ------------------------------------------------------------------------------
    def _empty_species(self) -> None:
        self.species_id = torch.zeros(0, dtype=torch.long)
        self.species_created = torch.zeros(0, dtype=torch.long)
        self.species_last_improved = torch.zeros(0, dtype=torch.long)
        self.species_best = torch.zeros(0, dtype=torch.float64)
        self.representatives: NEATPopulation | None = None
        self.member_species = torch.zeros(self.population_size, dtype=torch.long)

    def distance(self, a: NEATPopulation, b: NEATPopulation) -> torch.Tensor:
        """Compatibility distances ``[len(a), len(b)]`` with this strategy's coefficients."""
        p = self.params
        return compatibility_distance(
            a,
            b,
            disjoint_coefficient=p.compatibility_disjoint_coefficient,
            weight_coefficient=p.compatibility_weight_coefficient,
            excess_coefficient=p.compatibility_excess_coefficient,
            constant=self._constant,
            reuse=True,
        )

    def _distance_of(self, pop: NEATPopulation, rows: torch.Tensor, reps: NEATPopulation) -> torch.Tensor:
        """Distances ``[P, len(reps)]``, computed only for the ``rows`` mask (others are inf)."""
        count = int(rows.sum())
        if 2 * count >= len(pop):
            return self.distance(pop, reps)
        out = torch.full((len(pop), len(reps)), math.inf, dtype=torch.float64)
        idx = rows.nonzero().squeeze(1)
        out[idx] = self.distance(pop.select(idx), reps)
        return out

    def _speciate(self, pop: NEATPopulation, generation: int) -> None:
        """Assign every genome to a species (neat-python's procedure, batched; see ``speciate_against``)."""
        size = len(pop)
        thr = self.compatibility_threshold
        assign = torch.full((size,), -1, dtype=torch.long)
        free = torch.ones(size, dtype=torch.bool)
        kept: list[int] = []
        rep_rows: list[int] = []
        if self.representatives is not None and len(self.representatives):
            d_old = self.distance(pop, self.representatives)
            for s in range(d_old.shape[1]):
                if not bool(free.any()):
                    break
                j = int(torch.where(free, d_old[:, s], torch.full_like(d_old[:, s], math.inf)).argmin())
                assign[j] = len(kept)
                free[j] = False
                kept.append(s)
                rep_rows.append(j)
            if kept and bool(free.any()):
                if self.params.speciate_against == "new":
                    best, which = self._distance_of(pop, free, pop.select(rep_rows)).min(1)
                else:
                    best, which = d_old[:, torch.tensor(kept, dtype=torch.long)].min(1)
                ok = free & (best < thr)
                assign[ok] = which[ok]
                free &= ~ok
        n_old = len(kept)
        new_rows: list[int] = []
        while bool(free.any()):
            j = int(free.nonzero()[0])
            join = free & (self._distance_of(pop, free, pop.select([j]))[:, 0] < thr)
            join[j] = True
            assign[join] = n_old + len(new_rows)
            free &= ~join
            new_rows.append(j)
        keep_t = torch.tensor(kept, dtype=torch.long)
        n_new = len(new_rows)
        new_ids = torch.arange(self.next_species_id, self.next_species_id + n_new, dtype=torch.long)
        self.next_species_id += n_new
        self.species_id = torch.cat([self.species_id[keep_t], new_ids])
        self.species_created = torch.cat(
            [self.species_created[keep_t], torch.full((n_new,), generation, dtype=torch.long)]
        )
        self.species_last_improved = torch.cat(
            [self.species_last_improved[keep_t], torch.full((n_new,), generation, dtype=torch.long)]
        )
        self.species_best = torch.cat(
            [self.species_best[keep_t], torch.full((n_new,), -math.inf, dtype=torch.float64)]
        )
        for key in [k for k in pop.cache if k[0] == "dense"]:  # dense rows kept between passes
            del pop.cache[key]
        self.representatives = pop.select(torch.tensor(rep_rows + new_rows, dtype=torch.long))
        self.member_species = assign
        sizes = torch.bincount(assign, minlength=len(self.species_id))
        self.species_history.append(
            {"generation": generation, "species": self.species_id.tolist(), "sizes": sizes.tolist()}
        )
        p = self.params
        if p.target_num_species > 0:
            count = len(self.species_id)
            if count < p.target_num_species:
                thr -= p.compatibility_threshold_step
            elif count > p.target_num_species:
                thr += p.compatibility_threshold_step
            self.compatibility_threshold = max(p.compatibility_threshold_min, thr)

    # -- ask / tell ------------------------------------------------------------------------------
    def _ask(self) -> NEATPopulation:
        return self.population

    def member(self, population: Any, index: int) -> dict[str, Any]:
        """Genome ``index`` as a dict of tensors + JSON metadata (what ``best.params`` holds)."""
        return population.genome(index)

    def _species_fitness(self, fitness: torch.Tensor, ms: torch.Tensor, count: int) -> torch.Tensor:
        func = self.params.species_fitness_func
        if func == "max":
            return torch.full((count,), -math.inf, dtype=torch.float64).scatter_reduce(0, ms, fitness, "amax")
        if func == "min":
            return torch.full((count,), math.inf, dtype=torch.float64).scatter_reduce(0, ms, fitness, "amin")
        if func == "mean":
            sums = torch.zeros(count, dtype=torch.float64).index_add(0, ms, fitness)
            return sums / torch.bincount(ms, minlength=count).clamp(min=1)
        return torch.stack([fitness[ms == s].median() for s in range(count)])

    def _tell(self, population: NEATPopulation, fitness: torch.Tensor) -> dict[str, float]:
        # reproduction and speciation make many small tensors that never need autograd
        with torch.inference_mode():
            return self._reproduce(population, fitness)

    def _reproduce(self, population: NEATPopulation, fitness: torch.Tensor) -> dict[str, float]:
        """Stagnation, offspring counts, selection, crossover, mutation, speciation."""
        p = self.params
        gen = self.generation
        child_gen = gen + 1
        ms = self.member_species
        count = len(self.species_id)
        sizes = torch.bincount(ms, minlength=count)
        # stagnation
        sf = self._species_fitness(fitness, ms, count)
        improved = sf > self.species_best
        self.species_best = torch.where(improved, sf, self.species_best)
        self.species_last_improved = torch.where(
            improved, torch.full_like(self.species_last_improved, gen), self.species_last_improved
        )
        stagnant = (gen - self.species_last_improved) >= p.max_stagnation
        if p.species_elitism > 0:
            top = torch.argsort(sf, descending=True, stable=True)[: p.species_elitism]
            stagnant[top] = False
        alive = ~stagnant
        if not bool(alive.any()):
            if not p.reset_on_extinction:
                raise RuntimeError(
                    f"generation {gen}: every species stagnated (reset_on_extinction = false; "
                    "set it true or raise species_elitism)"
                )
            self.population = self._initial_population(child_gen)
            self._empty_species()
            self._speciate(self.population, child_gen)
            return self._stats(extinct=1.0)
        # adjusted fitness (explicit fitness sharing) and offspring counts
        member_alive = alive[ms]
        f_alive = fitness[member_alive]
        fmin, fmax = float(f_alive.min()), float(f_alive.max())
        span = max(1.0, fmax - fmin)
        mean_f = torch.zeros(count, dtype=torch.float64).index_add(0, ms, fitness) / sizes.clamp(min=1)
        adjusted = torch.where(alive, (mean_f - fmin) / span, torch.zeros_like(mean_f))
        total = float(adjusted.sum())
        if total > 0:
            target = torch.clamp(adjusted / total * self.population_size, min=float(p.min_species_size))
        else:
            target = torch.full((count,), float(p.min_species_size), dtype=torch.float64)
        raw = p.spawn_smoothing * sizes.double() + (1 - p.spawn_smoothing) * target
        raw = torch.where(alive, raw.clamp(min=float(p.min_species_size)), torch.zeros_like(raw))
        spawn = _round_to_total(raw / raw.sum() * self.population_size, self.population_size)
        # parents: members sorted by species, then fitness (best first)
        by_fit = torch.argsort(-fitness, stable=True)
        order = by_fit[torch.argsort(ms[by_fit], stable=True)]
        offsets = torch.cumsum(sizes, 0) - sizes
        elites = torch.minimum(torch.minimum(spawn, sizes), torch.full_like(spawn, p.elitism))
        children = spawn - elites
        pool = torch.clamp(torch.ceil(p.survival_threshold * sizes.double()).long(), min=2)
        pool = torch.minimum(pool, sizes).clamp(min=1)
        sp_e = torch.repeat_interleave(torch.arange(count), elites)
        rank_e = torch.arange(len(sp_e)) - torch.repeat_interleave(torch.cumsum(elites, 0) - elites, elites)
        elite_rows = order[offsets[sp_e] + rank_e]
        sp_c = torch.repeat_interleave(torch.arange(count), children)
        g = self._gen(child_gen, "parents")
        k = len(sp_c)
        i1 = (torch.rand(k, generator=g, dtype=torch.float64) * pool[sp_c]).long()
        i2 = (torch.rand(k, generator=g, dtype=torch.float64) * pool[sp_c]).long()
        p1 = order[offsets[sp_c] + torch.minimum(i1, pool[sp_c] - 1)]
        p2 = order[offsets[sp_c] + torch.minimum(i2, pool[sp_c] - 1)]
        first = fitness[p1] > fitness[p2]
        primary = torch.where(first, p1, p2)
        secondary = torch.where(first, p2, p1)
        # children ordered by their fitter parent's size (a child has its structure), elites
        # last: the population comes out nearly sorted by size, so crossover reads the parents
        # and NEATPhenotype selects its size groups in close to memory order
        size = sum(population.gene_counts())
        by_size = torch.argsort(size[primary], stable=True)
        primary, secondary = primary[by_size], secondary[by_size]
        elite_rows = elite_rows[torch.argsort(size[elite_rows], stable=True)]
        kids = self.crossover(population, primary, secondary, self._gen(child_gen, "crossover"))
        kids = self.mutate(kids, child_gen, in_place=True)  # crossover's tensors are new
        new_pop = cat_populations([kids, population.select(elite_rows)], trim=True)
        self.population = new_pop
        self._speciate(new_pop, child_gen)
        return self._stats()

    def _stats(self, extinct: float = 0.0) -> dict[str, float]:
        pop = self.population
        enabled = pop.cache.get("enabled_float", pop.conn_enabled)  # empty slots are disabled
        nodes = pop.gene_counts()[0]
        size = max(len(pop), 1)
        return {
            "num_species": float(len(self.species_id)),
            "compatibility_threshold": float(self.compatibility_threshold),
            "mean_nodes": float(nodes.sum()) / size,
            "mean_connections": float(enabled.sum()) / size,
            "extinctions": extinct,
        }

    # -- variation -------------------------------------------------------------------------------
    def crossover(
        self, pop: NEATPopulation, primary: torch.Tensor, secondary: torch.Tensor, gen: torch.Generator
    ) -> NEATPopulation:
        """Children of (primary = fitter, secondary) aligned by innovation number / node id."""
        a = pop.select(primary)
        node_fields = [f"node_{x}" for x in ("bias", "response", "activation", "aggregation")]
        node_fields = [f for f in node_fields if f.removeprefix("node_") not in self._constant]
        needed = ["conn_innovation", "conn_weight", "conn_enabled", "node_key", *node_fields]
        b = {name: getattr(pop, name).index_select(0, secondary) for name in needed}
        out: dict[str, torch.Tensor] = {}
        k, c = a.conn_innovation.shape
        if c:
            pos = torch.searchsorted(b["conn_innovation"], a.conn_innovation).clamp(max=c - 1)
            live = a.conn_innovation != PAD
            match = (b["conn_innovation"].gather(1, pos) == a.conn_innovation) & live
            take_w = match & (torch.rand(k, c, generator=gen) < 0.5)
            out["conn_weight"] = torch.where(take_w, b["conn_weight"].gather(1, pos), a.conn_weight)
            either_off = ~a.conn_enabled | (match & ~b["conn_enabled"].gather(1, pos))
            enabled = a.conn_enabled  # a fresh copy; False in empty slots
            where = (either_off & live).nonzero(as_tuple=True)
            enabled[where] = torch.rand(len(where[0]), generator=gen) >= self.params.crossover_disabled_rate
        k, n = a.node_key.shape
        if n:
            pos = torch.searchsorted(b["node_key"], a.node_key).clamp(max=n - 1)
            match = (b["node_key"].gather(1, pos) == a.node_key) & (a.node_key != PAD)
            for name in node_fields:  # attributes equal in every genome need no choice
                take = match & (torch.rand(k, n, generator=gen) < 0.5)
                out[name] = torch.where(take, b[name].gather(1, pos), getattr(a, name))
        return a.replace(**out)

    def mutate(self, pop: NEATPopulation, generation: int, *, in_place: bool = False) -> NEATPopulation:
        """Structural mutations (add/delete node, add/delete connection), then attribute
        mutations. ``in_place``: ``pop``'s tensors belong to the caller and may be overwritten."""
        p = self.params
        if not in_place:
            pop = pop.replace(**{name: t.clone() for name, t in pop.tensors.items()})
        k = len(pop)
        g = self._gen(generation, "structure")
        self._pairs_key = torch.zeros(0, dtype=torch.long)
        self._pairs_innov = torch.zeros(0, dtype=torch.long)
        if p.single_structural_mutation:
            probs = [p.node_add_prob, p.node_delete_prob, p.conn_add_prob, p.conn_delete_prob]
            div = max(1.0, sum(probs))
            r = torch.rand(k, generator=g)
            edges = torch.tensor([0.0, *probs]).cumsum(0) / div
            do = [(r >= edges[i]) & (r < edges[i + 1]) for i in range(4)]
        else:
            do = [torch.rand(k, generator=g) < q for q in (p.node_add_prob, p.node_delete_prob)]
            do += [torch.rand(k, generator=g) < q for q in (p.conn_add_prob, p.conn_delete_prob)]
        self._unsorted = False
        pop = self._add_node(pop, do[0], g)
        pop = self._delete_node(pop, do[1], g)
        pop = self._add_connection(pop, do[2], g)
        pop = self._delete_connection(pop, do[3], g)
        if self._unsorted:  # only connection rows can be out of order here
            pop = pop.sort_genes(nodes=False)
        return self._mutate_attributes(pop, self._gen(generation, "attributes"))

    def _register_pairs(self, keys: torch.Tensor, innovs: torch.Tensor) -> None:
        key = torch.cat([self._pairs_key, keys])
        inn = torch.cat([self._pairs_innov, innovs])
        order = torch.argsort(key, stable=True)
        self._pairs_key, self._pairs_innov = key[order], inn[order]

    def _add_node(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        sel = rows.nonzero().squeeze(1)
        if sel.numel() == 0:
            return pop
        innov = pop.conn_innovation.index_select(0, sel)
        live = (innov != PAD) & pop.conn_enabled.index_select(0, sel)
        j, has = _choose(live, g)
        bias = self._float_init("bias", (len(sel),), g)
        resp = self._float_init("response", (len(sel),), g)
        if not bool(has.all()):
            sel, j, bias, resp, innov = sel[has], j[has], bias[has], resp[has], innov[has]
        if sel.numel() == 0:
            return pop
        split = innov.gather(1, j.unsqueeze(1)).squeeze(1)
        uniq, inv = torch.unique(split, return_inverse=True)
        n_new = len(uniq)
        new_id = self.next_node_id + inv
        in_innov = self.next_innovation + 2 * inv
        out_innov = in_innov + 1
        src, dst, w = pop.conn_in[sel, j], pop.conn_out[sel, j], pop.conn_weight[sel, j]
        self._register_pairs(
            torch.cat([src * _PAIR + new_id, new_id * _PAIR + dst]), torch.cat([in_innov, out_innov])
        )
        self.next_node_id += n_new
        self.next_innovation += 2 * n_new
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
                "node_activation": torch.full((m,), self.act_default, dtype=torch.long),
                "node_aggregation": torch.full((m,), self.agg_default, dtype=torch.long),
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
            spare=1 if self.params.conn_add_prob > 0 else 0,  # room for add_connection
        )

    def _delete_node(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        if not bool(rows.any()):
            return pop
        hidden = (pop.node_key != PAD) & (pop.node_key >= self.num_inputs + self.num_outputs)
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

    def _reaches(self, pop: NEATPopulation, rows: torch.Tensor, start: torch.Tensor, goal: torch.Tensor):
        """For genomes ``rows``: whether a path (over all connections, enabled or not) leads
        from node ``start`` to node ``goal``."""
        node_key = pop.node_key.index_select(0, rows)
        conn_in = pop.conn_in.index_select(0, rows)
        conn_out = pop.conn_out.index_select(0, rows)
        live = pop.conn_innovation.index_select(0, rows) != PAD
        k, n = node_key.shape
        width = self.num_inputs + n + 1
        src, src_ok = slots_of(node_key, self.num_inputs, conn_in)
        dst, dst_ok = slots_of(node_key, self.num_inputs, conn_out)
        ok = live & src_ok & dst_ok
        dst = torch.where(ok, dst, torch.full_like(dst, width - 1))
        s_slot, _ = slots_of(node_key, self.num_inputs, start.unsqueeze(1))
        g_slot, _ = slots_of(node_key, self.num_inputs, goal.unsqueeze(1))
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

    def _add_connection(self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator) -> NEATPopulation:
        p = self.params
        sel = rows.nonzero().squeeze(1)
        if sel.numel() == 0:
            return pop
        m, n = len(sel), pop.node_key.shape[1]
        num_in, num_out = self.num_inputs, self.num_outputs
        node_key = pop.node_key.index_select(0, sel)
        nodes_ok = node_key != PAD
        si, has_s = _choose(torch.cat([torch.ones(m, num_in, dtype=torch.bool), nodes_ok], 1), g)
        di, has_d = _choose(nodes_ok, g)
        weight = self._float_init("weight", (m,), g)
        ok = has_s & has_d
        if not bool(ok.any()):
            return pop
        hidden_src = node_key.gather(1, (si - num_in).clamp(min=0, max=max(n - 1, 0)).unsqueeze(1)).squeeze(1)
        src = torch.where(si < num_in, si, hidden_src)
        dst = node_key.gather(1, di.unsqueeze(1)).squeeze(1)
        is_out = lambda t: (t >= num_in) & (t < num_in + num_out)  # noqa: E731
        if p.feed_forward:
            ok &= ~(is_out(src) & is_out(dst))
            ok &= src != dst
            check = ok & (src >= num_in)
            if bool(check.any()):
                idx = check.nonzero().squeeze(1)
                # a cycle needs a path dst -> src: none when dst feeds no connection at all
                feeds = (pop.conn_in.index_select(0, sel[idx]) == dst[idx].unsqueeze(1)).any(1)
                idx = idx[feeds]
                if idx.numel():
                    cyc = self._reaches(pop, sel[idx], dst[idx], src[idx])
                    ok[idx[cyc]] = False
        innov_rows = pop.conn_innovation.index_select(0, sel)
        same = (
            (pop.conn_in.index_select(0, sel) == src[:, None])
            & (pop.conn_out.index_select(0, sel) == dst[:, None])
            & (innov_rows != PAD)
        )
        exists = same.any(1)
        if self.surer and bool((ok & exists).any()):
            pop.conn_enabled[sel] |= same & (ok & exists)[:, None]
        new = ok & ~exists
        if not bool(new.any()):
            return pop
        sel, src, dst, weight = sel[new], src[new], dst[new], weight[new]
        key = src * _PAIR + dst
        innov = torch.full((len(sel),), PAD, dtype=torch.long)
        if self._pairs_key.numel():
            pos = torch.searchsorted(self._pairs_key, key).clamp(max=self._pairs_key.numel() - 1)
            known = self._pairs_key[pos] == key
            innov = torch.where(known, self._pairs_innov[pos], innov)
            self._unsorted |= bool(known.any())  # a reused innovation may be below this row's newest
        fresh = innov == PAD
        if bool(fresh.any()):
            uniq, inv = torch.unique(key[fresh], return_inverse=True)
            innov[fresh] = self.next_innovation + inv
            self._register_pairs(uniq, self.next_innovation + torch.arange(len(uniq)))
            self.next_innovation += len(uniq)
        return _insert(  # fresh innovations sort last; reused ones set self._unsorted
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

    def _delete_connection(
        self, pop: NEATPopulation, rows: torch.Tensor, g: torch.Generator
    ) -> NEATPopulation:
        if not bool(rows.any()):
            return pop
        live = pop.conn_innovation != PAD
        j, has = _choose(live, g)
        do = rows & has
        if not bool(do.any()):
            return pop
        k, c = live.shape
        mask = torch.zeros(k, c, dtype=torch.bool)
        mask[torch.arange(k)[do], j[do]] = True
        self._unsorted = True
        return _clear(pop, mask, "conn")

    def _mutate_attributes(self, pop: NEATPopulation, g: torch.Generator) -> NEATPopulation:
        """Attribute mutations of the genes present (empty slots draw nothing), in place."""
        p = self.params
        conn_at = (pop.conn_innovation != PAD).view(-1).nonzero().squeeze(1)
        weight = pop.conn_weight.view(-1)
        weight.index_copy_(0, conn_at, self._float_mutate("weight", weight.index_select(0, conn_at), g))
        flags = pop.conn_enabled.view(-1)
        enabled = flags.index_select(0, conn_at)
        r = torch.rand(enabled.shape, generator=g)
        if p.enabled_rate_to_false_add == p.enabled_rate_to_true_add:
            rate: torch.Tensor | float = p.enabled_mutate_rate + p.enabled_rate_to_true_add
        else:
            rate = p.enabled_mutate_rate + torch.where(
                enabled,
                torch.full_like(r, p.enabled_rate_to_false_add),
                torch.full_like(r, p.enabled_rate_to_true_add),
            )
        where = (r < rate).nonzero().squeeze(1)  # a 50/50 redraw for these
        enabled[where] = torch.rand(len(where), generator=g) < 0.5
        flags.index_copy_(0, conn_at, enabled)
        node_key = pop.node_key.view(-1)
        node_at = (node_key != PAD).nonzero().squeeze(1)
        for name in ("bias", "response"):
            if name == "bias" or p.response_mutate_rate > 0 or p.response_replace_rate > 0:
                values = getattr(pop, f"node_{name}").view(-1)
                values.index_copy_(0, node_at, self._float_mutate(name, values.index_select(0, node_at), g))
        for name, rate_c, options in (
            ("activation", p.activation_mutate_rate, self.act_options),
            ("aggregation", p.aggregation_mutate_rate, self.agg_options),
        ):
            if rate_c <= 0:
                continue
            r = torch.rand(node_at.shape, generator=g)
            pick = options[torch.randint(len(options), node_at.shape, generator=g)]
            change = r < rate_c
            if name == "activation" and self.output_activation is not None:
                change &= node_key.index_select(0, node_at) >= self.num_inputs + self.num_outputs
            at = node_at[change]
            getattr(pop, f"node_{name}").view(-1).index_copy_(0, at, pick[change])
        return pop

    # -- checkpoints -----------------------------------------------------------------------------
    def write_report(self, folder: Any) -> None:
        """For the run's report folder: species sizes per generation and the best genome (SVG, PNG)."""
        from pathlib import Path

        from neuroevo.nn.neat_draw import draw_genome, plot_species

        folder = Path(folder)
        if self.species_history:
            plot_species(self, folder / "species.png")
        if self.best is not None:
            for suffix in ("svg", "png"):
                draw_genome(self.best.params, folder / f"best_genome.{suffix}", title="best genome")

    def _state(self) -> dict[str, Any]:
        assert self.representatives is not None
        return {
            "population": self.population.state(),
            "member_species": self.member_species.clone(),
            "species": {
                "id": self.species_id.clone(),
                "created": self.species_created.clone(),
                "last_improved": self.species_last_improved.clone(),
                "best_fitness": self.species_best.clone(),
                "representatives": self.representatives.state(),
            },
            "next_node_id": int(self.next_node_id),
            "next_innovation": int(self.next_innovation),
            "next_species_id": int(self.next_species_id),
            "compatibility_threshold": float(self.compatibility_threshold),
            "species_history": [dict(h) for h in self.species_history],
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.population = NEATPopulation.from_state(state["population"])
        self.member_species = torch.as_tensor(state["member_species"]).long()
        sp = state["species"]
        self.species_id = torch.as_tensor(sp["id"]).long()
        self.species_created = torch.as_tensor(sp["created"]).long()
        self.species_last_improved = torch.as_tensor(sp["last_improved"]).long()
        self.species_best = torch.as_tensor(sp["best_fitness"]).double()
        self.representatives = NEATPopulation.from_state(sp["representatives"])
        self.next_node_id = int(state["next_node_id"])
        self.next_innovation = int(state["next_innovation"])
        self.next_species_id = int(state["next_species_id"])
        self.compatibility_threshold = float(state["compatibility_threshold"])
        self.species_history = [dict(h) for h in state["species_history"]]

    @property
    def species_sizes(self) -> dict[int, int]:
        """Current species id -> member count."""
        sizes = torch.bincount(self.member_species, minlength=len(self.species_id))
        return dict(zip(self.species_id.tolist(), sizes.tolist(), strict=True))


def _round_to_total(quota: torch.Tensor, total: int) -> torch.Tensor:
    """Integers summing to ``total`` (largest remainder; ties to the lower index)."""
    base = torch.floor(quota).long()
    left = total - int(base.sum())
    if left > 0:
        frac = quota - base.double()
        order = torch.argsort(-frac, stable=True)[:left]
        base[order] += 1
    elif left < 0:
        order = torch.argsort(-base.double(), stable=True)[:-left]
        base[order] -= 1
    return base
