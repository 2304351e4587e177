"""Novelty search (Lehman & Stanley 2011) and NS-ES / NSR-ES (Conti et al. 2018) over any strategy.

``Novelty(base, ...)`` wraps any ask/tell strategy and replaces the fitness it is told by a
score computed from the behaviour descriptors ``Fitness.descriptors[P, K]`` the task returns:

- novelty of a member = mean Euclidean distance to its ``k`` nearest neighbours among the
  rest of the population and the archive (one ``torch.cdist``, no Python loop);
- ``mode = "ns"``: the score is the novelty alone (reward is ignored by the search);
- ``mode = "nsr"``: ``weight * centred_rank(reward) + (1 - weight) * centred_rank(novelty)``;
- ``mode = "nsr_pareto"``: rank by non-dominated fronts of (reward, novelty), ties inside a
  front broken by the ``nsr`` mix.

Archive: each member is inserted with probability ``archive_prob`` (keyed by seed and
generation), or, with ``archive_threshold`` set, when its novelty exceeds the threshold; the
archive keeps its newest ``archive_size`` entries (always bounded, so checkpoints stay small).
``add_centre = True`` (the NS-ES default) also inserts the behaviour of the search centre each
generation; the centre is not evaluated on its own, so its behaviour is estimated by the mean
descriptor of its perturbations. ``population_neighbours = False`` (the NS-ES default)
measures novelty against the archive alone, as Conti et al. do: perturbations are then pushed
away from where the search has been, not away from each other.

Meta-population (NS-ES): pass a list of M base strategies (e.g. M OpenES centres). Each
generation one is chosen with probability proportional to the novelty of its centre's
behaviour w.r.t. the archive (a centre never evaluated yet is chosen first), asked, and told.

``best`` tracks the true reward (not novelty). The wrapped strategy's elite re-evaluation is
not forwarded: the elite of a novelty GA is its most novel member, not its best-rewarded one.

Configs. ``[strategy] name = "novelty"`` wraps the strategy named by ``base`` (any registered
flat-vector strategy, looked up in ``neuroevo.strategies.STRATEGIES`` when the config is
validated and built; this module imports no concrete strategy)::

    [strategy]
    name = "novelty"
    base = "cmaes"        # ga, seed_ga, openes, snes, pgpe, cmaes, sep_cmaes, ...
    reward_weight = 0.5   # NSR; 0 = pure novelty (NS)
    k = 15
    sigma = 0.5           # the base strategy's own keys, validated by the base's Params

``ns_ga``, ``nsr_ga``, ``ns_es`` and ``nsr_es`` are presets (``NOVELTY_PRESETS``): a fixed base
(GA or Deep GA seed chains; OpenAI-ES with an M-centre meta-population) with the defaults of
Such et al. 2017 and Conti et al. 2018; ``novelty_preset`` turns one into a registered class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.core.registry import Registry
from neuroevo.core.shaping import centered_rank
from neuroevo.strategies.base import OnNan, Strategy, StrategyParams, resolve_params

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


class NoveltyKeys(BaseModel):
    """The novelty-search hyperparameters: the wrapper's keywords, and config keys of every variant."""

    model_config = ConfigDict(extra="forbid", strict=True)

    k: int = Field(10, ge=1, description="nearest neighbours averaged for novelty")
    mode: Mode = Field(
        "ns",
        description="ns: novelty only; nsr: weighted ranks of reward and novelty; "
        "nsr_pareto: Pareto fronts of (reward, novelty)",
    )
    weight: float = Field(
        0.5, ge=0, le=1, description="NSR: weight of the reward rank (novelty gets 1 - weight)"
    )
    archive_prob: float = Field(0.02, ge=0, le=1, description="chance each member enters the archive")
    archive_threshold: float | None = Field(
        None, gt=0, description="insert members whose novelty exceeds this instead (overrides archive_prob)"
    )
    archive_size: int = Field(
        10_000, ge=1, description="the archive keeps its newest N entries (bounded: checkpoints stay small)"
    )
    add_centre: bool = Field(
        False,
        description="also archive the population's mean descriptor (the centre's behaviour) each generation",
    )
    population_neighbours: bool = Field(
        True,
        description="true: neighbours from population + archive; false: the archive alone (Conti et al.)",
    )


def _key(name: str, **changes: Any) -> Any:
    """The ``NoveltyKeys`` field ``name`` with some attributes (default, description) changed."""
    return FieldInfo.merge_field_infos(NoveltyKeys.model_fields[name], **changes)


META_POPULATION = Field(
    1,
    ge=1,
    le=64,
    description="M base strategies (independent seeds), one asked per generation, chosen by novelty",
)


# -- config: [strategy] name = "novelty", base = "<strategy>" + the base's keys -----------------------


