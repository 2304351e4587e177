import pytest
import torch

from neuroevo.core.errors import ConfigError
from neuroevo.nn import PopulationMLP
from neuroevo.tasks import XOR, BreastCancer, Digits, FunctionTask, Iris, Parity, Sine, SupervisedTask


def test_multiclass_metrics_match_torch():
    x = torch.randn(20, 3)
    y = torch.randint(0, 4, (20,))
    task = SupervisedTask(x, y, kind="multiclass", metric="neg_cross_entropy", num_classes=4)
    logits = torch.randn(5, 20, 4)
    ce = torch.stack([torch.nn.functional.cross_entropy(logits[i], y) for i in range(5)])
    assert torch.allclose(task.score(logits, y, "neg_cross_entropy"), -ce, atol=1e-6)
    acc = torch.stack([(logits[i].argmax(1) == y).float().mean() for i in range(5)])
    assert torch.allclose(task.score(logits, y, "accuracy"), acc)


def test_binary_and_regression_metrics():
    task = XOR()
    perfect = torch.tensor([0.0, 1.0, 1.0, 0.0]).view(1, 4, 1)
    assert task.score(perfect, task.y_train, "neg_mse").item() == 0
    assert task.score(perfect, task.y_train, "accuracy").item() == 1
    half = torch.full((1, 4, 1), 0.5)
    assert task.score(half, task.y_train, "neg_mse").item() == pytest.approx(-0.25)
    with pytest.raises(ConfigError, match="allowed: neg_mse"):
        Sine(metric="accuracy")


def test_bundled_datasets_split_and_standardise():
    for cls, features, classes in ((Iris, 4, 3), (BreastCancer, 30, 2), (Digits, 64, 10)):
        task = cls(validation_fraction=0.25)
        assert task.in_features == features and task.out_features == classes
        n = task.x_train.shape[0] + task.x_val.shape[0]
        assert abs(task.x_val.shape[0] - 0.25 * n) <= 1
        assert task.x_train.mean(0).abs().max() < 1e-4
    a, b = Digits(split_seed=1), Digits(split_seed=1)
    assert torch.equal(a.x_val, b.x_val)
    assert not torch.equal(Digits(split_seed=2).y_val, a.y_val)


def test_parity_targets():
    task = Parity(bits=4)
    assert task.x_train.shape == (16, 4)
    assert torch.equal(task.y_train, task.x_train.sum(1) % 2)


def test_minibatch_is_keyed_by_generation():
    task = Digits(batch_size=64, seed=3)
    x0, _ = task._batch(0)
    assert torch.equal(x0, Digits(batch_size=64, seed=3)._batch(0)[0])
    assert not torch.equal(x0, task._batch(1)[0])
    assert not torch.equal(x0, task._batch(0, stream=1)[0])
    mlp = PopulationMLP([64, 10], activation=[])
    pop = torch.randn(3, mlp.num_params)
    fit = task.evaluate(mlp, pop, generation=5)
    assert fit.values.shape == (3,) and fit.steps == 3 * 64


def test_function_task_direction_is_explicit():
    pop = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    minimise = FunctionTask(lambda p: (p**2).sum(1), maximize=False)
    assert minimise.evaluate(None, pop).values.tolist() == [-5.0, 0.0]
    maximise = FunctionTask(lambda p: (p**2).sum(1), maximize=True)
    assert maximise.evaluate(None, pop).values.tolist() == [5.0, 0.0]
    per = FunctionTask(lambda row: float(row.sum()), maximize=True, per_member=True)
    assert per.evaluate(None, pop).values.tolist() == [3.0, 0.0]
    with pytest.raises(ConfigError, match="maximize"):
        FunctionTask(lambda p: p, maximize=None)
    with pytest.raises(ConfigError, match="cannot import"):
        FunctionTask("no_such_module_xyz:f", maximize=True)
