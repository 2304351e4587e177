from pathlib import Path

import pytest
import torch

from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.nn import PopulationMLP
from neuroevo.tasks import (
    XOR,
    BreastCancer,
    ControlTask,
    Digits,
    FunctionTask,
    Iris,
    MazeTask,
    Parity,
    Sine,
    SupervisedTask,
)


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


# -- one source per hyperparameter, declared capabilities ------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def test_every_task_key_is_written_once_in_its_params_model():
    from neuroevo.tasks import TASKS

    for name, cls in TASKS.items():
        for key, info in cls.Params.model_fields.items():
            assert info.description, f"{name}.{key} has no description"
    # the constructors take the model's keys (or the model) and validate them there, once
    assert Digits().params == Digits.Params() and Digits(split_seed=2).params.split_seed == 2
    assert XOR(XOR.Params(metric="accuracy")).metric == "accuracy"
    assert ControlTask("Pendulum-v1", episodes=2).params.episodes == 2
    assert ControlTask(params=ControlTask.Params(env="Acrobot-v1")).env_id == "Acrobot-v1"
    assert MazeTask(steps=7).steps == 7
    with pytest.raises(ConfigError, match=r"^task\.bogus = 1: unknown key; allowed keys: metric, batch_size"):
        XOR(bogus=1)
    with pytest.raises(ConfigError, match=r"^task\.episodes = 0: Input should be greater than or equal to 1"):
        ControlTask("CartPole-v1", episodes=0)
    with pytest.raises(ConfigError, match=r"^task\.bits = 1"):
        Parity(bits=1)


def test_tasks_declare_what_they_provide():
    from neuroevo.tasks import TASKS, GymTask

    inputs, episodes, validation, descriptors = (
        Capability.INPUTS,
        Capability.EPISODES,
        Capability.VALIDATION,
        Capability.DESCRIPTORS,
    )
    for name in ("xor", "parity", "sine", "regression"):
        assert TASKS.get(name).provides == {inputs}, name
    for name in ("iris", "breast_cancer", "digits"):
        assert TASKS.get(name).provides == {inputs, validation}, name
        task = TASKS.get(name)()
        assert task.x_val is not None and "val_accuracy" in task.validate(
            PopulationMLP([task.in_features, task.out_features], activation=[]),
            torch.zeros(task.in_features * task.out_features + task.out_features),
        )
    assert ControlTask.provides == GymTask.provides == {inputs, episodes, validation}
    assert MazeTask.provides == {inputs, episodes, descriptors}
    assert FunctionTask.provides == {Capability.PARAMETERS}
    # what each declares is true of an instance
    assert (
        MazeTask(steps=5).in_features > 0 and FunctionTask(lambda p: p.sum(1), maximize=True).in_features == 0
    )


# -- [task] name = "function" ------------------------------------------------------------------------


def test_function_task_from_a_config_file_path_and_import_path(monkeypatch):
    from neuroevo.config import build, validate_config

    monkeypatch.chdir(ROOT)
    data = {
        "task": {"name": "function", "function": "examples/rosenbrock.py:rosenbrock", "maximize": False},
        "network": {"type": "vector"},
        "strategy": {"name": "cmaes"},
    }
    data["task"]["dimension"] = 4
    built = build(validate_config(data))
    assert built.phenotype.num_params == 4
    x = torch.ones(3, 4)
    x[1, 0] = 0.0
    values = built.task.evaluate(built.phenotype, x).values
    assert values[0] == 0 and values[2] == 0 and values[1] == pytest.approx(-101.0)  # minimised: -f
    with pytest.raises(ConfigError, match=r"^task\.maximize: required key is missing"):
        validate_config({**data, "task": {"name": "function", "function": "math:fsum"}})
    importable = FunctionTask("torch:sum", maximize=True)
    assert importable.fn is torch.sum


@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("no_such_module_xyz:f", r"^task\.function = 'no_such_module_xyz:f': cannot import"),
        ("examples/nope.py:f", r"^task\.function = 'examples/nope.py:f': cannot import .*no file"),
        ("examples/rosenbrock.py:nope", r"^task\.function = 'examples/rosenbrock.py:nope': .* no attribute"),
        (
            "examples/rosenbrock.py:torch",
            r"^task\.function = 'examples/rosenbrock.py:torch': module is not call",
        ),
        ("rosenbrock", r"^task\.function = 'rosenbrock'; allowed: an import path"),
    ],
)
def test_function_task_import_errors_are_one_line(monkeypatch, function, message):
    monkeypatch.chdir(ROOT)
    with pytest.raises(ConfigError, match=message):
        FunctionTask(function, maximize=True)


def test_function_task_wrong_shape_names_the_key():
    from neuroevo.core.errors import FitnessEvaluationError

    task = FunctionTask(lambda p: p, maximize=True)  # returns [P, D], not [P]
    with pytest.raises(
        FitnessEvaluationError, match=r"task\.function = .*returned shape \[3, 2\]; allowed: .*\[3\]"
    ):
        task.evaluate(None, torch.zeros(3, 2), generation=4)


def test_cli_runs_cmaes_on_rosenbrock_to_the_optimum(tmp_path, monkeypatch):
    import json

    from neuroevo.cli import main

    monkeypatch.chdir(ROOT)
    out = tmp_path / "ros"
    code = main(
        ["run", "examples/rosenbrock_cmaes.toml", "--out", str(out), "--generations", "600", "--quiet"]
    )
    assert code == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = lines[0]["best_ever"], lines[-1]["best_ever"]
    assert first < -10  # a random start is far from the optimum
    assert last > -1e-6  # f(x) = -fitness reaches ~0 (seed 0: 7e-9 at generation 544)