class NoveltyParams(StrategyParams):
    """Keys of ``name = "novelty"``; other keys belong to ``base`` (``neuroevo list <base>``)."""

    model_config = ConfigDict(extra="allow")

    population_size: int | None = Field(  # type: ignore[assignment]
        None, ge=2, description="members per generation; default: the base strategy's default"
    )
    base: str = Field("ga", description="the wrapped strategy: a registered flat-vector strategy")
    reward_weight: float = _key(
        "weight",
        default=0.0,
        description="NSR: weight of the reward rank (novelty: 1 - it); 0 = pure novelty",
    )
    pareto: bool = Field(
        False, description="rank by Pareto fronts of (reward, novelty), ties broken by the reward_weight mix"
    )
    k: int = _key("k")
    archive_prob: float = _key("archive_prob")
    archive_threshold: float | None = _key("archive_threshold")
    archive_size: int = _key("archive_size")
    add_centre: bool = _key("add_centre")
    population_neighbours: bool = _key("population_neighbours")
    meta_population: int = META_POPULATION

    @model_validator(mode="wrap")
    @classmethod
    def _base_keys(cls, data: Any, handler: Any) -> Any:
        """Validate the extra keys with the base's ``Params``; keep them, the base's defaults written out."""
        if not isinstance(data, dict):
            return handler(data)
        base = data.get("base", cls.model_fields["base"].default)
        problem = _base_problem(base, _registry())
        if problem:
            raise _value_error(cls.__name__, "base", base, problem)
        combined = _combined_params(_registry().get(base))
        try:
            full = combined.model_validate(data)
        except ValidationError as exc:
            unknown = next((e for e in exc.errors() if e["type"] == "extra_forbidden"), None)
            if unknown is None:
                raise
            allowed = "unknown key; allowed keys: " + ", ".join(combined.model_fields)
            raise _value_error(cls.__name__, unknown["loc"][-1], unknown["input"], allowed) from None
        params = handler(data)
        params.population_size, params.on_nan = full.population_size, full.on_nan
        own = cls.model_fields
        params.__pydantic_extra__ = {k: v for k, v in full.model_dump().items() if k not in own}
        return params


def _value_error(title: str, key: Any, value: Any, message: str) -> ValidationError:
    """A pydantic error at ``key`` (so the config's one-line message names the key)."""
    detail = InitErrorDetails(type="value_error", loc=(key,), input=value, ctx={"error": ValueError(message)})
    return ValidationError.from_exception_data(title, [detail])


def _registry() -> Registry[type[Strategy]]:
    from neuroevo.strategies import STRATEGIES  # lazily: the package registers the concrete strategies

    return STRATEGIES


def base_names(registry: Registry[type[Strategy]] | None = None) -> list[str]:
    """Registered strategies novelty can wrap: flat-vector ones, not novelty variants themselves."""
    registry = registry or _registry()
    return [
        name
        for name, cls in registry.items()
        if cls.population_kind == PopulationKind.FLAT and not issubclass(cls, Novelty)
    ]


def _base_problem(name: Any, registry: Registry[type[Strategy]]) -> str:
    allowed = base_names(registry)
    if isinstance(name, str) and name in registry and registry.canonical(name) in allowed:
        return ""
    return f"not a flat-vector strategy; allowed: {', '.join(allowed)}"


@cache
def _combined_params(base_cls: type[Strategy]) -> type[BaseModel]:
    """One model with every key of novelty over ``base_cls``: the base's ``Params`` + the novelty keys."""
    own = {n: f for n, f in NoveltyParams.model_fields.items() if n not in StrategyParams.model_fields}
    clash = sorted(set(own) & set(base_cls.Params.model_fields))
    if clash:
        raise ConfigError(f"strategy.base = {base_cls.name!r}: its keys {clash} clash with novelty keys")
    fields: dict[str, Any] = {n: (f.annotation, f) for n, f in own.items()}
    return create_model(
        f"Novelty{base_cls.__name__}Params",
        __base__=base_cls.Params,
        __doc__=f"Keys of novelty search over {base_cls.name}: the novelty keys and {base_cls.name}'s own.",
        **fields,
    )


def _build_bases(
    base_cls: type[Strategy], params: BaseModel, count: int, phenotype: Any, seed: int, kw: dict[str, Any]
) -> list[Strategy]:
    """``count`` base strategies (a meta-population when > 1), centre m seeded by ``_member_seed``."""
    return [
        base_cls.from_params(params, phenotype=phenotype, seed=_member_seed(seed, m), **kw)
        for m in range(count)
    ]


def _member_seed(seed: int, m: int) -> int:
    """Seed of centre m of a meta-population; centre 0 uses the run seed itself."""
    return int(seed) if m == 0 else nrandom.derive_key(seed, 0, m, "meta-population") & 0x7FFFFFFF


