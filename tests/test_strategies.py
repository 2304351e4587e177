import dataclasses
import inspect
import json
import math

import pytest
import torch
from safetensors.torch import load as st_load

from neuroevo.core import memory
from neuroevo.core import random as nrandom
from neuroevo.core.contracts import HasGenome, PopulationKind, Reevaluating
from neuroevo.core.errors import ConfigError, FitnessEvaluationError
from neuroevo.nn import PopulationMLP
from neuroevo.nn.lowrank import EggrollMLP, LowRankPopulation
from neuroevo.runtime.storage import encode_state, join_tensors
from neuroevo.strategies import CMAES, EGGROLL, GA, PGPE, SNES, OpenES, SeedGA, SepCMAES
from neuroevo.strategies.openes import OpenESParams
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


# -- one source for every hyperparameter, one declared state container ------------------------------

MLP = PopulationMLP([3, 4, 2], "tanh")
LOWRANK = EggrollMLP(MLP)
OWNED = {
    "openes": lambda **kw: OpenES(MLP.num_params, init=MLP.init_params, seed=1, **kw),
    "openes_sgd": lambda **kw: OpenES(
        MLP.num_params, init=MLP.init_params, seed=1, optimizer="sgd", antithetic=False, **kw
    ),
    "eggroll": lambda **kw: EGGROLL(
        LOWRANK.num_params, slots=LOWRANK.lowrank_slots(), init=LOWRANK.init_params, seed=1, **kw
    ),
    "snes": lambda **kw: SNES(MLP.num_params, init=MLP.init_params, seed=1, **kw),
    "pgpe": lambda **kw: PGPE(MLP.num_params, init=MLP.init_params, seed=1, **kw),
    "pgpe_adam": lambda **kw: PGPE(MLP.num_params, init=MLP.init_params, seed=1, optimizer="adam", **kw),
    "cmaes": lambda **kw: CMAES(MLP.num_params, init=MLP.init_params, seed=1, **kw),
    "sep_cmaes": lambda **kw: SepCMAES(MLP.num_params, init=MLP.init_params, seed=1, **kw),
    "ga": lambda **kw: GA(
        MLP.num_params, init=MLP.init_params, seed=1, truncation=5, crossover_prob=0.3, **kw
    ),
    "seed_ga": lambda **kw: SeedGA(
        MLP.num_params, init=MLP, seed=1, truncation=5, elite_candidates=3, reeval_streams=2, **kw
    ),
}
SMALL = {"population_size": 16}  # small populations; CMA-ES restarts quickly with a short stagnation window
EXTRA = {"cmaes": {"tolstagnation": 3}, "sep_cmaes": {"tolstagnation": 3}}
CLASSES = [OpenES, EGGROLL, SNES, PGPE, CMAES, SepCMAES, GA, SeedGA]


def _make(name: str):
    return OWNED[name](**SMALL, **EXTRA.get(name, {}))


def _flat(population) -> torch.Tensor:
    return population.materialize() if isinstance(population, LowRankPopulation) else population


def _fitness(x: torch.Tensor, generation: int, stream: int = 0) -> torch.Tensor:
    """A rugged objective with evaluation noise (so re-evaluation matters for SeedGA)."""
    noise = nrandom.normal(x.shape[0], 5, generation, stream, "test", dtype=torch.float64)
    return -(x.double() ** 2).sum(1) + torch.cos(7 * x.double()).sum(1) + 0.1 * noise


def _step(strategy, generation: int) -> torch.Tensor:
    pop = strategy.ask()
    x = _flat(pop).clone()
    strategy.tell(_fitness(x, generation))
    if isinstance(strategy, Reevaluating):
        request = strategy.reevaluation_request()
        if request is not None:
            cand, n = request
            strategy.tell_reevaluation(
                torch.stack([_fitness(cand, generation, s) for s in range(1, n + 1)]).mean(0)
            )
    return x


@pytest.mark.parametrize("name", sorted(OWNED))
def test_state_container_round_trip_through_a_checkpoint(name):
    """state_dict -> safetensors + JSON -> fresh instance -> load: the run continues bit-identically."""
    a = _make(name)
    assert dataclasses.is_dataclass(a.state)
    for g in range(8):
        _step(a, g)
    if "cmaes" in name:
        assert a.restarts_done > 0  # the checkpoint holds a restarted run (a larger population)
    state = a.state_dict()
    written = {f.name for f in dataclasses.fields(a.state) if f.init}
    assert set(state["state"]) == written  # the container is the checkpoint; derived fields are not in it
    blob, tree = encode_state(state)
    b = _make(name)
    b.load_state_dict(join_tensors(json.loads(json.dumps(tree)), st_load(blob)))
    assert b.generation == a.generation and b.best.fitness == a.best.fitness
    assert b.population_size == a.population_size
    for g in range(8, 14):
        xa, xb = _step(a, g), _step(b, g)
        assert torch.equal(xa, xb), f"{name}: generation {g}"
    assert a.best.fitness == b.best.fitness and torch.equal(_flat_best(a), _flat_best(b))


