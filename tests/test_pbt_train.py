"""PBT's vectorised trainer: stacked members, vectorised optimisers, exploit copies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from neuroevo.core import random as nrandom
from neuroevo.nn import NETWORKS
from neuroevo.nn.stacked import copy_rows
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.strategies.pbt import PBT, HyperparamPopulation, SearchSpace
from neuroevo.tasks.pbt import PBTSupervised


def _population(space: dict, values: list[list[float]], steps: int, parents=None) -> HyperparamPopulation:
    values_t = torch.tensor(values, dtype=torch.float64)
    parents_t = torch.full((len(values),), -1) if parents is None else torch.tensor(parents)
    return HyperparamPopulation(SearchSpace(space), values_t, parents_t, steps)


def test_trainable_mlp_flat_and_module_agree():
    net = NETWORKS.get("trainable_mlp").build(NETWORKS.get("trainable_mlp").Params(hidden=[7, 5]), 4, 3)
    assert isinstance(net, TrainableMLP) and net.num_params == 4 * 7 + 7 + 7 * 5 + 5 + 5 * 3 + 3
    flat = torch.stack([net.init_params(torch.Generator().manual_seed(i)) for i in range(3)])
    x = torch.randn(6, 4)
    out = net.forward(flat, x)
    for i in range(3):
        assert torch.allclose(out[i], net.to_module(flat[i])(x), atol=1e-6)
    assert torch.equal(net.flatten(net.unflatten(flat)), flat)
    assert TrainableMLP.from_spec(net.spec()).num_params == net.num_params


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_vectorised_optimiser_matches_torch_optim_per_member(optimizer):
    """Each member, trained inside the stack with its own lr/momentum/decay/batch size, follows
    torch.optim on a lone module given the same minibatches."""
    seed, steps = 4, 25
    task = PBTSupervised(dataset="iris", optimizer=optimizer, seed=seed)
    net = TrainableMLP([4, 8, 3])
    if optimizer == "sgd":
        space = {
            "lr": {"low": 1e-3, "high": 1.0, "log": True},
            "momentum": {"low": 0.0, "high": 0.99},
            "weight_decay": {"low": 0.0, "high": 0.1},
            "batch_size": {"type": "integer", "low": 1, "high": 64},
        }
        rows = [[0.1, 0.9, 0.0, 16], [0.5, 0.0, 0.01, 5], [0.02, 0.5, 0.1, 40]]
    else:
        space = {
            "lr": {"low": 1e-4, "high": 1.0, "log": True},
            "beta1": {"low": 0.5, "high": 0.99},
            "beta2": {"low": 0.9, "high": 0.9999},
            "weight_decay": {"low": 0.0, "high": 0.5},
            "batch_size": {"type": "integer", "low": 1, "high": 64},
        }
        rows = [[0.01, 0.9, 0.999, 0.01, 16], [0.05, 0.6, 0.95, 0.3, 5], [0.002, 0.95, 0.9, 0.0, 40]]
    pop = _population(space, rows, steps)
    task.evaluate(net, pop, generation=0)
    n = task.data.x_train.shape[0]
    for i, row in enumerate(rows):
        hp = dict(zip(space, row, strict=True))
        module = net.to_module(net.init_params(nrandom.member_generator(seed, 0, i, "pbt_init_weights")))
        if optimizer == "sgd":
            opt = torch.optim.SGD(
                module.parameters(), lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"]
            )
        else:
            opt = torch.optim.AdamW(
                module.parameters(),
                lr=hp["lr"],
                betas=(hp["beta1"], hp["beta2"]),
                weight_decay=hp["weight_decay"],
            )
        b_max = max(int(r[-1]) for r in rows)
        for k in range(steps):
            idx = torch.randint(
                n, (len(rows), b_max), generator=nrandom.member_generator(seed, 0, k, "pbt_batch")
            )
            take = idx[i, : int(hp["batch_size"])]
            opt.zero_grad()
            F.cross_entropy(module(task.data.x_train[take]), task.data.y_train[take]).backward()
            opt.step()
        for name, p in module.named_parameters():
            assert torch.allclose(task.weights[name][i], p.detach(), atol=2e-6, rtol=1e-5), (i, name)
        assert int(task.step[i]) == steps
        if optimizer == "adamw":
            state = opt.state[module.layers[0].weight]
            assert torch.allclose(
                task.opt_state["exp_avg_sq"]["layers.0.weight"][i], state["exp_avg_sq"], rtol=1e-4
            )


def test_dropout_is_per_member():
    space = {"dropout": {"low": 0.0, "high": 0.9}}
    net = TrainableMLP([64, 16, 10])

    def trained(rows):
        task = PBTSupervised(dataset="digits", seed=1)
        task.evaluate(net, _population(space, rows, 5), generation=0)
        return task.weights["layers.0.weight"]

    mixed = trained([[0.0], [0.5], [0.0]])
    plain = trained([[0.0], [0.0], [0.0]])
    assert torch.equal(mixed[0], plain[0]) and torch.equal(mixed[2], plain[2])  # p = 0 members unaffected
    assert not torch.allclose(mixed[1], plain[1])


def test_training_is_one_vectorised_call_per_step(monkeypatch):
    task = PBTSupervised(dataset="digits", seed=0)
    net = TrainableMLP([64, 16, 10])
    calls = []
    real = task._grad_fn

    def counting(phenotype, dropout):
        fn = real(phenotype, dropout)
        return lambda *a: (calls.append(1), fn(*a))[1]

    monkeypatch.setattr(task, "_grad_fn", counting)
    rows = [[0.05]] * 16
    task.evaluate(net, _population({"lr": {"low": 0.001, "high": 0.1}}, rows, 7), generation=0)
    assert len(calls) == 7  # 7 steps, 16 members: one vmapped grad per step


def _saved_task_state(tmp_path):
    """A 3-generation digits PBT run with checkpoints every generation; returns its run folder."""
    from neuroevo.runtime import evolve

    pbt = PBT(8, space={"lr": {"low": 1e-3, "high": 0.5, "log": True}}, ready_every=10, seed=2)
    task = PBTSupervised(dataset="digits", optimizer="adamw", seed=2)
    evolve(pbt, TrainableMLP([64, 16, 10]), task, generations=3, run_dir=tmp_path, checkpoint_every=1)
    return tmp_path


def _bytes(t: torch.Tensor) -> bytes:
    return t.detach().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()


def test_exploit_copies_the_saved_state_byte_for_byte(tmp_path):
    """Rows copied at a ready point equal, byte for byte, the parent's rows in the checkpoint on disk."""
    from neuroevo.runtime.rundir import RunDir

    run = RunDir(_saved_task_state(tmp_path))
    generation, state = run.latest_checkpoint()
    assert generation == 3
    parents = state["strategy"]["state"]["parents"]
    assert int((parents >= 0).sum()) == 2  # truncation 0.25 of 8
    task = PBTSupervised(dataset="digits", optimizer="adamw", seed=2)
    task.load_state_dict(state["task"])
    saved = PBTSupervised(dataset="digits", optimizer="adamw", seed=2)
    saved.load_state_dict(state["task"])
    replaced = task.apply_exploit(parents)
    assert replaced.tolist() == torch.nonzero(parents >= 0).flatten().tolist()
    for k, (new, old) in enumerate(zip(task.stacked_tensors(), saved.stacked_tensors(), strict=True)):
        for i in range(8):
            source = int(parents[i]) if parents[i] >= 0 else i
            assert _bytes(new[i]) == _bytes(old[source]), (k, i)
    # Adam moments and step counts are among the copied tensors
    assert any(t.dtype == torch.long for t in task.stacked_tensors())
    assert len(task.stacked_tensors()) == 3 * len(task.weights) + 1