class Novelty(Strategy):
    """Novelty search over any base strategy (or a meta-population of them): tells it novelty scores."""

    name = "novelty"
    needs: ClassVar[frozenset[Capability]] = frozenset({Capability.DESCRIPTORS})
    #: the base's kind; every base the config accepts is flat-vector (see ``base_names``)
    population_kind: ClassVar[PopulationKind] = PopulationKind.FLAT
    Params: ClassVar[type[StrategyParams]] = NoveltyParams

    def __init__(
        self,
        base: Strategy | Sequence[Strategy],
        *,
        seed: int = 0,
        on_nan: OnNan = "worst",
        **keys: Any,
    ):
        """``keys``: the ``NoveltyKeys`` fields (k, mode, weight, archive_prob, ...), validated there."""
        bases = [base] if isinstance(base, Strategy) else list(base)
        if not bases:
            raise ValueError("Novelty needs at least one base strategy")
        if any(
            b.num_params != bases[0].num_params or b.population_size != bases[0].population_size
            for b in bases
        ):
            raise ValueError("the strategies of a meta-population must share num_params and population_size")
        super().__init__(bases[0].num_params, bases[0].population_size, seed=seed, on_nan=on_nan)
        cfg = resolve_params(NoveltyKeys, None, keys, type(self).__name__)
        self.bases = bases
        self.k, self.mode, self.weight = cfg.k, cfg.mode, cfg.weight
        self.archive_prob, self.archive_threshold = cfg.archive_prob, cfg.archive_threshold
        self.archive_size, self.add_centre = cfg.archive_size, cfg.add_centre
        self.population_neighbours = cfg.population_neighbours
        self.active = 0
        self.archive: torch.Tensor = torch.zeros(0, 0)
        self.centre_descriptors: torch.Tensor = torch.zeros(len(bases), 0)
        self.centre_known: list[bool] = [False] * len(bases)
        self.best_chain: dict[str, Any] | None = None
        self.last_novelty: torch.Tensor | None = None

    # -- config: [strategy] name = "novelty", base = "<strategy>" -----------------------------------
    @classmethod
    def base_class(cls, name: str, registry: Registry[type[Strategy]] | None = None) -> type[Strategy]:
        """The registered flat-vector strategy ``name``; a one-line ConfigError naming ``strategy.base``."""
        registry = registry or _registry()
        problem = _base_problem(name, registry)
        if problem:
            raise ConfigError(f"strategy.base = {name!r}: {problem}")
        return registry.get(name)

    @classmethod
    def contract(cls, params: StrategyParams) -> tuple[PopulationKind, frozenset[Capability]]:
        """The base's population kind, and what the base needs plus behaviour descriptors."""
        base_cls = cls.base_class(getattr(params, "base", ""))
        return base_cls.population_kind, base_cls.needs | cls.needs

    @classmethod
    def params_for(cls, base: str) -> type[BaseModel]:
        """Every key of ``name = "novelty"`` over ``base``: novelty's and the base's (``neuroevo list``)."""
        return _combined_params(cls.base_class(base))

    @classmethod
    def from_params(
        cls,
        params: StrategyParams,
        *,
        phenotype: Any,
        seed: int = 0,
        base_cls: type[Strategy] | None = None,
        **kw: Any,
    ) -> Novelty:
        """Build ``meta_population`` bases (``base_cls``, default: ``params.base``) and wrap them."""
        values = params.model_dump()
        base_name, weight = values.pop("base"), values.pop("reward_weight")
        pareto, count = values.pop("pareto"), values.pop("meta_population")
        keys = {name: values.pop(name) for name in NoveltyKeys.model_fields if name in values}
        keys["mode"] = "nsr_pareto" if pareto else ("ns" if weight == 0 else "nsr")
        keys["weight"] = weight
        base_cls = base_cls or cls.base_class(base_name)
        base_params = base_cls.Params.model_validate(values)
        bases = _build_bases(base_cls, base_params, count, phenotype, seed, kw)
        return cls(bases, seed=seed, on_nan=values["on_nan"], **keys)

    @property
    def base(self) -> Strategy:
        """The base strategy asked this generation."""
        return self.bases[self.active]

    @property
    def center(self) -> torch.Tensor | None:
        return self.base.center

    @property
    def population_size(self) -> int:
        """The base's (CMA-ES grows it at each IPOP restart)."""
        return self.base.population_size

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


# -- presets: ns_ga, nsr_ga, ns_es, nsr_es ------------------------------------------------------------


