"""TOML run configs, validated by pydantic, with one-line errors.

Layout::

    [run]       name, seed, generations, target_fitness, time_budget_s, checkpoint_every, ...
    [task]      name = "<task>" + that task's keys          (neuroevo list -> tasks)
    [network]   type = "mlp" | "vector" | ... + its keys     (default type: mlp)
    [strategy]  name = "<strategy>" + that strategy's keys  (neuroevo list -> strategies)

Any unknown key, wrong type or unknown name raises ``ConfigError`` with one line naming
the key, the value and what is allowed. ``resolve`` returns the config with every default
written out; that is what a run stores as its ``config.toml``.
"""

from __future__ import annotations

import re
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from neuroevo.core import memory
from neuroevo.core.contracts import CAPABILITY_WORDS, POPULATION_KIND_WORDS, Capability, PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.core.registry import Registry
from neuroevo.nn import NETWORKS
from neuroevo.strategies import STRATEGIES
from neuroevo.tasks import TASKS


class RunParams(BaseModel):
    """The ``[run]`` table. Types are strict: ``"100"`` is not a number and ``"yes"`` not a boolean."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field("run", description="default output folder: runs/<name>")
    seed: int = Field(0, ge=0, description="every random draw derives from it")
    generations: int | None = Field(100, ge=1, description="stop after this many generations")
    target_fitness: float | None = Field(
        None, allow_inf_nan=False, description="stop once the best fitness reaches it"
    )
    time_budget_s: float | None = Field(None, gt=0, description="stop after this many seconds")
    checkpoint_every: int = Field(10, ge=1, description="generations between checkpoints")
    keep_checkpoints: int = Field(3, ge=1, description="checkpoints kept on disk (the newest)")
    validate_every: int = Field(
        1, ge=1, description="generations between validations of the best (a new best is always validated)"
    )
    device: str = Field("cpu", description="cpu | cuda | cuda:N")
    threads: int = Field(0, ge=0, description="torch CPU threads; 0 = torch's default")
    keep_freed_memory: bool = Field(
        True, description="keep freed tensor memory in the process (glibc malloc; fewer page faults)"
    )
    progress: bool = Field(True, description="show a progress bar")
    tensorboard: bool = Field(
        False,
        description="also write metrics as TensorBoard scalars to RUN/tensorboard (neuroevo[tensorboard])",
    )
    executor: Literal["local", "ray"] = Field(
        "local", description="where members are evaluated: local (this process) or ray (shards on Ray actors)"
    )
    ray_address: str = Field(
        "auto",
        description="executor = 'ray': auto (this machine's cluster or RAY_ADDRESS), a head's host:port, "
        "or local (a private Ray started by the run)",
    )
    workers: int = Field(2, ge=1, description="executor = 'ray': Ray actors, 1 CPU each")
    max_memory_gb: float = Field(
        2.0,
        gt=0,
        allow_inf_nan=False,
        description="local executor: evaluate the population in chunks that each fit this much memory "
        "(bit-identical to one batched pass)",
    )
    gpus_per_worker: float = Field(0.0, ge=0, description="executor = 'ray': GPUs requested per actor")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?", value):
            raise ValueError("unknown device; allowed: cpu, cuda, cuda:N")
        return value


class _Sections(BaseModel):
    model_config = ConfigDict(extra="forbid")

    run: RunParams = Field(default_factory=RunParams)
    task: dict[str, Any]
    network: dict[str, Any] = Field(default_factory=lambda: {"type": "mlp"})
    strategy: dict[str, Any]


@dataclass
class Config:
    """A validated config: run parameters and, per section, its registered name and params model."""

    run: RunParams
    task_name: str
    task: BaseModel
    network_type: str
    network: BaseModel
    strategy_name: str
    strategy: BaseModel

    def to_dict(self) -> dict[str, Any]:
        """Every key with its value, defaults included (None values left out: TOML has no null)."""
        return _drop_none(
            {
                "run": self.run.model_dump(),
                "task": {"name": self.task_name, **self.task.model_dump()},
                "network": {"type": self.network_type, **self.network.model_dump()},
                "strategy": {"name": self.strategy_name, **self.strategy.model_dump()},
            }
        )

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())


def _drop_none(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _drop_none(v) for k, v in tree.items() if v is not None}
    if isinstance(tree, list):
        return [_drop_none(v) for v in tree]
    return tree


_TYPE_WORDS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _error_line(section: str, exc: ValidationError, model: type[BaseModel] | None) -> str:
    """One line for the most telling error of ``exc``: key, value, what is allowed."""
    errors = exc.errors()
    chosen = next((e for e in errors if e["type"] == "value_error"), errors[0])
    loc = [
        str(p)
        for p in chosen["loc"]
        if isinstance(p, int) or (str(p).isidentifier() and str(p).lower() not in _TYPE_WORDS)
    ]
    key = ".".join([section, *loc]) if section else ".".join(loc)
    kind = chosen["type"]
    if kind == "extra_forbidden":
        allowed = ""
        owner = _model_at(model, loc[:-1])
        if owner is not None:
            allowed = "; allowed keys: " + ", ".join(owner.model_fields)
        return f"{key} = {chosen['input']!r}: unknown key{allowed}"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = chosen["msg"].removeprefix("Value error, ")
    return f"{key} = {chosen['input']!r}: {message}"


def _model_at(model: type[BaseModel] | None, path: list[str]) -> type[BaseModel] | None:
    """The nested pydantic model that owns the key at ``path`` (None if it is not a model)."""
    for part in path:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return model


def _validate(model: type[BaseModel], data: dict[str, Any], section: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_error_line(section, exc, model)) from None


def _pick(registry: Registry, section: str, key: str, data: dict[str, Any], default: str | None = None):
    value = data.pop(key, default)
    if value is None:
        raise ConfigError(f"{section}.{key}: required key is missing; allowed: {', '.join(registry.names())}")
    if not isinstance(value, str) or value not in registry:
        raise ConfigError(
            f"{section}.{key} = {value!r}: unknown {registry.kind}; allowed: {', '.join(registry.names())}"
        )
    return registry.canonical(value), registry.get(value)


def validate_config(data: dict[str, Any]) -> Config:
    """Check a config dict section by section, then every pairing; raises a one-line ConfigError."""
    sections = _validate(_Sections, data, "")
    task_data, net_data, strat_data = dict(sections.task), dict(sections.network), dict(sections.strategy)
    task_name, task_cls = _pick(TASKS, "task", "name", task_data)
    net_type, net_entry = _pick(NETWORKS, "network", "type", net_data, "mlp")
    strat_name, strat_cls = _pick(STRATEGIES, "strategy", "name", strat_data)
    config = Config(
        run=sections.run,
        task_name=task_name,
        task=_validate(task_cls.Params, task_data, "task"),
        network_type=net_type,
        network=_validate(net_entry.Params, net_data, "network"),
        strategy_name=strat_name,
        strategy=_validate(strat_cls.Params, strat_data, "strategy"),
    )
    check_pairing(config)
    return config


#: population kinds the Ray executor can split into shards (PBT's members live in their task; the
#: sequential task, ``PBTSequential``, is Python only and trains its members on Ray actors)
SHARDABLE_KINDS = frozenset({PopulationKind.FLAT, PopulationKind.LOWRANK, PopulationKind.NEAT})


def check_pairing(config: Config) -> None:
    """Refuse a strategy, network and task that cannot work together, naming both sides and the partners.

    The capabilities are declared (``neuroevo.core.contracts``): the strategy's population kind
    must be one the network type runs, the task must provide what the strategy and the network
    need. Nothing is built for this check.
    """
    strat_cls = STRATEGIES.get(config.strategy_name)
    kind, strategy_needs = strat_cls.contract(config.strategy)
    entry = NETWORKS.get(config.network_type)
    task_cls = TASKS.get(config.task_name)
    strategy = f"strategy {config.strategy_name!r}"
    if config.run.executor == "ray" and kind not in SHARDABLE_KINDS:
        raise ConfigError(
            f"run.executor = 'ray': {strategy} trains its members in one process (its task holds the "
            "stacked models); allowed: executor = 'local' (PBTSequential, from Python, trains on Ray)"
        )
    if kind not in entry.runs:
        allowed = [name for name, e in NETWORKS.items() if kind in e.runs]
        raise ConfigError(
            f"network.type = {config.network_type!r}: {strategy} needs {POPULATION_KIND_WORDS[kind]}; "
            f"allowed: {', '.join(allowed)}"
        )
    for owner, needs in ((strategy, strategy_needs), (f"network.type {config.network_type!r}", entry.needs)):
        missing = sorted(set(needs) - set(task_cls.provides))
        if missing:
            allowed = [name for name, cls in TASKS.items() if set(needs) <= set(cls.provides)]
            raise ConfigError(
                f"task.name = {config.task_name!r}: {owner} needs "
                f"{' and '.join(CAPABILITY_WORDS[Capability(m)] for m in missing)}, which this task does not "
                f"provide; allowed: {', '.join(allowed) or 'none registered'}"
            )


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; one-line ConfigErrors for a missing file, a folder, binary or bad TOML."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; allowed: a TOML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        return tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path}: not a text file (not UTF-8); allowed: a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Patch ``{"run": {"seed": 3}}``-style values (``None`` means not given) into ``data``."""
    for section, values in (overrides or {}).items():
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"{section} = {data[section]!r}: must be a table")
        data[section].update({k: v for k, v in values.items() if v is not None})
    return data