def test_property_random_copies_are_simultaneous_and_exact():
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        size = int(torch.randint(2, 12, (1,), generator=gen))
        tensors = [torch.randn(size, 3, generator=gen), torch.randint(0, 9, (size,), generator=gen)]
        tensors[0][0, 0] = float("nan")
        saved = [t.clone() for t in tensors]
        parents = torch.randint(-1, size, (size,), generator=gen)
        parents[parents == torch.arange(size)] = -1
        copy_rows(tensors, parents)
        for new, old in zip(tensors, saved, strict=True):
            for i in range(size):
                src = int(parents[i]) if parents[i] >= 0 else i
                assert _bytes(new[i]) == _bytes(old[src])


def test_exploit_from_a_member_without_saved_state_is_refused():
    task = PBTSupervised(dataset="iris", seed=0)
    net = TrainableMLP([4, 8, 3])
    pop = _population({"lr": {"low": 0.001, "high": 0.1}}, [[0.01], [0.01]], 3, parents=[1, -1])
    with pytest.raises(RuntimeError, match="no saved state"):
        task.evaluate(net, pop)


def test_unknown_or_illegal_hyperparameter_is_a_config_error():
    from neuroevo.core.errors import ConfigError

    task = PBTSupervised(dataset="iris", seed=0)
    net = TrainableMLP([4, 8, 3])
    with pytest.raises(ConfigError, match="strategy.space.beta1.*allowed: lr, momentum"):
        task.evaluate(net, _population({"beta1": {"low": 0.5, "high": 0.9}}, [[0.6]], 1))
    with pytest.raises(ConfigError, match="strategy.space.dropout reaches 1.0; allowed: dropout in"):
        task.evaluate(net, _population({"dropout": {"low": 0.0, "high": 1.0}}, [[0.1]], 1))
    with pytest.raises(ConfigError, match="strategy.space.lr reaches 0.0; allowed: lr > 0"):
        task.evaluate(net, _population({"lr": {"low": 0.0, "high": 1.0}}, [[0.1]], 1))
    with pytest.raises(
        ConfigError, match=r"strategy.space.batch_size.choices = \['a', 'b'\]; allowed: numbers"
    ):
        task.evaluate(
            net, _population({"batch_size": {"type": "categorical", "choices": ["a", "b"]}}, [[0.0]], 1)
        )