@dataclass(frozen=True)
class NoveltyPreset:
    """A registered novelty variant: a fixed base strategy with the defaults of its paper.

    Its config keys are the base's keys plus every ``NoveltyKeys`` key (``mode`` limited to
    ``modes``, defaults changed by ``defaults``), ``genome`` when ``seeds_base`` is set (a
    flat vector, or the seed chains of ``seeds_base``), and ``meta_population`` when set.
    """

    name: str
    doc: str
    base: str
    modes: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    seeds_base: str | None = None
    meta_population: bool = False


_ES_DEFAULTS = {"archive_prob": 0.0, "add_centre": True, "population_neighbours": False}

NOVELTY_PRESETS: tuple[NoveltyPreset, ...] = (
    NoveltyPreset(
        "ns_ga",
        "NS-GA (Such et al. 2017): a GA (vector or seed-chain genomes) selecting on novelty.",
        "ga",
        ("ns",),
        seeds_base="seed_ga",
    ),
    NoveltyPreset(
        "nsr_ga",
        "NSR-GA: a GA selecting on a mix (or Pareto ranking) of reward and novelty.",
        "ga",
        ("nsr", "nsr_pareto"),
        seeds_base="seed_ga",
    ),
    NoveltyPreset(
        "ns_es",
        "NS-ES (Conti et al. 2018): OpenAI-ES following the novelty gradient, M centres chosen by novelty.",
        "openes",
        ("ns",),
        _ES_DEFAULTS,
        meta_population=True,
    ),
    NoveltyPreset(
        "nsr_es",
        "NSR-ES: OpenAI-ES following a mix (or Pareto ranking) of reward and novelty.",
        "openes",
        ("nsr", "nsr_pareto"),
        _ES_DEFAULTS,
        meta_population=True,
    ),
)


class PresetNovelty(Novelty):
    """Base class of the preset variants made by ``novelty_preset``."""

    preset: ClassVar[NoveltyPreset]

    @classmethod
    def contract(cls, params: StrategyParams) -> tuple[PopulationKind, frozenset[Capability]]:
        """Flat populations of the preset's base (GA, Deep GA, OpenAI-ES); needs behaviour descriptors."""
        base_cls = cls.base_class(cls.preset.base)
        return base_cls.population_kind, base_cls.needs | cls.needs

    @classmethod
    def from_params(
        cls, params: StrategyParams, *, phenotype: Any, seed: int = 0, **kw: Any
    ) -> PresetNovelty:
        """Build the preset's base strategy (or ``meta_population`` of them) and wrap it."""
        preset = cls.preset
        values = params.model_dump()
        keys = {name: values.pop(name) for name in NoveltyKeys.model_fields}
        count = values.pop("meta_population", 1)
        base_name = preset.base
        if values.pop("genome", "vector") == "seeds":
            if values.pop("crossover_prob", 0):
                raise ConfigError(
                    "strategy.crossover_prob > 0 with genome = 'seeds'; allowed: 0 (chains cannot cross)"
                )
            if values.pop("noise", "auto") == "philox":
                raise ConfigError(
                    "strategy.noise = 'philox' with genome = 'seeds'; allowed: auto, mt19937 "
                    "(seed chains are replayed with Mersenne-Twister generators)"
                )
            base_name = preset.seeds_base or base_name
            values.update(elite_candidates=1, reeval_streams=0)  # the elite is kept by novelty score
        base_cls = cls.base_class(base_name)
        bases = _build_bases(base_cls, base_cls.Params(**values), count, phenotype, seed, kw)
        return cls(bases, seed=seed, on_nan=values["on_nan"], **keys)


def novelty_preset(preset: NoveltyPreset, registry: Registry[type[Strategy]]) -> type[Novelty]:
    """The strategy class of ``preset``, its ``Params`` built on the base's (looked up in ``registry``)."""
    base_cls = registry.get(preset.base)
    fields: dict[str, Any] = {}
    for name, info in NoveltyKeys.model_fields.items():
        changes = {"default": preset.defaults[name]} if name in preset.defaults else {}
        fields[name] = (info.annotation, _key(name, **changes))
    fields["mode"] = (Literal[preset.modes], _key("mode", default=preset.modes[0]))  # type: ignore[valid-type]
    if preset.seeds_base:
        fields["genome"] = (
            Literal["vector", "seeds"],
            Field("vector", description=f"genome: a flat vector, or a seed chain ({preset.seeds_base})"),
        )
    if preset.meta_population:
        fields["meta_population"] = (int, META_POPULATION)
    camel = re.sub(r"(?:^|_)(\w)", lambda m: m.group(1).upper(), preset.name)
    params = create_model(
        f"{camel}Params",
        __base__=base_cls.Params,
        __doc__=f"Keys of {preset.name}: {base_cls.name}'s keys and the novelty keys.",
        **fields,
    )
    attrs = {"name": preset.name, "Params": params, "preset": preset, "__doc__": preset.doc}
    return type(camel, (PresetNovelty,), {"__module__": __name__, **attrs})
