import math

import pytest
import torch

from neuroevo.core.errors import FitnessEvaluationError
from neuroevo.nn import PopulationMLP
from neuroevo.strategies import GA, OpenES
from neuroevo.strategies.optim import scheduled_lr
from neuroevo.tasks import XOR


def _run(strategy, task, phenotype, generations):
    for g in range(generations):
        pop = strategy.ask()
        strategy.tell(task.evaluate(phenotype, pop, g))
    return strategy


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ga_solves_xor(seed):
    task, mlp = XOR(), PopulationMLP([2, 4, 1], "tanh", "sigmoid")
    ga = GA(
        mlp.num_params,
        200,
        init=mlp.init_params,
        truncation=20,
        elites=2,
        mutation_power=0.1,
        crossover_prob=0.2,
        seed=seed,
    )
    _run(ga, task, mlp, 150)
    assert task.validate(mlp, ga.best.params)["train_accuracy"] == 1.0
    assert ga.best.fitness > -0.01


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_openes_solves_xor(seed):
    task, mlp = XOR(), PopulationMLP([2, 8, 1], "tanh", "sigmoid")
    es = OpenES(mlp.num_params, 64, init=mlp.init_params, sigma=0.1, lr=0.05, seed=seed)
    _run(es, task, mlp, 200)
    assert task.validate(mlp, es.center)["train_accuracy"] == 1.0
    assert task.validate(mlp, es.best.params)["train_accuracy"] == 1.0


def test_openes_is_antithetic_and_regenerable():
    es = OpenES(5, 6, center=torch.ones(5), sigma=0.5, seed=3)
    pop = es.ask()
    assert torch.allclose(pop[:3] + pop[3:], 2 * torch.ones(5).expand(3, 5))
    es2 = OpenES(5, 6, center=torch.ones(5), sigma=0.5, seed=3)
    assert torch.equal(es2.ask(), pop)
    assert es.ask() is pop  # asking twice before tell returns the same population


def test_openes_gradient_points_uphill():
    """On f(x) = -|x - t|^2 with SGD and no momentum, one step moves the centre toward t."""
    target = torch.tensor([1.0, -2.0, 0.5])
    es = OpenES(
        3, 200, center=torch.zeros(3), sigma=0.1, lr=0.1, optimizer="sgd", momentum=0.0, shaping="raw", seed=0
    )
    pop = es.ask()
    es.tell(-((pop - target) ** 2).sum(1))
    cos = torch.nn.functional.cosine_similarity(es.center, target, dim=0)
    assert cos > 0.95


def test_tell_validates_shape_and_order():
    ga = GA(3, 10, truncation=5)
    with pytest.raises(RuntimeError, match="before ask"):
        ga.tell(torch.zeros(10))
    ga.ask()
    with pytest.raises(ValueError, match="got 7 fitness values; the population has 10"):
        ga.tell(torch.zeros(7))


def test_nan_policy_worst_counts_and_error_raises():
    es = OpenES(4, 6, sigma=0.1, seed=0)
    es.ask()
    es.tell(torch.tensor([1.0, float("nan"), 3.0, float("inf"), 0.5, 2.0]))
    assert es.last_nan_count == 2 and es.best.fitness == 3.0
    checked = es.check_fitness(torch.tensor([1.0, float("nan"), 3.0]).repeat(2))
    assert checked.tolist() == [1.0, 1.0, 3.0, 1.0, 1.0, 3.0]
    strict = OpenES(4, 6, sigma=0.1, seed=0, on_nan="error")
    strict.ask()
    with pytest.raises(FitnessEvaluationError, match="generation 0: 1 NaN"):
        strict.tell(torch.tensor([1.0, float("nan"), 3.0, 0.0, 0.5, 2.0]))


@pytest.mark.parametrize(
    "make",
    [
        lambda: GA(6, 12, truncation=4, elites=1, mutation_power=0.3, crossover_prob=0.5, seed=4),
        lambda: OpenES(
            6, 12, sigma=0.2, lr=0.1, weight_decay=0.01, lr_warmup=2, lr_decay=0.9, sigma_decay=0.95, seed=4
        ),
    ],
)
def test_state_dict_round_trip_continues_identically(make):
    def f(pop):
        return -(pop**2).sum(1) + torch.sin(5 * pop).sum(1)

    a = make()
    for _ in range(3):
        a.tell(f(a.ask()))
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        pa, pb = a.ask(), b.ask()
        assert torch.equal(pa, pb)
        a.tell(f(pa))
        b.tell(f(pb))
    assert a.best.fitness == b.best.fitness and torch.equal(a.best.params, b.best.params)


def test_lr_schedule_warmup_then_decay():
    assert scheduled_lr(0, 1.0, 4, 0.5, 0.0) == 0.25
    assert scheduled_lr(3, 1.0, 4, 0.5, 0.0) == 1.0
    assert scheduled_lr(6, 1.0, 4, 0.5, 0.0) == 0.25
    assert scheduled_lr(100, 1.0, 4, 0.5, 0.1) == 0.1


def test_ga_elites_survive_unchanged_and_children_mutate():
    ga = GA(4, 8, truncation=3, elites=2, mutation_power=0.5, seed=0)
    pop = ga.ask().clone()
    fitness = torch.arange(8.0)
    ga.tell(fitness)
    nxt = ga.ask()
    assert torch.equal(nxt[0], pop[7]) and torch.equal(nxt[1], pop[6])
    parents = pop[[7, 6, 5]]
    for child in nxt[2:]:
        dist = (parents - child).norm(dim=1).min()
        assert 0 < dist < 0.5 * math.sqrt(4) * 4