#: keys whose value may name a ``.py`` file (``"file.py:attr"``); relative files are found next to the config
FILE_KEYS = (("task", "function"), ("network", "module"))


def resolve_files(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Make a relative ``"file.py:attr"`` in ``FILE_KEYS`` absolute, against the config's ``folder``.

    A file that is not there is looked up from the working directory, as before; the run's
    ``config.toml`` then holds the absolute path, so a resume works from anywhere.
    """
    for section, key in FILE_KEYS:
        value = data.get(section, {}).get(key) if isinstance(data.get(section), dict) else None
        if not isinstance(value, str) or ":" not in value:
            continue
        file, _, attr = value.rpartition(":")
        if file.endswith(".py") and not Path(file).is_absolute():
            candidate = folder / file if (folder / file).is_file() else Path(file)
            if candidate.is_file():
                data[section][key] = f"{candidate.resolve()}:{attr}"
    return data


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read and validate a TOML file; ``overrides`` are ``{"run": {"seed": 3}}``-style patches."""
    data = resolve_files(read_toml(path), Path(path).resolve().parent)
    return validate_config(apply_overrides(data, overrides))


#: the keys a resume may change: when and how to stop, checkpointing, and where and how it runs.
#: Every other key shapes the search itself; changing it would make the continuation a different
#: run than its checkpoints, so a resume refuses it.
RESUMABLE_KEYS = (
    "run.generations",
    "run.target_fitness",
    "run.time_budget_s",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.validate_every",
    "run.device",
    "run.threads",
    "run.keep_freed_memory",
    "run.progress",
    "run.tensorboard",
    "run.max_memory_gb",
    "run.executor",
    "run.ray_address",
    "run.workers",
    "run.gpus_per_worker",
)


def resume_changes(reference: Config, edited: Config) -> list[tuple[str, Any, Any]]:
    """Keys whose value differs between the run's own config and an edited one: (key, old, new)."""
    old, new = _flatten(reference.to_dict()), _flatten(edited.to_dict())
    return [(key, old.get(key), new.get(key)) for key in sorted({*old, *new}) if old.get(key) != new.get(key)]


def check_resume(reference: Config, edited: Config) -> None:
    """Refuse an edited config whose changes a resume cannot honour (one line; nothing is written)."""
    for key, old, new in resume_changes(reference, edited):
        if key not in RESUMABLE_KEYS:
            raise ConfigError(
                f"{key} changed from {old!r} to {new!r} in config.toml; a resume may change only "
                f"{', '.join(RESUMABLE_KEYS)} (restore it, or start a new run)"
            )


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and prefix == "":
            out.update(_flatten(value, f"{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def capability_tables() -> str:
    """The capability tables of ``docs/design.md`` (Markdown), from the registries' declarations.

    A test checks that the docs hold exactly this text, so the tables cannot drift.
    """
    nets = NETWORKS.items()
    tasks = TASKS.items()
    lines = [
        "| strategy | hands out | needs from the task | network types | tasks |",
        "|---|---|---|---|---|",
    ]
    for name, cls in STRATEGIES.items():
        kind, needs = cls.contract(cls.Params.model_construct())
        runs = [n for n, e in nets if kind in e.runs]
        fits = [
            t
            for t, c in tasks
            if set(needs) <= set(c.provides) and any(e.needs <= c.provides for _, e in nets if kind in e.runs)
        ]
        wants = ", ".join(sorted(needs)) or "-"
        lines.append(f"| `{name}` | {kind} | {wants} | {', '.join(runs)} | {', '.join(fits)} |")
    lines += ["", "| network type | runs | needs from the task |", "|---|---|---|"]
    for name, entry in nets:
        lines.append(
            f"| `{name}` | {', '.join(sorted(entry.runs))} | {', '.join(sorted(entry.needs)) or '-'} |"
        )
    lines += ["", "| task | provides |", "|---|---|"]
    for name, cls in tasks:
        lines.append(f"| `{name}` | {', '.join(sorted(cls.provides)) or '-'} |")
    return "\n".join(lines) + "\n"


@dataclass
class KeyDoc:
    """One config key as ``neuroevo list NAME`` and the docs show it."""

    key: str
    type: str
    default: str
    bounds: str
    description: str


_BOUND_WORDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("min_length", "len >="))


def describe_params(model: type[BaseModel]) -> list[KeyDoc]:
    """Every key of a ``Params`` model with its type, default, bounds and description (from the model)."""
    rows = []
    for key, info in model.model_fields.items():
        bounds = [
            f"{word} {getattr(meta, attr)}"
            for meta in info.metadata
            for attr, word in _BOUND_WORDS
            if getattr(meta, attr, None) is not None
        ]
        if info.is_required():
            default = "(required)"
        elif info.default_factory is not None:
            default = repr(info.default_factory())
        else:
            default = repr(info.default)
        rows.append(
            KeyDoc(key, _type_name(info.annotation), default, ", ".join(bounds), info.description or "")
        )
    return rows


def _type_name(annotation: Any) -> str:
    """``float``, ``'adam' | 'sgd'`` for a Literal, ``int | None`` for a union."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(v) for v in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if get_origin(annotation) is not None:
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", str(annotation))


def registered_entry(name: str) -> tuple[str, str, Any, type[BaseModel] | None]:
    """(kind, canonical name, object, Params model) of ``name`` in any registry (``neuroevo list NAME``)."""
    from neuroevo.nn import ACTIVATIONS, INITIALIZERS

    for kind, registry, has_keys in (
        ("strategy", STRATEGIES, True),
        ("task", TASKS, True),
        ("network type", NETWORKS, True),
        ("activation", ACTIVATIONS, False),
        ("initialiser", INITIALIZERS, False),
    ):
        if name in registry:
            item = registry.get(name)
            return kind, registry.canonical(name), item, item.Params if has_keys else None
    everything = sorted({*STRATEGIES, *TASKS, *NETWORKS, *ACTIVATIONS, *INITIALIZERS})
    raise ConfigError(f"neuroevo list {name!r}: not a registered name; allowed: {', '.join(everything)}")


@contextmanager
def _section(name: str):
    """Turn a constructor's cross-field ValueError into a one-line ConfigError naming the section."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@dataclass
class Built:
    """The objects a config describes, ready for ``evolve``."""

    task: Any
    phenotype: Any
    strategy: Any


def build(config: Config) -> Built:
    """Instantiate task, phenotype and strategy (in that order: the task sizes the network)."""
    import torch

    run = config.run
    if run.tensorboard:
        from neuroevo.runtime.logging import require_tensorboard

        require_tensorboard()
    if run.threads:
        torch.set_num_threads(run.threads)
    memory.configure(run.keep_freed_memory)
    memory.keep_freed_memory()
    device = run.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"run.device = {device!r}: CUDA is not available here; allowed: cpu")
    with _section("task"):
        task = TASKS.get(config.task_name)(**config.task.model_dump(), seed=run.seed, device=device)
    with _section("network"):
        phenotype = NETWORKS.get(config.network_type).build(
            config.network,
            task.in_features,
            task.out_features,
            task.default_output_activation,
            dimension=getattr(task, "dimension", 0),
            device=device,
        )
    with _section("strategy"):
        strategy = STRATEGIES.get(config.strategy_name).from_params(
            config.strategy, phenotype=phenotype, seed=run.seed, device=device
        )
    return Built(task=task, phenotype=phenotype, strategy=strategy)
