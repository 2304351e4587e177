import math

import pytest
import torch
from torch import nn

from neuroevo.core.errors import ConfigError
from neuroevo.nn import (
    ACTIVATIONS,
    ModuleAdapter,
    PopulationMLP,
    get_activation,
    get_initializer,
    register_activation,
)

REQUIRED = [
    "identity",
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
    "silu",
    "swish",
    "mish",
    "softplus",
    "softsign",
    "sin",
    "cos",
    "gauss",
    "abs",
    "square",
    "cube",
    "step",
    "hard_tanh",
    "relu2",
    "snake",
    "inv",
    "log",
    "exp",
    "clamped",
]


def test_registry_has_required_activations_with_formulas():
    assert len(ACTIVATIONS.names()) >= 24
    x = torch.linspace(-3, 3, 61)
    for name in REQUIRED:
        fn = get_activation(name)
        assert fn.__doc__ and "f(x)" in fn.__doc__, name
        y = fn(x)
        assert y.shape == x.shape and torch.isfinite(y).all(), name


def test_activation_values():
    x = torch.tensor([-2.0, 0.0, 0.5, 2.0])
    assert torch.allclose(get_activation("relu2")(x), torch.tensor([0.0, 0.0, 0.25, 4.0]))
    assert torch.allclose(get_activation("snake")(x), x + torch.sin(x) ** 2)
    assert torch.allclose(get_activation("gauss")(x), torch.exp(-(x**2)))
    assert torch.equal(get_activation("step")(x), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.allclose(get_activation("clamped")(x), torch.tensor([-1.0, 0.0, 0.5, 1.0]))


def test_user_activation_registers_and_is_usable_per_neuron():
    register_activation("test_triple", lambda t: 3 * t, overwrite=True)
    mlp = PopulationMLP([2, 3, 1], activation=[["test_triple", "relu", "tanh"]])
    assert mlp.activations[0] == ["test_triple", "relu", "tanh"]
    with pytest.raises(ConfigError, match="unknown activation 'nope'"):
        PopulationMLP([2, 3, 1], activation="nope")


def test_initialisers():
    g = torch.Generator().manual_seed(0)
    w = get_initializer("xavier_uniform")(200, 300, g)
    bound = math.sqrt(6 / 500)
    assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
    w = get_initializer("kaiming_normal")(400, 400, g)
    assert abs(w.std().item() - math.sqrt(2 / 400)) < 0.005
    w = get_initializer("orthogonal")(64, 32, g)
    assert torch.allclose(w.T @ w, torch.eye(32), atol=1e-5)
    w = get_initializer({"name": "uniform", "a": 2.0, "b": 3.0})(10, 10, g)
    assert w.min() >= 2.0 and w.max() <= 3.0
    assert torch.count_nonzero(get_initializer("zeros")(3, 3, g)) == 0
    assert abs(get_initializer("normal", std=0.1)(300, 300, g).std().item() - 0.1) < 0.005
    assert abs(get_initializer("lecun_normal")(400, 400, g).std().item() - 0.05) < 0.005
    with pytest.raises(ConfigError, match="has no parameter 'std'"):
        get_initializer("xavier_uniform", std=1.0)


def _reference(mlp: PopulationMLP, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Member by member, neuron by neuron: the slow definition the batched forward must match."""
    outs = []
    for p in range(params.shape[0]):
        h = x[p] if x.dim() == 3 else x
        for (w, b), act in zip(mlp.layer_views(params[p]), mlp.activations, strict=True):
            z = h @ w[0] + (b[0] if b is not None else 0)
            names = [act] * z.shape[-1] if isinstance(act, str) else act
            h = torch.stack([get_activation(n)(z[:, j]) for j, n in enumerate(names)], dim=-1)
        outs.append(h)
    return torch.stack(outs)


@pytest.mark.parametrize("bias", [True, False])
def test_population_forward_matches_member_loop(bias):
    mlp = PopulationMLP(
        [3, 5, 4, 2],
        activation=[["relu", "tanh", "sin", "gauss", "relu2"], "snake"],
        output_activation=["identity", "sigmoid"],
        bias=bias,
    )
    g = torch.Generator().manual_seed(1)
    params = torch.stack([mlp.init_params(g) for _ in range(6)]) + 0.1 * torch.randn(
        6, mlp.num_params, generator=g
    )
    shared = torch.randn(7, 3, generator=g)
    per_member = torch.randn(6, 7, 3, generator=g)
    for x in (shared, per_member):
        out = mlp(params, x)
        assert out.shape == (6, 7, 2)
        assert torch.allclose(out, _reference(mlp, params, x), atol=1e-6)
    again = mlp(params, shared)  # reused scratch buffers must not corrupt earlier results
    assert torch.equal(again, mlp(params, shared))


def test_layer_views_are_views_and_flatten_inverts():
    mlp = PopulationMLP([4, 3, 2])
    params = torch.randn(5, mlp.num_params)
    views = mlp.layer_views(params)
    views[0][0][2, 1, 2] = 42.0
    assert 42.0 in params[2]
    assert views[1][0].data_ptr() >= params.data_ptr()
    assert torch.equal(mlp.flatten([w for w, _ in views], [b for _, b in views]), params)
    assert mlp.num_params == 4 * 3 + 3 + 3 * 2 + 2


def test_to_module_equals_member():
    mlp = PopulationMLP([3, 4, 2], activation=[["tanh", "relu", "sin", "tanh"]], output_activation="sigmoid")
    params = torch.randn(3, mlp.num_params)
    x = torch.randn(8, 3)
    module = mlp.to_module(params[1])
    assert isinstance(module, nn.Sequential)
    assert torch.allclose(module(x), mlp(params, x)[1], atol=1e-6)
    assert torch.allclose(mlp(params[1], x), mlp(params, x)[1], atol=1e-6)
    rebuilt = PopulationMLP.from_spec(mlp.spec())
    assert torch.equal(rebuilt(params, x), mlp(params, x))


def test_bad_per_neuron_list_length():
    with pytest.raises(ConfigError, match="exactly 3 names"):
        PopulationMLP([2, 3, 1], activation=[["tanh", "relu"]])


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)
        self.norm = nn.LayerNorm(2 * 6)
        self.head = nn.Linear(12, 3)

    def forward(self, x):
        h = self.conv(x.unsqueeze(-2)).flatten(-2)
        return self.head(torch.tanh(self.norm(h)))


def test_module_adapter_matches_each_member_and_exports():
    torch.manual_seed(0)
    net = _ConvNet()
    adapter = ModuleAdapter(net)
    assert adapter.num_params == sum(p.numel() for p in net.parameters())
    g = torch.Generator().manual_seed(3)
    params = torch.stack([adapter.init_params(g) for _ in range(4)])
    assert not torch.equal(params[0], params[1])
    x = torch.randn(5, 8)
    out = adapter(params, x)
    assert out.shape == (4, 5, 3)
    for i in range(4):
        member = adapter.to_module(params[i])
        assert torch.allclose(member(x), out[i], atol=1e-6)
        assert torch.equal(adapter.flat_params(member), params[i])
    xs = torch.randn(4, 5, 8)
    per = adapter(params, xs)
    assert torch.allclose(per[2], adapter.to_module(params[2])(xs[2]), atol=1e-6)
    state = adapter.state_dict(params[3])
    assert set(state) == set(net.state_dict())
