"""Deep GA with seed-chain genomes (Such et al. 2017, "Deep Neuroevolution").

An individual is its chain of seeds ``[s_0, s_1, ..., s_n]``::

    theta_n = init(s_0) + sigma_1 * eps(s_1) + ... + sigma_n * eps(s_n)

``init(s_0)`` is the phenotype's initialiser fed a CPU ``torch.Generator`` seeded with
``s_0``; ``eps(s_i)`` is standard normal noise from a generator seeded with ``s_i``. The
seeds are the counter-based keys of ``neuroevo.core.random``: ``s_0 = derive_key(seed, 0,
member, "init")`` and a child born in generation ``g`` as member ``i`` gets ``derive_key(seed,
g, i, "mutation")``. With the default settings (one elite, no re-evaluation) the populations
are bit-identical to the plain ``GA`` without crossover; only the representation differs.

Memory: the current population's tensors ``[P, D]`` are kept (they are the parents of the next
generation), never the history. A checkpoint holds the chains (JSON lists of ints) and scalars
only; ``load_state_dict`` rebuilds the tensors, sharing work between members that share a
prefix (with truncation selection lineages coalesce, so this costs far less than P x chain).

Selection: truncation (parents drawn uniformly from the top ``truncation``), ``elites``
copied unchanged. As in the paper, the elite is chosen among the top ``elite_candidates`` by
re-evaluating them on ``reeval_streams`` extra evaluation streams (episodes/minibatches): the
runtime calls ``reevaluation_request()`` right after ``tell`` and passes the mean fitness to
``tell_reevaluation``. Without that call the top member by its single evaluation is kept.

Mutation power: ``max(mutation_min, mutation_power * mutation_decay ** g)`` for children born
in generation ``g``; the power used is stored with each seed, so chains stay reconstructible.

``best_genome`` is the best member as a JSON-able dict (seeds, sigma(s), size, dtype and the
phenotype spec); ``reconstruct(best_genome)`` rebuilds its weights bit-identically.

On a cluster the population is sent as its seeds (the ``RegeneratesMembers`` hook, as in the
paper's distributed setup): ``member_recipe()`` is a ``SeedChainMembers``, the chains as one trie
(node parent, seed and power; the leaves are the members), whose size grows with the distinct
ancestors rather than P x chain length, plus a ``SeedChainInit`` (initialiser, size, dtype) that
stays the same object for the whole run, so an executor sends it once. A worker rebuilds its
rows with ``reconstruct_many``, bit-identical to the rows ``ask`` returned. The elite candidates
of the re-evaluation go the same way (``reevaluation_recipe()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from pydantic import BaseModel, Field

from neuroevo.core import random as nrandom
from neuroevo.core.types import Best
from neuroevo.strategies.base import Strategy
from neuroevo.strategies.ga import INIT_STD, TruncationParams, check_truncation, mutation_power_at

InitFn = Callable[[torch.Generator], torch.Tensor]

GENOME_FORMAT = "neuroevo.seed_chain/1"

_DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _generator(key: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(key))
    return gen


def _fill_noise(out: torch.Tensor, key: int) -> torch.Tensor:
    """Standard normal noise of seed ``key`` written into ``out`` (one CPU row); the only noise source."""
    return torch.randn(out.shape, generator=_generator(key), dtype=out.dtype, out=out)


def _mutate(parents: torch.Tensor, noise: torch.Tensor, power: float | torch.Tensor) -> torch.Tensor:
    """``parents + noise * power`` as two separately rounded ops (never fused), identical in every path."""
    return parents + noise.mul_(power)


def _init_row(
    init: InitFn | None, key: int, num_params: int, init_std: float, dtype: torch.dtype
) -> torch.Tensor:
    if init is None:
        row = _fill_noise(torch.empty(num_params, dtype=torch.float32), key) * init_std
    else:
        row = init(_generator(key)).reshape(-1).cpu()
    if row.numel() != num_params:
        raise ValueError(f"init produced {row.numel()} parameters; expected {num_params}")
    return row.to(dtype)


def reconstruct_many(
    chains: Sequence[Sequence[int]],
    powers: Sequence[Sequence[float]],
    init: InitFn | None,
    num_params: int,
    *,
    init_std: float = INIT_STD,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Rebuild ``[N, D]`` parameters from N chains, computing each shared prefix once.

    The chains are put in a trie and walked level by level; only one level of intermediate
    tensors (plus the finished rows) is alive at a time.
    """
    if len(chains) != len(powers):
        raise ValueError(f"{len(chains)} chains but {len(powers)} power lists")
    # trie: node id -> (parent id, seed, power); children of a node are keyed by (seed, power)
    index: dict[tuple[int, int, float], int] = {}
    parent: list[int] = []
    seed_of: list[int] = []
    power_of: list[float] = []
    depth_nodes: list[list[int]] = []
    leaves: list[int] = []
    for chain, pw in zip(chains, powers, strict=True):
        if len(chain) < 1 or len(pw) != len(chain) - 1:
            raise ValueError(
                f"a chain of {len(chain)} seeds needs {max(len(chain) - 1, 0)} powers, got {len(pw)}"
            )
        node = -1
        for depth, s in enumerate(chain):
            p = 0.0 if depth == 0 else float(pw[depth - 1])
            key = (node, int(s), p)
            nxt = index.get(key)
            if nxt is None:
                nxt = len(parent)
                index[key] = nxt
                parent.append(node)
                seed_of.append(int(s))
                power_of.append(p)
                if len(depth_nodes) <= depth:
                    depth_nodes.append([])
                depth_nodes[depth].append(nxt)
            node = nxt
        leaves.append(node)
    wanted = set(leaves)
    done: dict[int, torch.Tensor] = {}
    level: dict[int, torch.Tensor] = {}
    for depth, nodes in enumerate(depth_nodes):
        new_level: dict[int, torch.Tensor] = {}
        if depth == 0:
            for n in nodes:
                new_level[n] = _init_row(init, seed_of[n], num_params, init_std, dtype)
        else:
            noise = torch.empty(len(nodes), num_params, dtype=dtype)
            for row, n in enumerate(nodes):
                _fill_noise(noise[row], seed_of[n])
            for row, n in enumerate(nodes):
                new_level[n] = _mutate(level[parent[n]], noise[row], power_of[n])
        for n, t in new_level.items():
            if n in wanted:
                done[n] = t
        level = new_level
    if not leaves:
        return torch.empty(0, num_params, dtype=dtype)
    return torch.stack([done[n] for n in leaves])


