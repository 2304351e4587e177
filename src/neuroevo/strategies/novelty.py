"""Novelty search (Lehman & Stanley 2011) and NS-ES / NSR-ES (Conti et al. 2018) as a wrapper.

``Novelty(base, ...)`` wraps any ask/tell strategy and replaces the fitness it is told by a
score computed from the behaviour descriptors ``Fitness.descriptors[P, K]`` the task returns:

- novelty of a member = mean Euclidean distance to its ``k`` nearest neighbours among the
  rest of the population and the archive (one ``torch.cdist``, no Python loop);
- ``mode = "ns"``: the score is the novelty alone (reward is ignored by the search);
- ``mode = "nsr"``: ``weight * centred_rank(reward) + (1 - weight) * centred_rank(novelty)``;
- ``mode = "nsr_pareto"``: rank by non-dominated fronts of (reward, novelty), ties inside a
  front broken by the ``nsr`` mix.

Archive: each member is inserted with probability ``archive_prob`` (keyed by seed and
generation), or, with ``archive_threshold`` set, when its novelty exceeds the threshold;
``archive_size > 0`` keeps only the newest entries. ``add_centre = True`` (the NS-ES default)
also inserts the behaviour of the search centre each generation; the centre is not evaluated
on its own, so its behaviour is estimated by the mean descriptor of its perturbations.
``population_neighbours = False`` (the NS-ES default) measures novelty against the archive
alone, as Conti et al. do: perturbations are then pushed away from where the search has been,
not away from each other.

Meta-population (NS-ES): pass a list of M base strategies (e.g. M OpenES centres). Each
generation one is chosen with probability proportional to the novelty of its centre's
behaviour w.r.t. the archive (a centre never evaluated yet is chosen first), asked, and told.

``best`` tracks the true reward (not novelty). The wrapped strategy's elite re-evaluation is
not forwarded: the elite of a novelty GA is its most novel member, not its best-rewarded one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.shaping import centered_rank
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams
from neuroevo.strategies.deep_ga import SeedGA
from neuroevo.strategies.ga import GA, GAParams
from neuroevo.strategies.openes import OpenES, OpenESParams

Mode = Literal["ns", "nsr", "nsr_pareto"]
MODES = ("ns", "nsr", "nsr_pareto")


def knn_novelty(
    descriptors: torch.Tensor,
    archive: torch.Tensor | None = None,
    k: int = 10,
    *,
    exclude_self: bool = True,
    population: bool = True,
) -> torch.Tensor:
    """Mean distance of each row of ``descriptors[P, K]`` to its k nearest among population + archive.

    A member is never its own neighbour (``exclude_self``). ``population = False`` measures
    against the archive alone (NS-ES), falling back to the population while the archive is
    empty. Rows with a non-finite descriptor get novelty 0 and are no one's neighbour. Fewer
    than k references: the mean over all.
    """
    desc = descriptors.detach().to("cpu", torch.float64)
    if desc.dim() == 1:
        desc = desc.unsqueeze(1)
    size = desc.shape[0]
    finite = torch.isfinite(desc).all(1)
    desc = torch.where(finite.unsqueeze(1), desc, torch.zeros_like(desc))
    ref = desc
    ref_ok = finite
    if archive is not None and archive.numel():
        arch = archive.detach().to("cpu", torch.float64).reshape(-1, desc.shape[1])
        ref = torch.cat([desc, arch])
        ref_ok = torch.cat([finite, torch.isfinite(arch).all(1)])
        ref = torch.where(ref_ok.unsqueeze(1), ref, torch.zeros_like(ref))
    dist = torch.cdist(desc.unsqueeze(0), ref.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")[0]
    dist = dist.masked_fill(~ref_ok.unsqueeze(0), torch.inf)
    if not population and ref.shape[0] > size:
        dist[:, :size] = torch.inf
        available = int(ref_ok[size:].sum())
    else:
        if exclude_self:
            idx = torch.arange(size)
            dist[idx, idx] = torch.inf
        available = int(ref_ok[:size].sum()) - (1 if exclude_self else 0) + int(ref_ok[size:].sum())
    k_eff = min(int(k), available)
    if k_eff < 1:
        return torch.zeros(size, dtype=torch.float64)
    nearest = dist.topk(k_eff, dim=1, largest=False).values
    novelty = nearest.mean(1)
    return torch.where(finite & torch.isfinite(novelty), novelty, torch.zeros_like(novelty))


def pareto_fronts(objectives: torch.Tensor) -> torch.Tensor:
    """Front index (0 = non-dominated) of each row of ``objectives[P, M]`` (all maximised)."""
    obj = objectives.to(torch.float64)
    ge = (obj.unsqueeze(1) >= obj.unsqueeze(0)).all(-1)
    gt = (obj.unsqueeze(1) > obj.unsqueeze(0)).any(-1)
    dominates = ge & gt  # [i, j]: i dominates j
    front = torch.full((obj.shape[0],), -1, dtype=torch.long)
    remaining = torch.ones(obj.shape[0], dtype=torch.bool)
    level = 0
    while bool(remaining.any()):
        dominated = (dominates & remaining.unsqueeze(1)).any(0)
        current = remaining & ~dominated
        front[current] = level
        remaining &= ~current
        level += 1
    return front


def novelty_score(
    reward: torch.Tensor, novelty: torch.Tensor, mode: str, weight: float = 0.5
) -> torch.Tensor:
    """The fitness handed to the wrapped strategy for ``mode`` (higher is better)."""
    if mode == "ns":
        return novelty.to(torch.float64)
    mix = weight * centered_rank(reward.to(torch.float64)) + (1 - weight) * centered_rank(
        novelty.to(torch.float64)
    )
    if mode == "nsr":
        return mix
    if mode == "nsr_pareto":
        fronts = pareto_fronts(torch.stack([reward, novelty], 1))
        return -fronts.to(torch.float64) + 0.5 * mix
    raise ConfigError(f"novelty mode = {mode!r}; allowed: {', '.join(MODES)}")


class Novelty(Strategy):
    """Wraps one base strategy (or a meta-population of them) and tells it novelty-based scores."""

    needs = frozenset({Capability.DESCRIPTORS})

    name = "novelty"

    def __init__(
        self,
        base: Strategy | Sequence[Strategy],
        *,
        k: int = 10,
        mode: Mode = "ns",
        weight: float = 0.5,
        archive_prob: float = 0.02,
        archive_threshold: float | None = None,
        archive_size: int = 0,
        add_centre: bool = False,
        population_neighbours: bool = True,
        seed: int = 0,
        on_nan: OnNan = "worst",
    ):
        bases = [base] if isinstance(base, Strategy) else list(base)
        if not bases:
            raise ValueError("Novelty needs at least one base strategy")
        if any(
            b.num_params != bases[0].num_params or b.population_size != bases[0].population_size
            for b in bases
        ):
            raise ValueError("the strategies of a meta-population must share num_params and population_size")
        super().__init__(bases[0].num_params, bases[0].population_size, seed=seed, on_nan=on_nan)
        if mode not in MODES:
            raise ConfigError(f"novelty mode = {mode!r}; allowed: {', '.join(MODES)}")
        if k < 1:
            raise ConfigError(f"k = {k}; allowed: >= 1")
        if not 0 <= weight <= 1:
            raise ConfigError(f"weight = {weight}; allowed: 0..1")
        self.bases = bases
        self.k, self.mode, self.weight = int(k), mode, float(weight)
        self.archive_prob, self.archive_threshold = float(archive_prob), archive_threshold
        self.archive_size, self.add_centre = int(archive_size), bool(add_centre)
        self.population_neighbours = bool(population_neighbours)
        self.active = 0
        self.archive: torch.Tensor = torch.zeros(0, 0)
        self.centre_descriptors: torch.Tensor = torch.zeros(len(bases), 0)
        self.centre_known: list[bool] = [False] * len(bases)
        self.best_chain: dict[str, Any] | None = None
        self.last_novelty: torch.Tensor | None = None

    @property
    def base(self) -> Strategy:
        """The base strategy asked this generation."""
        return self.bases[self.active]

    @property
    def center(self) -> torch.Tensor | None:
        return self.base.center

    @property
    def best_genome(self) -> dict[str, Any] | None:
        """Seed-chain genome of the best-rewarded member when the base is a ``SeedGA``."""
        return self.best_chain

    def expected_population_size(self) -> int:
        return self.base.expected_population_size()

    def member(self, population: Any, index: int) -> Any:
        return self.base.member(population, index)

    def _choose_base(self) -> int:
        if len(self.bases) == 1:
            return 0
        for m, known in enumerate(self.centre_known):
            if not known:
                return m
        nov = knn_novelty(self.centre_descriptors, self.archive, self.k, exclude_self=False)
        if float(nov.sum()) <= 0:
            probs = torch.full((len(self.bases),), 1.0 / len(self.bases), dtype=torch.float64)
        else:
            probs = nov / nov.sum()
        u = float(
            nrandom.uniform(1, self.seed, self.generation, 0, "meta-population", dtype=torch.float64)[0]
        )
        m = int(torch.searchsorted(probs.cumsum(0), torch.tensor([u], dtype=torch.float64)).item())
        return min(m, len(self.bases) - 1)

    def _ask(self) -> Any:
        self.active = self._choose_base()
        return self.base.ask()

    def _insert(self, rows: torch.Tensor) -> None:
        rows = rows.detach().to("cpu", torch.float32)
        rows = rows[torch.isfinite(rows).all(1)]
        if not rows.numel():
            return
        archive = rows if not self.archive.numel() else torch.cat([self.archive, rows])
        if self.archive_size and archive.shape[0] > self.archive_size:
            archive = archive[-self.archive_size :]
        self.archive = archive.clone()

    def _tell(self, population: Any, fitness: torch.Tensor) -> dict[str, float]:
        if self.descriptors is None:
            raise ConfigError(
                f"strategy {self.name!r} needs behaviour descriptors: the task returned none "
                "(tell() a Fitness with descriptors[P, K])"
            )
        desc = torch.as_tensor(self.descriptors).detach().to("cpu", torch.float32)
        if desc.dim() == 1:
            desc = desc.unsqueeze(1)
        if desc.shape[0] != fitness.numel():
            raise ValueError(f"descriptors have {desc.shape[0]} rows; the population has {fitness.numel()}")
        if self.archive.numel() and self.archive.shape[1] != desc.shape[1]:
            raise ValueError(
                f"descriptors have {desc.shape[1]} columns; the archive has {self.archive.shape[1]}"
            )
        novelty = knn_novelty(desc, self.archive, self.k, population=self.population_neighbours)
        self.last_novelty = novelty
        if self.best is not None and self.best.generation == self.generation:
            genome = getattr(self.base, "genome", None)
            if callable(genome):
                self.best_chain = genome(int(torch.argmax(fitness)))
        score = novelty_score(fitness, novelty, self.mode, self.weight)
        stats = dict(self.base.tell(score) or {})
        before = self.archive.shape[0]
        if self.archive_threshold is not None:
            self._insert(desc[novelty > self.archive_threshold])
        elif self.archive_prob > 0:
            coins = nrandom.uniform(desc.shape[0], self.seed, self.generation, 0, "archive")
            self._insert(desc[coins < self.archive_prob])
        centre = desc[torch.isfinite(desc).all(1)].mean(0, keepdim=True)
        if torch.isfinite(centre).all():
            if not self.centre_descriptors.numel():
                self.centre_descriptors = torch.zeros(len(self.bases), desc.shape[1])
            self.centre_descriptors[self.active] = centre[0]
            self.centre_known[self.active] = True
            if self.add_centre:
                self._insert(centre)
        stats.update(
            {
                "novelty_mean": float(novelty.mean()),
                "novelty_max": float(novelty.max()),
                "archive_size": float(self.archive.shape[0]),
                "archive_added": float(self.archive.shape[0] - before),
                "meta_active": float(self.active),
            }
        )
        return stats

    def reevaluation_request(self) -> tuple[Any, int] | None:
        """Novelty search keeps its elite by score, not by re-evaluated reward: nothing to re-evaluate."""
        return None

    def _state(self) -> dict[str, Any]:
        return {
            "bases": [b.state_dict() for b in self.bases],
            "active": self.active,
            "archive": self.archive.clone(),
            "centre_descriptors": self.centre_descriptors.clone(),
            "centre_known": list(self.centre_known),
            "best_chain": self.best_chain,
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        if len(state["bases"]) != len(self.bases):
            raise ValueError(
                f"checkpoint has {len(state['bases'])} base strategies; this run has {len(self.bases)}"
            )
        for b, s in zip(self.bases, state["bases"], strict=True):
            b.load_state_dict(s)
        self.active = int(state["active"])
        self.archive = torch.as_tensor(state["archive"]).to(torch.float32).clone()
        self.centre_descriptors = torch.as_tensor(state["centre_descriptors"]).to(torch.float32).clone()
        self.centre_known = [bool(x) for x in state["centre_known"]]
        self.best_chain = state.get("best_chain")


# -- registered variants: config keys = base strategy keys + novelty keys -----------------------


class _NoveltyKeys(StrategyParams):
    k: int = Field(10, ge=1, description="nearest neighbours averaged for novelty")
    weight: float = Field(
        0.5, ge=0, le=1, description="NSR: weight of the reward rank (novelty gets 1 - weight)"
    )
    archive_prob: float = Field(0.02, ge=0, le=1, description="chance each member enters the archive")
    archive_threshold: float | None = Field(
        None, gt=0, description="insert members whose novelty exceeds this instead (overrides archive_prob)"
    )
    archive_size: int = Field(0, ge=0, description="keep only the newest N archive entries; 0 = unbounded")


NOVELTY_KEYS = (
    "k",
    "mode",
    "weight",
    "archive_prob",
    "archive_threshold",
    "archive_size",
    "add_centre",
    "population_neighbours",
)


class NSGAParams(GAParams, _NoveltyKeys):
    mode: Literal["ns"] = Field("ns", description="ns: novelty only")
    genome: Literal["vector", "seeds"] = Field("vector", description="GA genome: flat vector, or seed chain")
    add_centre: bool = Field(
        False, description="also archive the population's mean descriptor each generation"
    )
    population_neighbours: bool = Field(True, description="neighbours come from population + archive")


class NSRGAParams(NSGAParams):
    mode: Literal["nsr", "nsr_pareto"] = Field(  # type: ignore[assignment]
        "nsr", description="nsr: weighted ranks of reward and novelty; nsr_pareto: Pareto fronts"
    )


class NSESParams(OpenESParams, _NoveltyKeys):
    mode: Literal["ns"] = Field("ns", description="ns: novelty only")
    meta_population: int = Field(1, ge=1, le=64, description="M ES centres, chosen by novelty (Conti et al.)")
    archive_prob: float = Field(0.0, ge=0, le=1, description="chance each perturbation enters the archive")
    add_centre: bool = Field(
        True, description="archive the centre's behaviour each generation (Conti et al.)"
    )
    population_neighbours: bool = Field(
        False, description="false: novelty against the archive alone (Conti et al.); true: population too"
    )


class NSRESParams(NSESParams):
    mode: Literal["nsr", "nsr_pareto"] = Field(  # type: ignore[assignment]
        "nsr", description="nsr: weighted ranks of reward and novelty; nsr_pareto: Pareto fronts"
    )


def _split(params: StrategyParams) -> tuple[dict[str, Any], dict[str, Any]]:
    values = params.model_dump()
    novelty = {key: values.pop(key) for key in NOVELTY_KEYS}
    return novelty, values


class NoveltyGA(Novelty):
    """NS-GA (Such et al. 2017): a GA (vector or seed-chain genomes) selecting on novelty."""

    name = "ns_ga"
    Params: type[StrategyParams] = NSGAParams

    @classmethod
    def from_params(cls, params: NSGAParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> NoveltyGA:
        """Build the GA for ``phenotype`` and wrap it."""
        novelty, base_kw = _split(params)
        genome = base_kw.pop("genome")
        on_nan = base_kw["on_nan"]
        if genome == "seeds":
            if base_kw.pop("crossover_prob"):
                raise ConfigError(
                    "strategy.crossover_prob > 0 with genome = 'seeds'; allowed: 0 (chains cannot cross)"
                )
            base: Strategy = SeedGA.from_params(
                SeedGA.Params(**base_kw, elite_candidates=1, reeval_streams=0),
                phenotype=phenotype,
                seed=seed,
                **kw,
            )
        else:
            base = GA.from_params(GAParams(**base_kw), phenotype=phenotype, seed=seed, **kw)
        return cls(base, seed=seed, on_nan=on_nan, **novelty)


class NoveltyRewardGA(NoveltyGA):
    """NSR-GA: a GA selecting on a mix (or Pareto ranking) of reward and novelty."""

    name = "nsr_ga"
    Params = NSRGAParams


class NoveltyES(Novelty):
    """NS-ES (Conti et al. 2018): OpenAI-ES following the novelty gradient, M centres chosen by novelty."""

    name = "ns_es"
    Params: type[StrategyParams] = NSESParams

    @classmethod
    def from_params(cls, params: NSESParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> NoveltyES:
        """Build ``meta_population`` OpenES centres (independent seeds and initialisations) and wrap them."""
        novelty, base_kw = _split(params)
        count = base_kw.pop("meta_population")
        es_params = OpenESParams(**base_kw)
        bases = [
            OpenES.from_params(es_params, phenotype=phenotype, seed=_member_seed(seed, m), **kw)
            for m in range(count)
        ]
        return cls(bases, seed=seed, on_nan=base_kw["on_nan"], **novelty)


class NoveltyRewardES(NoveltyES):
    """NSR-ES: OpenAI-ES following a mix (or Pareto ranking) of reward and novelty."""

    name = "nsr_es"
    Params = NSRESParams


def _member_seed(seed: int, m: int) -> int:
    """Seed of centre m of a meta-population; centre 0 uses the run seed itself."""
    return int(seed) if m == 0 else nrandom.derive_key(seed, 0, m, "meta-population") & 0x7FFFFFFF
