"""A network trained by gradient descent, for Population Based Training: ``[network] type = "trainable_mlp"``.

``TrainableMLP`` (and ``TrainableModule``, any ``nn.Module`` named by an import path,
``[network] type = "trainable_module"``) describes the architecture every PBT member shares.
It is a phenotype like the others for the runtime (``forward`` over flat members
``[P, D]``, ``to_module``, ``named_tensors``, ``spec``), so ``best/`` and ``neuroevo best
--export`` work unchanged, and it gives the PBT task what ``torch.func`` needs: a template
``module()`` and the map between a flat member and its named tensors. The output layer is
linear (logits); the task's loss applies softmax / sigmoid.

``module()`` is a plain ``torch.nn.Module`` whose ``forward(x, dropout_masks=None)`` multiplies
each hidden activation by ``dropout_masks[i]`` when given: per-member dropout with masks drawn
by the task from the run's keys (inverted dropout: masks hold 0 or ``1 / (1 - p)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from pydantic import Field, field_validator
from torch.func import functional_call, vmap

from neuroevo.core.contracts import Capability, PopulationKind
from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS, get_activation
from neuroevo.nn.adapter import ModuleParams
from neuroevo.nn.networks import HiddenWidths, NetworkParams, register_network


class TrainableMLPModule(torch.nn.Module):
    """Linear layers with one hidden activation; optional dropout masks per hidden layer."""

    def __init__(self, layer_sizes: list[int], activation: str = "relu"):
        super().__init__()
        self.activation_name = activation
        self.act = get_activation(activation)
        self.layers = torch.nn.ModuleList(
            torch.nn.Linear(a, b) for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor, dropout_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < last:
                x = self.act(x)
                if dropout_masks is not None:
                    x = x * dropout_masks[i]
        return x


class TrainableNetwork:
    """The shared architecture of a PBT population; members are flat vectors or stacked named tensors.

    Subclasses give ``module()`` (a fresh ``nn.Module``), ``init_params(generator)`` and ``spec()``.
    ``hidden_sizes`` lists the widths that take dropout masks (empty: no per-member dropout).
    """

    hidden_sizes: list[int] = []

    def module(self) -> torch.nn.Module:
        raise NotImplementedError

    def _setup(self) -> None:
        template = self.module()
        if any(True for _ in template.buffers()):
            raise ConfigError(
                f"{type(template).__name__} has buffers (e.g. BatchNorm statistics); allowed: modules whose "
                "state is parameters only"
            )
        self.shapes: list[tuple[str, tuple[int, ...]]] = [
            (n, tuple(p.shape)) for n, p in template.named_parameters()
        ]
        self.sizes = [math.prod(s) for _, s in self.shapes]
        self.num_params = sum(self.sizes)
        self._meta = template.to("meta")

    @property
    def base(self) -> TrainableMLPModule:
        """A weightless (meta) copy for ``torch.func.functional_call``."""
        return self._meta

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``flat[P, D]`` -> name -> ``[P, *shape]`` (views)."""
        out, start = {}, 0
        for (name, shape), size in zip(self.shapes, self.sizes, strict=True):
            out[name] = flat[:, start : start + size].reshape(flat.shape[0], *shape)
            start += size
        return out

    def flatten(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """name -> ``[P, *shape]`` -> ``[P, D]``."""
        return torch.cat([params[name].reshape(params[name].shape[0], -1) for name, _ in self.shapes], 1)

    def forward_stacked(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Every member on ``x[B, in]`` (shared) or ``x[P, B, in]``: ``[P, B, out]``, one vmapped call."""
        in_x = None if x.dim() == 2 else 0
        return vmap(lambda p, xx: functional_call(self.base, p, (xx,)), in_dims=(0, in_x))(params, x)

    def forward(self, population: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Flat members ``[P, D]`` (or one ``[D]``) on ``x``: ``[P, B, out]``."""
        if population.dim() == 1:
            population = population.unsqueeze(0)
        return self.forward_stacked(self.unflatten(population.to(x.device)), x)

    __call__ = forward

    def to_module(self, params: torch.Tensor) -> torch.nn.Module:
        module = self.module()
        named = self.unflatten(params.reshape(1, -1).to(self.device))
        module.load_state_dict({k: v[0] for k, v in named.items()})
        return module

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        named = self.unflatten(params.reshape(1, -1))
        return {k: v[0].contiguous() for k, v in named.items()}

    def spec(self) -> dict[str, Any]:
        raise NotImplementedError


class TrainableMLP(TrainableNetwork):
    """An MLP ``[in, *hidden, out]``: linear layers, one hidden activation, per-member dropout."""

    def __init__(self, layer_sizes: list[int], activation: str = "relu", device: Any = "cpu"):
        if len(layer_sizes) < 2 or any(int(s) < 1 for s in layer_sizes):
            raise ConfigError(f"layer_sizes = {layer_sizes}; allowed: at least [in, out], every size >= 1")
        self.layer_sizes = [int(s) for s in layer_sizes]
        self.activation = ACTIVATIONS.canonical(activation)
        self.device = torch.device(device)
        self.in_features, self.out_features = self.layer_sizes[0], self.layer_sizes[-1]
        self.hidden_sizes = self.layer_sizes[1:-1]
        self._setup()

    def module(self) -> TrainableMLPModule:
        return TrainableMLPModule(self.layer_sizes, self.activation).to(self.device)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """One flat member with PyTorch's default ``nn.Linear`` init, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        parts = []
        for (name, shape), size in zip(self.shapes, self.sizes, strict=True):
            fan_in = shape[1] if name.endswith("weight") else self.shapes[len(parts) - 1][1][1]
            bound = 1.0 / math.sqrt(fan_in)
            parts.append((torch.rand(size, generator=generator) * 2 - 1) * bound)
        return torch.cat(parts).to(self.device)

    def spec(self) -> dict[str, Any]:
        return {"type": "trainable_mlp", "layer_sizes": self.layer_sizes, "activation": self.activation}

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TrainableMLP:
        return cls(spec["layer_sizes"], spec.get("activation", "relu"))


class TrainableModule(TrainableNetwork):
    """Any ``nn.Module`` named by an import path (``[network] type = "trainable_module"``).

    Built like the ``module`` network type (``neuroevo.nn.adapter.build_module``: a class or
    factory, given ``in_features``/``out_features`` when its signature names them); its state
    must be parameters only. ``forward(x[B, in]) -> [B, out]``. Initial weights are the module's
    own initialisation, run under ``torch.random.fork_rng`` with the seed drawn from the
    member's key, so they are reproducible and the global RNG is left as it was. No per-member
    dropout (its ``forward`` takes no masks).
    """

    def __init__(self, module: str, in_features: int, out_features: int, device: Any = "cpu"):
        self.path = module
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.device = torch.device(device)
        self.hidden_sizes = []
        self._setup()

    def module(self) -> torch.nn.Module:
        from neuroevo.nn.adapter import build_module

        built = build_module(self.path, "network.module", self.in_features, self.out_features)
        return built.to(self.device)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        seed = int(torch.randint(2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self.module()
        return torch.cat([p.detach().reshape(-1) for p in module.parameters()])

    def spec(self) -> dict[str, Any]:
        return {
            "type": "trainable_module",
            "module": self.path,
            "in_features": self.in_features,
            "out_features": self.out_features,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> TrainableModule:
        return cls(spec["module"], spec["in_features"], spec["out_features"])


class TrainableMLPParams(NetworkParams):
    hidden: HiddenWidths = Field(default_factory=lambda: [64], description="hidden layer widths")
    activation: str = Field("relu", description="hidden activation (one name)")

    @field_validator("activation")
    @classmethod
    def _known(cls, value: str) -> str:
        ACTIVATIONS.canonical(value)
        return value


def build_trainable_mlp(
    params: TrainableMLPParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    *,
    dimension: int = 0,
    device: Any = "cpu",
) -> TrainableMLP:
    """Sized [in, *hidden, out] from the task; the output is linear (the task's loss reads logits)."""
    if in_features < 1 or out_features < 1:
        raise ConfigError("network.type = 'trainable_mlp' needs a task with inputs and outputs")
    return TrainableMLP([in_features, *params.hidden, out_features], params.activation, device=device)


register_network(
    "trainable_mlp",
    TrainableMLPParams,
    build_trainable_mlp,
    from_spec=TrainableMLP.from_spec,
    runs=(PopulationKind.HYPERPARAMS,),
    needs=(Capability.TRAINING,),
    description="an MLP trained by gradient descent, one per PBT member (stacked, torch.func)",
)


class TrainableModuleParams(ModuleParams):
    """``[network] type = "trainable_module"``: the same key as ``type = "module"``."""


def build_trainable_module(
    params: TrainableModuleParams,
    in_features: int,
    out_features: int,
    default_output_activation: str = "identity",
    *,
    dimension: int = 0,
    device: Any = "cpu",
) -> TrainableModule:
    return TrainableModule(params.module, in_features, out_features, device=device)


register_network(
    "trainable_module",
    TrainableModuleParams,
    build_trainable_module,
    from_spec=TrainableModule.from_spec,
    runs=(PopulationKind.HYPERPARAMS,),
    needs=(Capability.TRAINING,),
    description="any parameter-only nn.Module, one per PBT member (stacked, torch.func)",
)
