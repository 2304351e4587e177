"""Network types for configs: ``[network] type = "mlp" | "vector" | ...``.

Each type is one registry entry (``NetworkEntry``) holding everything about it: its
pydantic ``Params`` model (its config keys), ``build`` (sizes the phenotype from the task:
``build(params, in_features, out_features, default_output_activation, *, dimension,
device) -> Phenotype``), ``from_spec`` (rebuilds the phenotype from ``phenotype.spec()``,
as stored in ``best/network.json``) and ``runs``, the population kinds it can run
(``neuroevo.core.contracts.PopulationKind``). Register more with ``register_network``;
a phenotype's ``spec()["type"]`` names the entry that rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Annotated, Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.core.registry import Registry
from neuroevo.nn.activations import ACTIVATIONS
from neuroevo.nn.init import INITIALIZERS, get_initializer
from neuroevo.nn.mlp import PopulationMLP

#: hidden layer widths: at least one layer, every width >= 1 (shared by every MLP network type)
HiddenWidths = Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1)]


class NetworkParams(BaseModel):
    """Config keys of a network type; strict types (``"8"`` is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class NetworkEntry:
    """One network type: config keys, how to build it, how to rebuild it, what it runs."""

    name: str
    Params: type[NetworkParams]
    build: Callable[..., Any]
    from_spec: Callable[[dict[str, Any]], Any] | None = None
    runs: frozenset[PopulationKind] = frozenset({PopulationKind.FLAT})
    description: str = ""
    needs: frozenset[Capability] = frozenset({Capability.INPUTS})
    #: the config keys that rebuild a phenotype of this type (None: not this type, or not expressible);
    #: lets a run started from Python write its ``config.toml`` (``neuroevo.runtime.describe``)
    config_of: Callable[[Any], dict[str, Any] | None] | None = None


def _plugin_network(name: str, obj: object) -> NetworkEntry:
    if not isinstance(obj, NetworkEntry):
        raise TypeError(f"expected a neuroevo.nn.NetworkEntry, got {obj!r}")
    return replace(obj, name=name)


#: config name -> network entry; plugins: entry-point group ``neuroevo.networks``
NETWORKS: Registry[NetworkEntry] = Registry("network type", "neuroevo.networks", _plugin_network)


def register_network(
    name: str,
    params: type[NetworkParams],
    build: Callable[..., Any],
    *,
    from_spec: Callable[[dict[str, Any]], Any] | None = None,
    runs: Iterable[PopulationKind] = (PopulationKind.FLAT,),
    description: str = "",
    needs: Iterable[Capability] = (Capability.INPUTS,),
    config_of: Callable[[Any], dict[str, Any] | None] | None = None,
    overwrite: bool = False,
) -> NetworkEntry:
    """Make a network type available in configs as ``[network] type = name``.

    ``runs`` lists the population kinds it can run; ``needs`` what the task must provide
    (network inputs, by default); ``from_spec`` rebuilds a saved one (``None``: its members
    can be loaded as weights only); ``config_of`` gives the keys that rebuild a phenotype.
    """
    kinds = frozenset(PopulationKind(k) for k in runs)
    entry = NetworkEntry(
        name, params, build, from_spec, kinds, description, frozenset(map(Capability, needs)), config_of
    )
    return NETWORKS.register(name, entry, overwrite=overwrite)


def phenotype_from_spec(spec: dict[str, Any]) -> Any:
    """Rebuild a phenotype from ``phenotype.spec()`` (as stored in ``best/network.json``)."""
    kind = spec.get("type")
    loadable = [name for name, entry in NETWORKS.items() if entry.from_spec is not None]
    if kind not in NETWORKS or NETWORKS.get(kind).from_spec is None:
        raise ConfigError(
            f"network type {kind!r} cannot be rebuilt from its spec; allowed: {', '.join(loadable)}"
        )
    return NETWORKS.get(kind).from_spec(spec)


def _check_activation(value: Any) -> Any:
    if isinstance(value, str):
        ACTIVATIONS.canonical(value)
    elif isinstance(value, list):
        for item in value:
            _check_activation(item)
    return value


class MLPParams(NetworkParams):
    hidden: HiddenWidths = Field(
        default_factory=lambda: [32], min_length=1, description="hidden layer widths (at least one layer)"
    )
    activation: str | list[str | list[str]] = Field(
        "tanh", description="one name, one per hidden layer, or per-neuron lists"
    )
    output_activation: str | list[str] | None = Field(
        None, description="default: the task's (sigmoid for binary)"
    )
    bias: bool = True
    init: str | dict[str, Any] = "xavier_uniform"
    bias_init: str | dict[str, Any] = "zeros"

    @field_validator("activation", "output_activation")
    @classmethod
    def _known_activation(cls, value: Any) -> Any:
        return _check_activation(value)

    @field_validator("init", "bias_init")
    @classmethod
    def _known_init(cls, value: Any) -> Any:
        if isinstance(value, str):
            INITIALIZERS.canonical(value)
        else:
            get_initializer(value)
        return value


def build_mlp(
    params: MLPParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    *,
    dimension: int = 0,
    device: Any = "cpu",
) -> PopulationMLP:
    """A PopulationMLP sized [in, *hidden, out] from the task (``dimension`` is unused here)."""
    if in_features < 1 or out_features < 1:
        raise ConfigError("network.type = 'mlp' needs a task with inputs and outputs; use type = 'vector'")
    return PopulationMLP(
        [in_features, *params.hidden, out_features],
        activation=params.activation,
        output_activation=params.output_activation or default_output_activation,
        bias=params.bias,
        init=params.init,
        bias_init=params.bias_init,
        device=device,
    )


def mlp_config(net: Any) -> dict[str, Any] | None:
    """``[network]`` keys of a ``PopulationMLP`` (output activation included: it is then explicit)."""
    if type(net) is not PopulationMLP:
        return None
    hidden_acts = net.activations[:-1]
    same = all(a == hidden_acts[0] and isinstance(a, str) for a in hidden_acts)
    return {
        "hidden": list(net.layer_sizes[1:-1]),
        "activation": hidden_acts[0] if same else list(hidden_acts),
        "output_activation": net.activations[-1],
        "bias": net.bias,
        "init": net.init_spec,
        "bias_init": net.bias_init_spec,
    }


class VectorParams(NetworkParams):
    dimension: int = Field(0, ge=0, description="length of the searched vector; 0 = take it from the task")
    init_std: float = Field(1.0, ge=0, description="members start at N(0, init_std^2)")


class VectorPhenotype:
    """No network: the member IS the parameter vector (black-box optimisation of f(x))."""

    in_features = out_features = 0

    def __init__(self, dimension: int, init_std: float = 1.0):
        if dimension < 1:
            raise ConfigError(f"network.dimension = {dimension}; allowed: >= 1 (or a task that sets it)")
        self.num_params = int(dimension)
        self.init_std = init_std

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(self.num_params, generator=generator) * self.init_std

    def forward(self, population: torch.Tensor, x: torch.Tensor | None = None) -> torch.Tensor:
        return population

    __call__ = forward

    def to_module(self, params: torch.Tensor) -> torch.nn.Module:
        module = torch.nn.Module()
        module.register_buffer("params", params.detach().clone())
        return module

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"params": params.detach().contiguous()}

    def spec(self) -> dict[str, Any]:
        return {"type": "vector", "dimension": self.num_params, "init_std": self.init_std}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> VectorPhenotype:
        return cls(spec["dimension"], spec.get("init_std", 1.0))


def build_vector(
    params: VectorParams,
    in_features: int = 0,
    out_features: int = 0,
    default_output_activation: str = "identity",
    dimension: int = 0,
    **kw: Any,
) -> VectorPhenotype:
    return VectorPhenotype(params.dimension or dimension, params.init_std)


register_network(
    "mlp",
    MLPParams,
    build_mlp,
    from_spec=PopulationMLP.from_spec,
    description="fully connected layers, per-layer or per-neuron activations (PopulationMLP)",
    config_of=mlp_config,
)
register_network(
    "vector",
    VectorParams,
    build_vector,
    from_spec=VectorPhenotype.from_spec,
    description="no network: black-box optimisation of a parameter vector",
    needs=(Capability.PARAMETERS,),
    config_of=lambda net: (
        {"dimension": net.num_params, "init_std": net.init_std} if type(net) is VectorPhenotype else None
    ),
)