_MASK64 = (1 << 64) - 1


def _to_int64(seeds: Sequence[int]) -> torch.Tensor:
    """Unsigned 64-bit seeds as int64 (two's complement), for a compact tensor on the wire."""
    return torch.tensor([s - (1 << 64) if s >= 1 << 63 else s for s in seeds], dtype=torch.int64)


@dataclass
class SeedChainInit:
    """What every chain starts from: ``init`` (None: ``init_std * N(0, 1)``), size and dtype.

    The same object for a whole run, so an executor sends it once (``SeedChainMembers.shared``).
    """

    init: InitFn | None
    num_params: int
    init_std: float
    dtype: torch.dtype


@dataclass
class SeedChainMembers:
    """A seed-chain population as a trie of seeds: node ``n`` has ``parent[n]`` (-1: an initial
    seed), ``seed[n]`` and ``power[n]``; member ``j`` is the chain ending at node ``leaf[j]``.

    ``rows(a, b)`` equals the population's rows ``a..b`` bit for bit (``reconstruct_many``);
    ``shared`` is the run's ``SeedChainInit`` (an executor may swap in a reference to it).
    """

    parent: torch.Tensor
    seed: torch.Tensor
    power: torch.Tensor
    leaf: torch.Tensor
    shared: Any

    @classmethod
    def of(
        cls, chains: Sequence[Sequence[int]], powers: Sequence[Sequence[float]], shared: SeedChainInit
    ) -> SeedChainMembers:
        """The trie of ``chains`` (shared prefixes stored once)."""
        index: dict[tuple[int, int, float], int] = {}
        parent: list[int] = []
        seed: list[int] = []
        power: list[float] = []
        leaf: list[int] = []
        for chain, pw in zip(chains, powers, strict=True):
            node = -1
            for depth, s in enumerate(chain):
                p = 0.0 if depth == 0 else float(pw[depth - 1])
                key = (node, int(s), p)
                nxt = index.get(key)
                if nxt is None:
                    nxt = index[key] = len(parent)
                    parent.append(node)
                    seed.append(int(s))
                    power.append(p)
                node = nxt
            leaf.append(node)
        return cls(
            torch.tensor(parent, dtype=torch.int64),
            _to_int64(seed),
            torch.tensor(power, dtype=torch.float64),
            torch.tensor(leaf, dtype=torch.int64),
            shared,
        )

    def __len__(self) -> int:
        return int(self.leaf.numel())

    def chains(self, start: int, stop: int) -> tuple[list[list[int]], list[list[float]]]:
        """The seed chains and mutation powers of members ``start..stop``."""
        parent, seed, power = self.parent.tolist(), self.seed.tolist(), self.power.tolist()
        chains, powers = [], []
        for node in self.leaf[start:stop].tolist():
            chain, pw = [], []
            while node >= 0:
                chain.append(seed[node] & _MASK64)
                pw.append(power[node])
                node = parent[node]
            chains.append(chain[::-1])
            powers.append(pw[::-1][1:])
        return chains, powers

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Members ``start..stop`` rebuilt from their seeds: ``population[start:stop]`` exactly."""
        init: SeedChainInit = self.shared
        chains, powers = self.chains(start, stop)
        return reconstruct_many(
            chains, powers, init.init, init.num_params, init_std=init.init_std, dtype=init.dtype
        )


def _resolve_init(init: Any) -> InitFn | None:
    if init is None or callable(init) and not hasattr(init, "init_params"):
        return init
    if hasattr(init, "init_params"):
        return init.init_params
    if isinstance(init, Mapping):
        from neuroevo.nn import phenotype_from_spec

        return phenotype_from_spec(dict(init)).init_params
    raise TypeError(
        f"init must be a callable, a phenotype or a phenotype spec dict, not {type(init).__name__}"
    )


def reconstruct(
    chain: Sequence[int] | Mapping[str, Any],
    init: InitFn | Any | None = None,
    sigma: float | Sequence[float] | None = None,
    *,
    num_params: int | None = None,
    init_std: float = INIT_STD,
    dtype: torch.dtype | str = torch.float32,
) -> torch.Tensor:
    """The weights ``theta[D]`` of one seed chain, bit-identical to what the strategy evaluated.

    ``chain`` is a list of seeds (then pass ``sigma``: one float for every mutation or one per
    mutation, and ``num_params``) or a genome dict from ``SeedGA.best_genome`` / ``genome(i)``
    (self-contained: it carries sigma(s), size, dtype and the phenotype spec). ``init`` is the
    initialiser: a callable ``init(generator)``, a phenotype, or a phenotype spec dict; ``None``
    takes the genome's phenotype spec, else draws ``init_std * N(0, 1)``.
    """
    if isinstance(chain, Mapping):
        genome = chain
        if genome.get("format", GENOME_FORMAT) != GENOME_FORMAT:
            raise ValueError(f"genome format {genome.get('format')!r}; expected {GENOME_FORMAT!r}")
        nrandom.check_noise_version(genome.get("noise"), "seed-chain genome")
        seeds = [int(s) for s in genome["seeds"]]
        if sigma is None:
            sigma = genome["sigmas"] if "sigmas" in genome else genome.get("sigma", 0.0)
        num_params = int(genome["num_params"]) if num_params is None else num_params
        dtype = genome.get("dtype", dtype)
        init_std = float(genome.get("init_std", init_std))
        if init is None and genome.get("phenotype") is not None:
            init = genome["phenotype"]
    else:
        seeds = [int(s) for s in chain]
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype.removeprefix("torch.")]
    init_fn = _resolve_init(init)
    if num_params is None:
        if init_fn is None:
            raise ValueError("reconstruct needs num_params when there is no initialiser")
        num_params = int(init_fn(_generator(seeds[0])).numel())
    if sigma is None:
        raise ValueError("reconstruct needs sigma (one float, or one per mutation)")
    if isinstance(sigma, (int, float)):
        powers = [float(sigma)] * (len(seeds) - 1)
    else:
        powers = [float(s) for s in sigma]
    return reconstruct_many([seeds], [powers], init_fn, num_params, init_std=init_std, dtype=dtype)[0]


class SeedGAParams(TruncationParams):
    elite_candidates: int = Field(
        10, ge=1, description="top-k members re-evaluated before the elite is kept (the paper: 10)"
    )
    reeval_streams: int = Field(
        10,
        ge=0,
        description="extra evaluation streams per candidate (the paper: 30); 0 = no re-evaluation "
        "(use 0 for deterministic tasks)",
    )


@dataclass
class SeedGAState:
    """Seed chains and their mutation powers; the tensors are rebuilt from them (derived fields).

    ``pending_*`` are the elite candidates awaiting re-evaluation (between ``tell`` and
    ``tell_reevaluation``); ``best_*`` the chain of the best member so far.
    """

    chains: list[list[int]]
    powers: list[list[float]]
    best_chain: list[int] | None = None
    best_powers: list[float] | None = None
    pending_chains: list[list[int]] | None = None
    pending_powers: list[list[float]] | None = None
    population: torch.Tensor | None = field(default=None, init=False, repr=False)  # rows of ``chains``
    pending_population: torch.Tensor | None = field(default=None, init=False, repr=False)


class SeedGA(Strategy):
    """Truncation-selection GA whose genomes are seed chains; elites chosen by re-evaluation.

    Implements the ``HasGenome`` (``best_genome``) and ``Reevaluating``
    (``reevaluation_request``/``tell_reevaluation``) hooks of ``neuroevo.core.contracts``.
    """

    name = "seed_ga"
    Params = SeedGAParams
    params: SeedGAParams
    state: SeedGAState

    def __init__(
        self,
        num_params: int,
        population_size: int | None = None,
        *,
        params: BaseModel | dict[str, Any] | None = None,
        init: InitFn | Any | None = None,
        init_std: float = INIT_STD,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        phenotype_spec: dict[str, Any] | None = None,
        **keys: Any,
    ):
        """``keys`` are ``SeedGAParams`` fields (truncation, elite_candidates, ...); or pass ``params``.

        ``init`` is a callable ``init(generator)``, a phenotype or a phenotype spec dict;
        without one, members start as ``init_std * N(0, I)``.
        """
        p = self.params = self.resolve_params(params, population_size, keys)
        super().__init__(num_params, p.population_size, seed=seed, on_nan=p.on_nan)
        check_truncation(p)
        if phenotype_spec is None and hasattr(init, "spec"):
            phenotype_spec = init.spec()
        self._init = _resolve_init(init)
        self.phenotype_spec = phenotype_spec
        self.init_std = float(init_std)
        self.dtype, self.device = dtype, torch.device(device)
        self._shared = SeedChainInit(self._init, self.num_params, self.init_std, dtype)
        chains = [[nrandom.derive_key(self.seed, 0, i, "init")] for i in range(self.population_size)]
        self.state = SeedGAState(chains=chains, powers=[[] for _ in range(self.population_size)])
        self.state.population = self._rebuild(self.state.chains, self.state.powers)

    @classmethod
    def from_params(cls, params: SeedGAParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> SeedGA:
        """Build from validated config keys for ``phenotype`` (its size, initialiser and spec)."""
        spec = phenotype.spec() if hasattr(phenotype, "spec") else None
        kw.setdefault("phenotype_spec", spec)
        return cls(phenotype.num_params, init=phenotype.init_params, seed=seed, params=params, **kw)

    @property
    def population(self) -> torch.Tensor:
        """The population the next ``ask()`` hands out (rebuilt from the chains after a load)."""
        return self.state.population

    @property
    def chains(self) -> list[list[int]]:
        """The seed chain of every member of the current population."""
        return self.state.chains

    # -- genomes ------------------------------------------------------------------------------
    def _rebuild(self, chains: Sequence[Sequence[int]], powers: Sequence[Sequence[float]]) -> torch.Tensor:
        pop = reconstruct_many(
            chains, powers, self._init, self.num_params, init_std=self.init_std, dtype=self.dtype
        )
        return pop.to(self.device)

    def genome_dict(self, chain: Sequence[int], powers: Sequence[float]) -> dict[str, Any]:
        """A JSON-able, self-contained genome: what ``reconstruct`` takes."""
        genome: dict[str, Any] = {
            "format": GENOME_FORMAT,
            "noise": nrandom.NOISE_VERSION,
            "seeds": [int(s) for s in chain],
            "num_params": self.num_params,
            "dtype": _dtype_name(self.dtype),
            "init_std": self.init_std,
            "phenotype": self.phenotype_spec,
        }
        if powers and all(p == powers[0] for p in powers):
            genome["sigma"] = float(powers[0])
        elif powers:
            genome["sigmas"] = [float(p) for p in powers]
        else:
            genome["sigma"] = 0.0
        return genome

    def genome(self, index: int) -> dict[str, Any]:
        """Genome of member ``index`` of the current population (the one ``ask`` hands out)."""
        return self.genome_dict(self.state.chains[index], self.state.powers[index])

    @property
    def best_genome(self) -> dict[str, Any] | None:
        """The best member so far as a JSON-able seed-chain genome (``reconstruct`` rebuilds it)."""
        s = self.state
        if s.best_chain is None or s.best_powers is None:
            return None
        return self.genome_dict(s.best_chain, s.best_powers)

    @property
    def current_mutation_power(self) -> float:
        """Power of the mutations made in this ``tell`` (children belong to generation + 1)."""
        return mutation_power_at(self.params, self.generation)

    # -- ask / tell ---------------------------------------------------------------------------
    def _drop_pending(self) -> None:
        s = self.state
        s.pending_chains = s.pending_powers = s.pending_population = None

    def _ask(self) -> torch.Tensor:
        self._drop_pending()  # the runtime skipped re-evaluation: the provisional elite stays
        return self.state.population

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        p, s = self.params, self.state
        size, gen = self.population_size, self.generation + 1  # children belong to the next generation
        if self.best is not None and self.best.generation == self.generation:
            b = int(torch.argmax(fitness))  # the member the base just recorded as best
            s.best_chain, s.best_powers = list(s.chains[b]), list(s.powers[b])
        order = torch.argsort(fitness, descending=True, stable=True)
        parents = order[: p.truncation].tolist()
        members = list(range(p.elites, size))
        first = nrandom.population_randint(p.truncation, members, 2, self.seed, gen, "parents")[:, 0]
        picks = [parents[i] for i in first.tolist()]
        power = self.current_mutation_power
        seeds = nrandom.member_keys(self.seed, gen, members, "mutation")
        noise = torch.empty(len(members), self.num_params, dtype=self.dtype)
        for row, seed in enumerate(seeds):
            _fill_noise(noise[row], seed)
        pick_idx = torch.tensor(picks, dtype=torch.long, device=population.device)
        children = _mutate(population[pick_idx], noise.to(self.device), power)
        elite_idx = order[: p.elites].tolist()
        chains = [list(s.chains[e]) for e in elite_idx] + [
            [*s.chains[q], seed] for q, seed in zip(picks, seeds, strict=True)
        ]
        powers = [list(s.powers[e]) for e in elite_idx] + [[*s.powers[q], power] for q in picks]
        if p.elites:
            elite_t = population[torch.tensor(elite_idx, dtype=torch.long, device=population.device)]
            s.population = torch.cat([elite_t, children])
        else:
            s.population = children
        self._drop_pending()
        k = min(p.elite_candidates, size)
        if p.elites and p.reeval_streams > 0 and k > p.elites:
            cand = order[:k].tolist()
            s.pending_chains = [list(s.chains[c]) for c in cand]
            s.pending_powers = [list(s.powers[c]) for c in cand]
            s.pending_population = population[torch.tensor(cand, dtype=torch.long, device=population.device)]
        s.chains, s.powers = chains, powers
        return {"mutation_power": power, "chain_length_max": float(max(len(c) for c in chains))}

    # -- members as seeds (the RegeneratesMembers hook) -----------------------------------------
    def member_recipe(self) -> SeedChainMembers | None:
        """This generation's population as its seed chains (None on a GPU: rows are rebuilt on
        the CPU, where the noise is drawn)."""
        if self.device.type != "cpu":
            return None
        return SeedChainMembers.of(self.state.chains, self.state.powers, self._shared)

    def reevaluation_recipe(self) -> SeedChainMembers | None:
        """The elite candidates of ``reevaluation_request()`` as their seed chains."""
        s = self.state
        if s.pending_chains is None or s.pending_powers is None or self.device.type != "cpu":
            return None
        return SeedChainMembers.of(s.pending_chains, s.pending_powers, self._shared)

    # -- elite re-evaluation (called by the runtime right after tell) ---------------------------
    def reevaluation_request(self) -> tuple[torch.Tensor, int] | None:
        """``(candidates[k, D], n)``: evaluate the elite candidates on streams 1..n, or None."""
        if self.state.pending_population is None:
            return None
        return self.state.pending_population, self.params.reeval_streams

    def tell_reevaluation(self, values: torch.Tensor | Sequence[float]) -> dict[str, float]:
        """Keep the ``elites`` candidates with the highest mean fitness over the extra streams."""
        s = self.state
        if s.pending_population is None or s.pending_chains is None or s.pending_powers is None:
            raise RuntimeError("tell_reevaluation() without a pending reevaluation_request()")
        values = torch.as_tensor(values).detach().to("cpu", torch.float64).reshape(-1)
        if values.numel() != len(s.pending_chains):
            raise ValueError(
                f"tell_reevaluation got {values.numel()} values; there are {len(s.pending_chains)} candidates"
            )
        values = torch.where(torch.isfinite(values), values, torch.full_like(values, -torch.inf))
        keep = torch.argsort(values, descending=True, stable=True)[: self.params.elites].tolist()
        for slot, c in enumerate(keep):
            s.chains[slot] = list(s.pending_chains[c])
            s.powers[slot] = list(s.pending_powers[c])
            s.population[slot] = s.pending_population[c]
        self._drop_pending()
        return {"elite_reeval_fitness": float(values[keep[0]]), "elite_candidate": float(keep[0])}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Chains and scalars only (JSON); the best member's weights are rebuilt from its chain."""
        state = super().state_dict()
        if state["best"] is not None:
            state["best"] = {**state["best"], "params": None}
        return state

    def _restore(self) -> None:
        """Rebuild the population, the pending candidates and the best member from their chains."""
        s = self.state
        if len(s.chains) != self.population_size:
            raise ValueError(
                f"checkpoint has {len(s.chains)} chains; population_size is {self.population_size}"
            )
        chains, powers = list(s.chains), list(s.powers)
        k = 0
        if s.pending_chains is not None and s.pending_powers is not None:
            k = len(s.pending_chains)
            chains += s.pending_chains
            powers += s.pending_powers
        if s.best_chain is not None and s.best_powers is not None:
            chains.append(s.best_chain)
            powers.append(s.best_powers)
        rows = self._rebuild(chains, powers)
        size = self.population_size
        s.population = rows[:size].clone()
        if s.pending_chains is not None:
            s.pending_population = rows[size : size + k].clone()
        if self.best is not None and s.best_chain is not None:
            self.best = Best(rows[-1].clone(), self.best.fitness, self.best.generation)
