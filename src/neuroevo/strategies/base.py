"""The Strategy contract (ask/tell, maximising) and what every strategy shares.

``ask()`` returns a Population; the runtime evaluates it; ``tell(fitness[P])`` updates the
search distribution. ``state_dict()``/``load_state_dict()`` hold everything needed to
continue bit-identically (tensors + JSON-able values; the runtime writes them to
safetensors + JSON). ``best`` is the best member evaluated so far.

Hyperparameters: a strategy's pydantic ``Params`` model is the one place where each key,
its default, bounds and description are written. A constructor takes the validated model
(``params=``) or keywords validated through it once (``resolve_params``); the strategy then
reads ``self.params``. A bad keyword raises a one-line ``ConfigError`` naming it.

Search state: everything a strategy changes while it runs lives in one dataclass,
``self.state``. ``state_tree``/``load_tree`` turn such a container (tensors, floats, ints,
strings, nested dicts, lists and containers) into a checkpoint tree and back, so no
strategy lists its state by hand. Fields declared ``field(init=False)`` are derived caches:
they are not written, and ``__post_init__`` (or the strategy's ``_restore``) recomputes them.

Fitness policy: a NaN or infinite fitness counts as the worst finite fitness of that
generation (``on_nan = "worst"``, the default; the count is in ``last_nan_count`` and in
metrics) or stops the run (``on_nan = "error"``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.core.errors import ConfigError, FitnessEvaluationError
from neuroevo.core.shaping import SHAPINGS
from neuroevo.core.types import Best, Fitness

OnNan = Literal["worst", "error"]
P = TypeVar("P", bound=BaseModel)


def _known_shaping(name: str) -> str:
    if name not in SHAPINGS:
        raise ValueError(f"unknown fitness shaping; allowed: {', '.join(SHAPINGS)}")
    return name


#: a fitness shaping of ``neuroevo.core.shaping`` (checked when the Params are validated)
ShapingName = Annotated[str, AfterValidator(_known_shaping)]


class StrategyParams(BaseModel):
    """Config keys every strategy accepts; each strategy extends this with its own."""

    model_config = ConfigDict(extra="forbid", strict=True)

    population_size: int = Field(256, ge=2, description="members per generation")
    on_nan: OnNan = Field("worst", description="what a NaN/inf fitness means: 'worst' or 'error'")


NoiseGenerator = Literal["auto", "mt19937", "philox"]


class NoiseParams(BaseModel):
    """The ``noise`` key of the strategies that draw Gaussian populations (``neuroevo.core.random``)."""

    noise: NoiseGenerator = Field(
        "auto",
        description="generator of the populations' normals: 'mt19937' (a CPU Mersenne-Twister per "
        "member, fastest on a CPU), 'philox' (Philox-4x32-10 drawn on the device, the same bits on CPU "
        "and CUDA) or 'auto' (philox on an accelerator, else mt19937)",
    )


# -- hyperparameters: validated once, through the Params model ---------------------------------
def resolve_params(
    model: type[P], params: BaseModel | Mapping[str, Any] | None, keys: Mapping[str, Any], owner: str = ""
) -> P:
    """``params`` (a model or a mapping) with ``keys`` on top, validated by ``model``.

    An instance of ``model`` with no keys on top is returned as it is. Anything unknown or out
    of bounds raises a one-line ``ConfigError`` naming the key, the value and what is allowed.
    """
    if isinstance(params, model) and not keys:
        return params
    if isinstance(params, BaseModel):
        values = params.model_dump(exclude_unset=True)
    else:
        values = dict(params or {})
    values.update(keys)
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(params_error_line(exc, model, owner)) from None


def params_error_line(exc: ValidationError, model: type[BaseModel], owner: str = "") -> str:
    """One line for the first error of ``exc``: ``Owner: key = value: what is allowed``."""
    error = exc.errors()[0]
    key = ".".join(str(p) for p in error["loc"]) or "params"
    prefix = f"{owner}: " if owner else ""
    if error["type"] == "extra_forbidden":
        return (
            f"{prefix}{key} = {error['input']!r}: unknown key; allowed keys: {', '.join(model.model_fields)}"
        )
    message = error["msg"].removeprefix("Value error, ")
    return f"{prefix}{key} = {error['input']!r}: {message}"


# -- search state: one dataclass, serialised generically -----------------------------------------
def state_tree(value: Any) -> Any:
    """A state container as nested dicts/lists of tensors and JSON scalars (derived fields left out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: state_tree(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, Mapping):
        return {str(k): state_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [state_tree(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(
        f"cannot checkpoint a {type(value).__name__} (state holds tensors, scalars, lists, dicts)"
    )


def load_tree(template: Any, tree: Any, hint: Any = None) -> Any:
    """``tree`` (from ``state_tree``, possibly through a checkpoint) rebuilt in the shape of ``template``.

    Tensors take the dtype and device of the template's tensor and are copied (a loaded state
    never shares a buffer that is updated in place); scalars take its type; a nested container
    whose template is None is found from the field's type hint.
    """
    cls = type(template) if dataclasses.is_dataclass(template) else _container_in(hint)
    if cls is not None and isinstance(tree, Mapping):
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name not in tree:
                raise ValueError(f"checkpoint state has no {f.name!r} for {cls.__name__}")
            sub = getattr(template, f.name, None) if template is not None else None
            values[f.name] = load_tree(sub, tree[f.name], hints.get(f.name))
        return cls(**values)
    if tree is None:
        return None
    if isinstance(template, torch.Tensor):
        return torch.as_tensor(tree).to(dtype=template.dtype, device=template.device).clone()
    if isinstance(tree, torch.Tensor):
        return tree.clone()
    if isinstance(tree, Mapping):
        sub = template if isinstance(template, Mapping) else {}
        return {k: load_tree(sub.get(k), v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        sub = template if isinstance(template, (list, tuple)) else []
        return [load_tree(sub[i] if i < len(sub) else None, v) for i, v in enumerate(tree)]
    if isinstance(template, (bool, int, float, str)) and isinstance(tree, (bool, int, float, str)):
        return type(template)(tree)
    return tree


def _container_in(hint: Any) -> type | None:
    """The dataclass named by a type hint such as ``Foo | None``, if any."""
    if hint is None:
        return None
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else (hint,)
    )
    return next((a for a in args if isinstance(a, type) and dataclasses.is_dataclass(a)), None)


class Strategy(ABC):
    """Base class: generation counter, fitness validation, NaN policy, best tracking, checkpoints.

    A concrete strategy sets ``self.params`` (its validated ``Params``, see ``resolve_params``)
    and ``self.state`` (its search-state dataclass) and writes ``_ask`` and ``_tell``; the
    generic ``_state``/``_load_state`` checkpoint ``self.state``. Wrappers that keep their
    state elsewhere (NEAT, novelty search) override those two instead.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    #: what ``ask()`` hands out; a network type must declare that it runs this kind
    population_kind: ClassVar[PopulationKind] = PopulationKind.FLAT
    #: what the task must provide (novelty search needs behaviour descriptors)
    needs: ClassVar[frozenset[Capability]] = frozenset()
    #: how this strategy keys its draws; bumped when a change would make a resumed run draw other
    #: numbers, so that a checkpoint of an older scheme is refused rather than continued differently
    noise_scheme: ClassVar[int] = 1
    #: the validated hyperparameters (an instance of ``Params``)
    params: StrategyParams
    #: the mutable search state: one dataclass, checkpointed by ``state_tree``/``load_tree``
    state: Any

    def __init__(self, num_params: int, population_size: int, *, seed: int = 0, on_nan: OnNan = "worst"):
        if on_nan not in ("worst", "error"):
            raise ValueError(f"on_nan = {on_nan!r}; allowed: worst, error")
        self.num_params = int(num_params)
        self._population_size = int(population_size)
        self._noise_generator: str | None = None  # resolved from params.noise at the first draw
        self.seed = int(seed)
        self.on_nan = on_nan
        self.generation = 0
        self.best: Best | None = None
        self.last_nan_count = 0
        self.descriptors: torch.Tensor | None = None
        self._asked: Any = None

    @classmethod
    def resolve_params(
        cls,
        params: BaseModel | Mapping[str, Any] | None,
        population_size: int | None,
        keys: Mapping[str, Any],
    ) -> Any:
        """``cls.Params`` from a model or mapping plus constructor keywords (``population_size``
        counts when given); a bad key raises a one-line ``ConfigError``."""
        if population_size is not None:
            keys = {"population_size": population_size, **keys}
        return resolve_params(cls.Params, params, keys, cls.__name__)

    @classmethod
    def from_params(cls, params: StrategyParams, *, phenotype: Any, seed: int = 0, **kw: Any) -> Strategy:
        """Build from validated config keys for ``phenotype`` (its size and initialiser).

        Strategies whose constructor needs more than ``num_params``, ``init`` and their
        ``Params`` (NEAT, EGGROLL, novelty wrappers) override this.
        """
        return cls(phenotype.num_params, init=phenotype.init_params, seed=seed, params=params, **kw)

    @property
    def population_size(self) -> int:
        """The size of the next ``ask()`` (CMA-ES changes it at each IPOP restart)."""
        return self._population_size

    @classmethod
    def contract(cls, params: StrategyParams) -> tuple[PopulationKind, frozenset[Capability]]:
        """The population kind this strategy hands out and what it needs from a task, for ``params``.

        Read by config validation before anything is built; a wrapper whose kind depends on
        its base strategy (novelty search) overrides this.
        """
        return cls.population_kind, cls.needs

    # -- the contract ---------------------------------------------------------------------
    def ask(self) -> Any:
        """The population to evaluate this generation (asking twice returns the same one)."""
        if self._asked is None:
            self._asked = self._ask()
        return self._asked

    def tell(self, fitness: torch.Tensor | list[float] | Fitness) -> dict[str, float]:
        """Update from ``fitness[P]`` (higher is better); returns strategy stats for metrics.

        A ``Fitness`` object may be passed instead; its behaviour descriptors are then
        available to ``_tell`` as ``self.descriptors`` (novelty search).
        """
        if self._asked is None:
            raise RuntimeError("tell() before ask(): ask for a population, evaluate it, then tell")
        self.descriptors = None
        if isinstance(fitness, Fitness):
            self.descriptors = fitness.descriptors
            fitness = fitness.values
        fitness = self.check_fitness(fitness)
        value, index = torch.max(fitness, 0)  # the first maximum, as argmax
        best_idx, best_value = int(index), float(value)
        if self.best is None or best_value > self.best.fitness:
            self.best = Best(self.member(self._asked, best_idx), best_value, self.generation)
        stats = self._tell(self._asked, fitness) or {}
        self._asked = None
        self.generation += 1
        return stats

    def check_fitness(self, fitness: torch.Tensor | list[float]) -> torch.Tensor:
        """Validate shape and apply the NaN policy; returns a float64 tensor on the CPU."""
        fitness = torch.as_tensor(fitness).detach().to("cpu", torch.float64)
        if fitness.dim() != 1:
            fitness = fitness.reshape(-1)
        expected = self.expected_population_size()
        if fitness.numel() != expected:
            raise ValueError(f"tell() got {fitness.numel()} fitness values; the population has {expected}")
        self.last_nan_count = 0
        if not math.isfinite(float(fitness.sum())):  # a finite sum: every value is finite
            bad = ~torch.isfinite(fitness)
            self.last_nan_count = int(bad.sum())
        if self.last_nan_count:
            if self.on_nan == "error":
                raise FitnessEvaluationError(
                    f"generation {self.generation}: {self.last_nan_count} NaN/inf fitness values "
                    f"(on_nan = 'error'; allowed policies: worst, error)",
                    generation=self.generation,
                )
            finite = fitness[~bad]
            worst = float(finite.min()) if finite.numel() else 0.0
            fitness = torch.where(bad, torch.full_like(fitness, worst), fitness)
        return fitness

    def expected_population_size(self) -> int:
        return self.population_size

    def member(self, population: Any, index: int) -> Any:
        """A standalone copy of one member of ``population`` (a row for tensor populations)."""
        return population[index].detach().clone()

    @property
    def noise_generator(self) -> str:
        """What this strategy draws its populations with: its ``noise`` key resolved for its device
        ("mt19937" for strategies without the key), or what the checkpoint it continues used."""
        if self._noise_generator is None:
            choice = getattr(getattr(self, "params", None), "noise", "mt19937")
            self._noise_generator = nrandom.resolve_generator(choice, getattr(self, "device", "cpu"))
        return self._noise_generator

    def population_noise(
        self,
        members: int | range | list[int],
        length: int,
        purpose: str = "noise",
        *,
        generation: int | None = None,
        out: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[members, length]`` standard normals of this generation (or ``generation``), one keyed row per
        member, drawn by ``noise_generator`` in the strategy's dtype and on its device."""
        return nrandom.population_normal(
            members,
            length,
            self.seed,
            self.generation if generation is None else generation,
            purpose,
            dtype=getattr(self, "dtype", torch.float32),
            device=getattr(self, "device", "cpu"),
            out=out,
            generator=self.noise_generator,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: nested dicts of tensors and JSON-able values."""
        best = None
        if self.best is not None:
            best = {
                "params": self.best.params,
                "fitness": self.best.fitness,
                "generation": self.best.generation,
            }
        return {
            "name": self.name,
            "noise_scheme": self.noise_scheme,
            "noise": self.noise_generator,
            "generation": self.generation,
            "best": best,
            "state": self._state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``; a checkpoint whose draws were keyed by another
        ``noise_scheme`` (none recorded: scheme 1) raises ``ConfigError``."""
        if state.get("name", self.name) != self.name:
            raise ValueError(f"checkpoint is for strategy {state.get('name')!r}, not {self.name!r}")
        found = int(state.get("noise_scheme", 1))
        if found != self.noise_scheme:
            raise ConfigError(
                f"checkpoint noise_scheme = {found}: strategy {self.name!r} drew that run's noise another "
                f"way; this neuroevo's {self.name!r} draws by scheme {self.noise_scheme} (use the "
                f"neuroevo version that wrote it, or start a new run)"
            )
        drawn = state.get("noise", "mt19937")
        if drawn != self.noise_generator:
            if getattr(getattr(self, "params", None), "noise", "mt19937") != "auto":
                raise ConfigError(
                    f"checkpoint noise = {drawn!r}: that run drew with another generator; this {self.name!r} "
                    f"draws with noise = {self.noise_generator!r} (allowed: {drawn!r} or 'auto')"
                )
            self._noise_generator = drawn  # 'auto' continues with what the run started with
        self.generation = int(state["generation"])
        best = state.get("best")
        self.best = (
            None if best is None else Best(best["params"], float(best["fitness"]), int(best["generation"]))
        )
        self._asked = None
        self._load_state(state["state"])

    # -- what a concrete strategy writes ------------------------------------------------------
    @abstractmethod
    def _ask(self) -> Any: ...

    @abstractmethod
    def _tell(self, population: Any, fitness: torch.Tensor) -> dict[str, float] | None: ...

    def _state(self) -> dict[str, Any]:
        """The search state as a checkpoint tree (``state_tree(self.state)``)."""
        return state_tree(self.state)

    def _load_state(self, state: dict[str, Any]) -> None:
        """Rebuild ``self.state`` from a checkpoint tree, shaped like the current one, then ``_restore``."""
        self.state = load_tree(self.state, state)
        self._restore()

    def _restore(self) -> None:  # noqa: B027 (a hook: most strategies derive nothing)
        """Recompute what is derived from ``self.state`` after a load (nothing by default)."""

    @property
    def center(self) -> torch.Tensor | None:
        """The mean of the search distribution, for strategies that have one."""
        return None