def _flat_best(strategy) -> torch.Tensor:
    return torch.as_tensor(strategy.best.params)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.name)
def test_every_key_is_described_once_in_params(cls):
    for key, info in cls.Params.model_fields.items():
        assert info.description, f"{cls.name}.{key} has no description"
    # constructors take Params keys through **keys / params=, never as their own arguments
    arguments = set(inspect.signature(cls.__init__).parameters)
    assert arguments & set(cls.Params.model_fields) <= {"population_size"}, cls.name


@pytest.mark.parametrize("name", ["openes", "eggroll", "snes", "pgpe", "cmaes", "sep_cmaes", "ga", "seed_ga"])
def test_defaults_come_from_params(name):
    strategy = OWNED[name]()
    fields = type(strategy).Params.model_fields
    given = {"crossover_prob", "elite_candidates", "reeval_streams", "truncation"}  # set by OWNED
    for key, info in fields.items():
        if key not in given:
            assert getattr(strategy.params, key) == info.default, f"{name}.{key}"
    assert OpenES(4, 8).params.sigma == OpenESParams.model_fields["sigma"].default


def test_keywords_and_params_model_build_the_same_strategy():
    by_keywords = OpenES(MLP.num_params, 8, init=MLP.init_params, sigma=0.2, lr=0.1, seed=3)
    by_model = OpenES(
        MLP.num_params,
        init=MLP.init_params,
        seed=3,
        params=OpenESParams(population_size=8, sigma=0.2, lr=0.1),
    )
    from_config = OpenES.from_params(
        OpenESParams(population_size=8, sigma=0.2, lr=0.1), phenotype=MLP, seed=3
    )
    assert by_keywords.params == by_model.params == from_config.params
    for g in range(3):
        xs = [_step(s, g) for s in (by_keywords, by_model, from_config)]
        assert torch.equal(xs[0], xs[1]) and torch.equal(xs[0], xs[2])
    # keywords on top of a model override it
    assert OpenES(4, 8, params=OpenESParams(sigma=0.2), sigma=0.3).params.sigma == 0.3
    assert SepCMAES(4).params.active is False and CMAES(4).params.active is True


@pytest.mark.parametrize(
    ("make", "key"),
    [
        (lambda: OpenES(4, 8, sigmaa=0.1), "sigmaa"),
        (lambda: OpenES(4, 8, sigma=-1.0), "sigma"),
        (lambda: OpenES(4, 8, on_nan="ignore"), "on_nan"),
        (lambda: EGGROLL(4, 8, slots=[], rank=0), "rank"),
        (lambda: SNES(4, lr_sigma=0.0), "lr_sigma"),
        (lambda: PGPE(4, 8, optimizer="rmsprop"), "optimizer"),
        (lambda: PGPE(4, 8, shaping="ranks"), "shaping"),
        (lambda: CMAES(4, tolconditioncov=0.5), "tolconditioncov"),
        (lambda: SepCMAES(4, popsize_factor=0.5), "popsize_factor"),
        (lambda: GA(4, 8, truncation=2, mutation_power=0.0), "mutation_power"),
        (lambda: SeedGA(4, 8, truncation=2, reeval_streams=-1), "reeval_streams"),
        (lambda: SeedGA(4, 1, truncation=1), "population_size"),
    ],
)
def test_bad_keyword_is_a_one_line_config_error_naming_it(make, key):
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and message.split(": ", 1)[1].startswith(f"{key} = "), message


def test_optional_hooks_are_declared_protocols():
    strategies = {name: _make(name) for name in OWNED}
    for name, strategy in strategies.items():
        is_seed_ga = name == "seed_ga"
        assert isinstance(strategy, Reevaluating) is is_seed_ga, name
        assert isinstance(strategy, HasGenome) is is_seed_ga, name
        expected = PopulationKind.LOWRANK if name == "eggroll" else PopulationKind.FLAT
        assert type(strategy).population_kind is expected, name
    assert isinstance(strategies["eggroll"].ask(), LowRankPopulation)


def test_constructors_change_no_process_wide_setting(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("a strategy constructor changed a process-wide setting")

    monkeypatch.setattr(torch, "set_num_threads", forbidden)
    monkeypatch.setattr(torch, "set_num_interop_threads", forbidden)
    monkeypatch.setattr(memory, "keep_freed_memory", forbidden)
    for name in OWNED:
        _step(_make(name), 0)