def small_net(in_features: int, out_features: int) -> torch.nn.Module:
    """A user's own module for ``[network] type = "trainable_module"``."""
    return torch.nn.Sequential(
        torch.nn.Linear(in_features, 16), torch.nn.GELU(), torch.nn.Linear(16, out_features)
    )


def test_any_module_from_a_factory_trains_stacked(tmp_path):
    from neuroevo.config import build, validate_config
    from neuroevo.runtime import evolve
    from neuroevo.runtime.export import load_best_module

    cfg = validate_config(
        {
            "run": {"seed": 1},
            "task": {"name": "pbt_supervised", "dataset": "iris", "optimizer": "adamw"},
            "network": {"type": "trainable_module", "module": f"{__file__}:small_net"},
            "strategy": {
                "name": "pbt",
                "population_size": 6,
                "ready_every": 20,
                "space": {"lr": {"low": 1e-3, "high": 0.1, "log": True}},
            },
        }
    )
    built = build(cfg)
    state = torch.random.get_rng_state()
    first = built.phenotype.init_params(nrandom.member_generator(1, 0, 0, "x"))
    assert torch.equal(first, built.phenotype.init_params(nrandom.member_generator(1, 0, 0, "x")))
    assert torch.equal(state, torch.random.get_rng_state())  # the global RNG is untouched
    result = evolve(built.strategy, built.phenotype, built.task, generations=5, run_dir=tmp_path)
    assert result.validation["val_accuracy"] >= 0.9
    module, spec = load_best_module(tmp_path)
    assert spec["network"]["type"] == "trainable_module"
    assert any(isinstance(m, torch.nn.Sequential) for m in module.modules())  # the user's module, wrapped
    data = built.task.data
    mean, std = data.input_stats  # the export takes raw features and standardises them itself
    with torch.no_grad():
        acc = (module(data.x_val * std + mean).argmax(-1) == data.y_val).float().mean()
    assert abs(float(acc) - result.validation["val_accuracy"]) <= 1.5 / data.y_val.numel()


def with_buffers(in_features: int, out_features: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(in_features, out_features), torch.nn.BatchNorm1d(out_features))


def test_module_with_buffers_or_dropout_is_refused():
    from neuroevo.core.errors import ConfigError
    from neuroevo.nn.trainable import TrainableModule

    with pytest.raises(ConfigError, match="has buffers"):
        TrainableModule(f"{__file__}:with_buffers", 4, 4)
    net = TrainableModule("torch.nn:Linear", 4, 3)
    task = PBTSupervised(dataset="iris", seed=0)
    with pytest.raises(ConfigError, match="takes no dropout masks"):
        task.evaluate(net, _population({"dropout": {"low": 0.1, "high": 0.5}}, [[0.2]], 1))


def test_regression_on_sine_fits():
    from neuroevo.runtime import evolve

    task = PBTSupervised(dataset="sine", optimizer="adamw", seed=0)
    assert task.metric == "neg_mse"
    strategy = PBT(8, space={"lr": {"low": 1e-3, "high": 0.1, "log": True}}, ready_every=50, seed=0)
    result = evolve(strategy, TrainableMLP([1, 32, 1], "tanh"), task, generations=6)
    assert result.validation["val_neg_mse"] > -1e-3  # sin(x) on [-pi, pi]: variance 0.5


def test_a_diverging_member_does_not_disturb_the_others_and_is_replaced():
    space = {"lr": {"low": 1e-3, "high": 1e6, "log": True}}
    net = TrainableMLP([4, 8, 3])
    rows = [[1e6], [0.05], [0.1], [0.02]]
    alone = PBTSupervised(dataset="iris", seed=0, fitness_metric="neg_cross_entropy")
    alone.evaluate(net, _population(space, [[1e-3], *rows[1:]], 20), generation=0)
    task = PBTSupervised(dataset="iris", seed=0, fitness_metric="neg_cross_entropy")
    pbt = PBT(4, space=space, ready_every=20, seed=0)
    pbt.state.values = torch.tensor(rows, dtype=torch.float64)
    fitness = task.evaluate(net, pbt.ask(), generation=0)
    assert not torch.isfinite(fitness.values[0]) and torch.isfinite(fitness.values[1:]).all()
    for name in task.weights:  # the other rows trained exactly as without the diverging one
        assert torch.equal(task.weights[name][1:], alone.weights[name][1:])
    pbt.tell(fitness.values)
    assert pbt.state.parents[0] >= 0
    task.apply_exploit(pbt.ask().parents)  # what evaluate does first at the next interval
    assert all(bool(torch.isfinite(v[0]).all()) for v in task.weights.values())
    assert all(bool(torch.isfinite(v[0]).all()) for s in task.opt_state.values() for v in s.values())
