"""PopulationMLP: P multilayer perceptrons evaluated as batched matmuls.

Parameters of one member are a flat vector laid out layer by layer as ``W_l`` (in x out,
row-major, so a layer is ``x @ W_l + b_l``) followed by ``b_l``. A population is a
``[P, D]`` tensor; ``layer_views`` gives per-layer views into it without copying.

Activations are per layer (a name) or per neuron (a list of names as long as the layer);
a mixed layer applies each distinct activation once to the neurons that use it, so the
forward pass loops over layers and activation kinds, never over members or neurons.
Intermediate buffers are allocated once per (P, B, dtype, device) and reused, and common
activations run in place: fresh allocations are what makes a naive population forward slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from neuroevo.core.errors import ConfigError
from neuroevo.nn.activations import ACTIVATIONS, INPLACE, apply_mixed, get_activation
from neuroevo.nn.init import InitSpec, get_initializer

LayerActivation = str | Sequence[str]


class MixedActivationLayer(nn.Module):
    """Per-neuron activations for an exported single network."""

    def __init__(self, names: list[str]):
        super().__init__()
        self.names = list(names)
        self.kinds = sorted(set(self.names))
        for k, kind in enumerate(self.kinds):
            idx = torch.tensor([i for i, n in enumerate(self.names) if n == kind], dtype=torch.long)
            self.register_buffer(f"idx{k}", idx, persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        groups = [(get_activation(kind), getattr(self, f"idx{k}")) for k, kind in enumerate(self.kinds)]
        return apply_mixed(z, groups)

    def extra_repr(self) -> str:
        return f"per-neuron: {self.names}"


class ActivationLayer(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return get_activation(self.name)(z)

    def extra_repr(self) -> str:
        return self.name


class PopulationMLP:
    """A population of MLPs with ``layer_sizes = [in, hidden..., out]``.

    ``activation``: one name for every hidden layer, or a list with one entry per hidden
    layer, each a name or a per-neuron list of names. ``output_activation`` likewise for
    the output layer. ``init`` names an initialiser for weights (see ``neuroevo.nn.init``),
    ``bias_init`` one for biases.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: LayerActivation | Sequence[LayerActivation] = "tanh",
        output_activation: LayerActivation = "identity",
        *,
        bias: bool = True,
        init: InitSpec = "xavier_uniform",
        bias_init: InitSpec = "zeros",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        sizes = [int(s) for s in layer_sizes]
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ConfigError(f"layer_sizes = {list(layer_sizes)}: need at least [in, out], all >= 1")
        self.layer_sizes = sizes
        self.bias = bool(bias)
        self.dtype = dtype
        self.device = torch.device(device)
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            hidden_acts: list[LayerActivation] = [activation] * n_hidden
        else:
            hidden_acts = list(activation)
            if len(hidden_acts) != n_hidden:
                raise ConfigError(
                    f"activation has {len(hidden_acts)} entries; allowed: one name, or one entry per hidden "
                    f"layer ({n_hidden})"
                )
        self.activations: list[str | list[str]] = []
        for layer, act in enumerate([*hidden_acts, output_activation]):
            width = sizes[layer + 1]
            if isinstance(act, str):
                self.activations.append(ACTIVATIONS.canonical(act))
            else:
                names = [ACTIVATIONS.canonical(a) for a in act]
                if len(names) != width:
                    raise ConfigError(
                        f"network.activation = {act!r}: layer {layer + 1} has {width} neurons but "
                        f"{len(names)} per-neuron activations; "
                        f"allowed: a name or a list of exactly {width} names"
                    )
                self.activations.append(names[0] if len(set(names)) == 1 else names)
        self.init_spec = init
        self.bias_init_spec = bias_init
        self._init = get_initializer(init)
        self._bias_init = get_initializer(bias_init)
        self._groups = [self._activation_groups(a) for a in self.activations]
        offsets = []
        offset = 0
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
            w_end = offset + fan_in * fan_out
            b_end = w_end + (fan_out if self.bias else 0)
            offsets.append((offset, w_end, b_end))
            offset = b_end
        self._offsets = offsets
        self.num_params = offset
        self.in_features = sizes[0]
        self.out_features = sizes[-1]
        self._buffers: dict[tuple, list[torch.Tensor]] = {}

    def _activation_groups(self, act: str | list[str]):
        if isinstance(act, str):
            return [(get_activation(act), None)]
        kinds = sorted(set(act))
        return [
            (
                get_activation(k),
                torch.tensor([i for i, n in enumerate(act) if n == k], dtype=torch.long, device=self.device),
            )
            for k in kinds
        ]

    # -- parameter layout -------------------------------------------------------------------
    def layer_views(self, params: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per-layer ``(W[P, in, out], b[P, out] | None)`` views into ``params[P, D]`` (no copy)."""
        if params.dim() == 1:
            params = params.unsqueeze(0)
        views = []
        for (start, w_end, b_end), fan_in, fan_out in zip(
            self._offsets, self.layer_sizes[:-1], self.layer_sizes[1:], strict=True
        ):
            w = params[:, start:w_end].view(params.shape[0], fan_in, fan_out)
            b = params[:, w_end:b_end] if self.bias else None
            views.append((w, b))
        return views

    def flatten(
        self, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Inverse of ``layer_views``: per-layer ``W[P, in, out]`` and ``b[P, out]`` to ``[P, D]``."""
        parts = []
        for i, w in enumerate(weights):
            parts.append(w.reshape(w.shape[0], -1))
            if self.bias:
                if biases is None:
                    raise ValueError("this network has biases: pass them")
                parts.append(biases[i].reshape(biases[i].shape[0], -1))
        return torch.cat(parts, dim=1)

    def init_params(self, generator: torch.Generator) -> torch.Tensor:
        """One member's flat parameters drawn from the configured initialisers."""
        parts = []
        for fan_in, fan_out in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True):
            parts.append(self._init(fan_in, fan_out, generator).reshape(-1))
            if self.bias:
                parts.append(self._bias_init(1, fan_out, generator).reshape(-1))
        return torch.cat(parts).to(dtype=self.dtype, device=self.device)

    # -- forward ------------------------------------------------------------------------------
    def _scratch(self, pop: int, batch: int, dtype: torch.dtype, device: torch.device) -> list[torch.Tensor]:
        key = (pop, batch, dtype, device)
        bufs = self._buffers.get(key)
        if bufs is None:
            if len(self._buffers) > 8:  # bound memory when shapes keep changing
                self._buffers.clear()
            bufs = [torch.empty(pop, batch, w, dtype=dtype, device=device) for w in self.layer_sizes[1:-1]]
            self._buffers[key] = bufs
        return bufs

    def forward(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[P, B, out]`` for ``params[P, D]`` and ``x[P, B, in]`` or shared ``x[B, in]``.

        A single member ``params[D]`` with ``x[B, in]`` gives ``[B, out]``.
        """
        single = params.dim() == 1
        if single:
            params = params.unsqueeze(0)
        if params.shape[-1] != self.num_params:
            raise ValueError(f"params have {params.shape[-1]} columns; this network has {self.num_params}")
        pop = params.shape[0]
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(pop, -1, -1)
        if x.shape[0] != pop or x.shape[-1] != self.in_features:
            raise ValueError(
                f"x has shape {tuple(x.shape)}; expected [{pop}, B, {self.in_features}] or [B, in]"
            )
        x = x.to(params.dtype)
        batch = x.shape[1]
        scratch = self._scratch(pop, batch, params.dtype, params.device)
        h = x
        last = len(self._offsets) - 1
        for layer, (w, b) in enumerate(self.layer_views(params)):
            out = (
                torch.empty(pop, batch, w.shape[-1], dtype=params.dtype, device=params.device)
                if layer == last
                else scratch[layer]
            )
            if b is not None:
                torch.baddbmm(b.unsqueeze(1), h, w, out=out)
            else:
                torch.bmm(h, w, out=out)
            act = self.activations[layer]
            if isinstance(act, str) and act in INPLACE:
                h = INPLACE[act](out)
            else:
                h = apply_mixed(out, self._groups[layer])
        # the last layer writes to a fresh tensor, so the result never aliases a scratch buffer
        return h[0] if single else h

    __call__ = forward

    # -- export -------------------------------------------------------------------------------
    def to_module(self, params: torch.Tensor) -> nn.Sequential:
        """One member (``params[D]``) as a plain ``nn.Sequential`` of Linear and activation layers."""
        if params.dim() != 1:
            raise ValueError("to_module takes one member's params[D]")
        layers: list[nn.Module] = []
        for (w, b), act in zip(self.layer_views(params), self.activations, strict=True):
            lin = nn.Linear(w.shape[1], w.shape[2], bias=self.bias)
            with torch.no_grad():
                lin.weight.copy_(w[0].T)
                if b is not None:
                    lin.bias.copy_(b[0])
            layers.append(lin)
            layers.append(ActivationLayer(act) if isinstance(act, str) else MixedActivationLayer(act))
        return nn.Sequential(*layers).to(self.dtype)

    def named_tensors(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """One member's weights by layer name, for safetensors export (``layers.0.weight`` = W^T)."""
        tensors = {}
        for i, (w, b) in enumerate(self.layer_views(params)):
            tensors[f"layers.{i}.weight"] = w[0].T.contiguous()
            if b is not None:
                tensors[f"layers.{i}.bias"] = b[0].contiguous()
        return tensors

    def spec(self) -> dict[str, Any]:
        return {
            "type": "mlp",
            "layer_sizes": self.layer_sizes,
            "activations": self.activations,
            "bias": self.bias,
            "init": self.init_spec,
            "bias_init": self.bias_init_spec,
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> PopulationMLP:
        acts = spec["activations"]
        return cls(
            spec["layer_sizes"],
            activation=acts[:-1],
            output_activation=acts[-1],
            bias=spec.get("bias", True),
            init=spec.get("init", "xavier_uniform"),
            bias_init=spec.get("bias_init", "zeros"),
        )

    def flops_per_sample(self) -> int:
        """Multiply-adds x 2 for one member on one input."""
        return sum(2 * i * o for i, o in zip(self.layer_sizes[:-1], self.layer_sizes[1:], strict=True))
