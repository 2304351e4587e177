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
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.types import Best
from neuroevo.strategies.base import OnNan, Strategy
from neuroevo.strategies.ga import TruncationParams

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
    init_std: float = 0.1,
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
    init_std: float = 0.1,
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


class SeedGA(Strategy):
    """Truncation-selection GA whose genomes are seed chains; elites chosen by re-evaluation."""

    name = "seed_ga"
    Params = SeedGAParams

    def __init__(
        self,
        num_params: int,
        population_size: int = 256,
        *,
        init: InitFn | Any | None = None,
        init_std: float = 0.1,
        truncation: int = 20,
        elites: int = 1,
        mutation_power: float = 0.02,
        mutation_decay: float = 1.0,
        mutation_min: float = 0.0,
        elite_candidates: int = 10,
        reeval_streams: int = 10,
        seed: int = 0,
        on_nan: OnNan = "worst",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        phenotype_spec: dict[str, Any] | None = None,
    ):
        super().__init__(num_params, population_size, seed=seed, on_nan=on_nan)
        if not 1 <= truncation <= population_size:
            raise ValueError(f"truncation = {truncation}; allowed: 1..population_size ({population_size})")
        if not 0 <= elites <= truncation:
            raise ValueError(f"elites = {elites}; allowed: 0..truncation ({truncation})")
        if elite_candidates < 1:
            raise ValueError(f"elite_candidates = {elite_candidates}; allowed: >= 1")
        if phenotype_spec is None and hasattr(init, "spec"):
            phenotype_spec = init.spec()
        self._init = _resolve_init(init)
        self.phenotype_spec = phenotype_spec
        self.init_std = float(init_std)
        self.truncation, self.elites = truncation, elites
        self.mutation_power, self.mutation_decay, self.mutation_min = (
            mutation_power,
            mutation_decay,
            mutation_min,
        )
        self.elite_candidates, self.reeval_streams = elite_candidates, reeval_streams
        self.dtype, self.device = dtype, torch.device(device)
        self.chains: list[list[int]] = [
            [nrandom.derive_key(self.seed, 0, i, "init")] for i in range(self.population_size)
        ]
        self.powers: list[list[float]] = [[] for _ in range(self.population_size)]
        self.population = self._rebuild(self.chains, self.powers)
        self.best_chain: list[int] | None = None
        self.best_powers: list[float] | None = None
        self._pending: dict[str, Any] | None = None

    @classmethod
    def from_params(cls, params: SeedGAParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> SeedGA:
        """Build from validated config keys for ``phenotype`` (its size, initialiser and spec)."""
        spec = phenotype.spec() if hasattr(phenotype, "spec") else None
        kw.setdefault("phenotype_spec", spec)
        return cls(phenotype.num_params, init=phenotype.init_params, seed=seed, **params.model_dump(), **kw)

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
        return self.genome_dict(self.chains[index], self.powers[index])

    @property
    def best_genome(self) -> dict[str, Any] | None:
        """The best member so far as a JSON-able seed-chain genome (``reconstruct`` rebuilds it)."""
        if self.best_chain is None or self.best_powers is None:
            return None
        return self.genome_dict(self.best_chain, self.best_powers)

    @property
    def current_mutation_power(self) -> float:
        """Power of the mutations made in this ``tell`` (children belong to generation + 1)."""
        return max(self.mutation_min, self.mutation_power * self.mutation_decay**self.generation)

    # -- ask / tell ---------------------------------------------------------------------------
    def _ask(self) -> torch.Tensor:
        self._pending = None  # the runtime skipped re-evaluation: the provisional elite stays
        return self.population

    def _tell(self, population: torch.Tensor, fitness: torch.Tensor) -> dict[str, float]:
        size, gen = self.population_size, self.generation + 1  # children belong to the next generation
        if self.best is not None and self.best.generation == self.generation:
            b = int(torch.argmax(fitness))  # the member the base just recorded as best
            self.best_chain, self.best_powers = list(self.chains[b]), list(self.powers[b])
        order = torch.argsort(fitness, descending=True, stable=True)
        parents = order[: self.truncation].tolist()
        members = list(range(self.elites, size))
        picks = [
            parents[int(nrandom.randint(self.truncation, 2, self.seed, gen, i, "parents")[0])]
            for i in members
        ]
        power = self.current_mutation_power
        seeds = [nrandom.derive_key(self.seed, gen, i, "mutation") for i in members]
        noise = torch.empty(len(members), self.num_params, dtype=self.dtype)
        for row, s in enumerate(seeds):
            _fill_noise(noise[row], s)
        pick_idx = torch.tensor(picks, dtype=torch.long, device=population.device)
        children = _mutate(population[pick_idx], noise.to(self.device), power)
        elite_idx = order[: self.elites].tolist()
        chains = [list(self.chains[e]) for e in elite_idx] + [
            [*self.chains[p], s] for p, s in zip(picks, seeds, strict=True)
        ]
        powers = [list(self.powers[e]) for e in elite_idx] + [[*self.powers[p], power] for p in picks]
        if self.elites:
            elite_t = population[torch.tensor(elite_idx, dtype=torch.long, device=population.device)]
            self.population = torch.cat([elite_t, children])
        else:
            self.population = children
        self._pending = None
        k = min(self.elite_candidates, size)
        if self.elites and self.reeval_streams > 0 and k > self.elites:
            cand = order[:k].tolist()
            self._pending = {
                "chains": [list(self.chains[c]) for c in cand],
                "powers": [list(self.powers[c]) for c in cand],
                "population": population[torch.tensor(cand, dtype=torch.long, device=population.device)],
            }
        self.chains, self.powers = chains, powers
        return {"mutation_power": power, "chain_length_max": float(max(len(c) for c in chains))}

    # -- elite re-evaluation (called by the runtime right after tell) ---------------------------
    def reevaluation_request(self) -> tuple[torch.Tensor, int] | None:
        """``(candidates[k, D], n)``: evaluate the elite candidates on streams 1..n, or None."""
        if self._pending is None:
            return None
        return self._pending["population"], self.reeval_streams

    def tell_reevaluation(self, values: torch.Tensor | Sequence[float]) -> dict[str, float]:
        """Keep the ``elites`` candidates with the highest mean fitness over the extra streams."""
        if self._pending is None:
            raise RuntimeError("tell_reevaluation() without a pending reevaluation_request()")
        cand = self._pending
        values = torch.as_tensor(values).detach().to("cpu", torch.float64).reshape(-1)
        if values.numel() != len(cand["chains"]):
            raise ValueError(
                f"tell_reevaluation got {values.numel()} values; there are {len(cand['chains'])} candidates"
            )
        values = torch.where(torch.isfinite(values), values, torch.full_like(values, -torch.inf))
        keep = torch.argsort(values, descending=True, stable=True)[: self.elites].tolist()
        for slot, c in enumerate(keep):
            self.chains[slot] = list(cand["chains"][c])
            self.powers[slot] = list(cand["powers"][c])
            self.population[slot] = cand["population"][c]
        self._pending = None
        return {"elite_reeval_fitness": float(values[keep[0]]), "elite_candidate": float(keep[0])}

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Chains and scalars only (JSON); the best member's weights are rebuilt from its chain."""
        state = super().state_dict()
        if state["best"] is not None:
            state["best"] = {**state["best"], "params": None}
        return state

    def _state(self) -> dict[str, Any]:
        pending = None
        if self._pending is not None:
            pending = {"chains": self._pending["chains"], "powers": self._pending["powers"]}
        return {
            "chains": [list(c) for c in self.chains],
            "powers": [list(p) for p in self.powers],
            "best_chain": None if self.best_chain is None else list(self.best_chain),
            "best_powers": None if self.best_powers is None else list(self.best_powers),
            "pending": pending,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        self.chains = [[int(s) for s in c] for c in state["chains"]]
        self.powers = [[float(p) for p in pw] for pw in state["powers"]]
        if len(self.chains) != self.population_size:
            raise ValueError(
                f"checkpoint has {len(self.chains)} chains; population_size is {self.population_size}"
            )
        self.best_chain = None if state.get("best_chain") is None else [int(s) for s in state["best_chain"]]
        self.best_powers = (
            None if state.get("best_powers") is None else [float(p) for p in state["best_powers"]]
        )
        pending = state.get("pending")
        chains, powers = list(self.chains), list(self.powers)
        if pending is not None:
            chains += [[int(s) for s in c] for c in pending["chains"]]
            powers += [[float(p) for p in pw] for pw in pending["powers"]]
        if self.best_chain is not None and self.best_powers is not None:
            chains.append(self.best_chain)
            powers.append(self.best_powers)
        rows = self._rebuild(chains, powers)
        self.population = rows[: self.population_size].clone()
        self._pending = None
        if pending is not None:
            k = len(pending["chains"])
            self._pending = {
                "chains": chains[self.population_size : self.population_size + k],
                "powers": powers[self.population_size : self.population_size + k],
                "population": rows[self.population_size : self.population_size + k].clone(),
            }
        if self.best is not None and self.best_chain is not None:
            self.best = Best(rows[-1].clone(), self.best.fitness, self.best.generation)
