"""EGGROLL: low-rank populations, their forward passes, noise statistics, update, resume, digits."""

from __future__ import annotations

import json
import statistics

import pytest
import torch
from safetensors.torch import load as st_load
from torch import nn

from neuroevo.core.errors import ConfigError
from neuroevo.nn import NETWORKS, MLPParams, PopulationMLP
from neuroevo.nn.lowrank import EggrollMLP, EggrollModule, LowRankPopulation
from neuroevo.runtime.storage import encode_state, join_tensors
from neuroevo.strategies import EGGROLL, STRATEGIES, OpenES


def mlp_setup(pop: int = 8, rank: int = 2, seed: int = 0, sizes=(5, 7, 3), net: dict | None = None, **kw):
    mlp = PopulationMLP(list(sizes), **(net or {"activation": "tanh"}))
    phen = EggrollMLP(mlp)
    es = EGGROLL(
        phen.num_params, pop, slots=phen.lowrank_slots(), rank=rank, init=phen.init_params, seed=seed, **kw
    )
    return mlp, phen, es


class Net(nn.Module):
    """Linear layers (low-rank noise) around a LayerNorm (full-rank noise)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5, 6)
        self.norm = nn.LayerNorm(6)
        self.head = nn.Sequential(nn.Tanh(), nn.Linear(6, 3, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.fc1(x)))


def test_population_is_low_rank_factors_not_members() -> None:
    _, phen, es = mlp_setup(pop=8, rank=2, sizes=(50, 40, 30))
    pop = es.ask()
    assert isinstance(pop, LowRankPopulation) and len(pop) == 8
    stored = sum(t.numel() for t in pop.a + pop.b) + pop.vector_noise.numel()
    assert stored == 4 * ((50 + 40) * 2 + (40 + 30) * 2 + 40 + 30)  # 4 pairs
    assert stored < phen.num_params  # less than ONE dense member, let alone P x D


NETS = {
    "tanh": {"activation": "tanh"},
    "no_bias": {"activation": "relu", "bias": False},
    "per_neuron": {"activation": [["relu", "tanh", "sin", "relu", "gauss", "tanh", "identity"]]},
}


@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("shared_x", [True, False])
def test_mlp_lowrank_forward_equals_materialised(shared_x: bool, net: str) -> None:
    mlp, phen, es = mlp_setup(net=NETS[net])
    pop = es.ask()
    x = torch.randn(4, 5) if shared_x else torch.randn(8, 4, 5)
    assert torch.allclose(phen.forward(pop, x), mlp.forward(pop.materialize(), x), atol=1e-5)
    dense = pop.materialize()
    assert torch.equal(phen.forward(dense, x), mlp.forward(dense, x))  # plain populations still work


@pytest.mark.parametrize("shared_x", [True, False])
def test_module_lowrank_forward_equals_materialised(shared_x: bool) -> None:
    phen = EggrollModule(Net())
    slots = phen.lowrank_slots()
    assert [(r, c) for _, r, c in slots] == [(6, 5), (3, 6)]  # nn.Linear weights are out x in
    es = EGGROLL(phen.num_params, 6, slots=slots, rank=2, init=phen.init_params, sigma=0.1)
    pop = es.ask()
    x = torch.randn(4, 5) if shared_x else torch.randn(6, 4, 5)
    dense = pop.materialize()
    out = phen.forward(pop, x)
    assert out.shape == (6, 4, 3)
    assert torch.allclose(out, phen.adapter.forward(dense, x), atol=1e-5)
    # the LayerNorm weight (not a Linear) gets ordinary full-rank noise, different per member
    norm = phen.adapter.unflatten(dense)["norm.weight"]
    assert norm.std(0).min() > 0


def test_lowrank_perturbation_has_rank_r() -> None:
    _, _, es = mlp_setup(pop=4, rank=2, sizes=(20, 16, 3))
    pop = es.ask()
    offset, rows, cols = es.slots[0]
    e = (pop.member(1) - es.center)[offset : offset + rows * cols].view(rows, cols)
    assert int(torch.linalg.matrix_rank(e.double(), atol=1e-5)) == 2  # float32 rounding aside
    assert torch.allclose(pop.member(1) - es.center, -(pop.member(3) - es.center), atol=1e-6)  # antithetic


def test_full_rank_recovers_openes_noise_statistics() -> None:
    """r = min(m, n): every entry of sigma * E_i has variance sigma^2, distinct entries are uncorrelated."""
    sigma, rows, cols = 0.1, 4, 3
    es = EGGROLL(rows * cols + 2, 40_000, slots=[(0, rows, cols)], rank=100, sigma=sigma)
    assert es.ranks == [3]  # capped at full rank
    pop = es.ask()
    # sigma * E_h for every pair, computed from the factors without materialising members
    e = sigma * torch.einsum("hmr,hnr->hmn", pop.a[0], pop.b[0]).reshape(pop.pairs, -1) / 3**0.5
    cov = torch.cov(e.T.double())
    ref = OpenES(rows * cols, 40_000, sigma=sigma).ask()[:20_000].double()  # the full-rank reference
    ref_cov = torch.cov(ref.T)
    for c in (cov, ref_cov):
        assert torch.allclose(
            torch.diagonal(c), torch.full((rows * cols,), sigma**2, dtype=c.dtype), rtol=0.05
        )
        off = c - torch.diag(torch.diagonal(c))
        assert off.abs().max() < 0.05 * sigma**2
    assert abs(float(e.mean())) < 0.01 * sigma
    # the vector (bias) entries are ordinary Gaussian noise with std sigma
    assert abs(float((sigma * pop.vector_noise).std()) - sigma) < 0.01 * sigma


def test_update_is_the_openes_estimate_of_the_materialised_noise() -> None:
    _, _, es = mlp_setup(pop=10, rank=3, sigma=0.2)
    pop = es.ask()
    weights = torch.randn(10)
    eps = (pop.materialize() - es.center) / pop.sigma
    expected = (weights @ eps) / (10 * pop.sigma)
    assert torch.allclose(es.gradient(pop, weights), expected, atol=1e-4)


def test_best_is_a_flat_vector_of_the_best_member() -> None:
    _, phen, es = mlp_setup(pop=8)
    pop = es.ask()
    fitness = torch.arange(8.0)
    fitness[5] = 100.0
    es.tell(fitness)
    assert isinstance(es.best.params, torch.Tensor) and es.best.params.shape == (phen.num_params,)
    assert torch.equal(es.best.params, pop.member(5))
    assert es.best.fitness == 100.0


def _through_disk(state: dict) -> dict:
    blob, tree = encode_state(state)
    return join_tensors(json.loads(json.dumps(tree)), st_load(blob))


def test_state_dict_round_trip_is_bit_identical() -> None:
    x = torch.randn(16, 5)
    _, phen, a = mlp_setup(pop=8, seed=4, lr_warmup=3, sigma_decay=0.99)
    for g in range(5):
        a.tell(phen.forward(a.ask(), x).sum((-1, -2)))
        assert a.generation == g + 1
    _, _, b = mlp_setup(pop=8, seed=4, lr_warmup=3, sigma_decay=0.99)
    b.load_state_dict(_through_disk(a.state_dict()))
    for _ in range(5):
        pa, pb = a.ask(), b.ask()
        fa, fb = phen.forward(pa, x).sum((-1, -2)), phen.forward(pb, x).sum((-1, -2))
        assert torch.equal(fa, fb)
        a.tell(fa)
        b.tell(fb)
    assert torch.equal(a.center, b.center) and a.sigma == b.sigma


def test_shape_validation() -> None:
    _, _, es = mlp_setup(pop=8)
    with pytest.raises(RuntimeError, match="before ask"):
        es.tell(torch.zeros(8))
    es.ask()
    with pytest.raises(ValueError, match="fitness values"):
        es.tell(torch.zeros(9))
    with pytest.raises(ValueError, match="even"):
        mlp_setup(pop=7)
    with pytest.raises(ValueError, match="outside"):
        EGGROLL(10, 4, slots=[(5, 3, 3)])


def test_config_path_network_type_and_registry() -> None:
    network = NETWORKS.get("eggroll_mlp")
    phen = network.build(network.Params(hidden=[8]), 4, 2, "identity")
    assert isinstance(phen, EggrollMLP) and phen.spec()["type"] == "mlp"
    cls = STRATEGIES.get("eggroll")
    es = cls.from_params(cls.Params(population_size=6, rank=2), phenotype=phen, seed=1)
    out = phen.forward(es.ask(), torch.randn(3, 4))
    assert out.shape == (6, 3, 2)
    with pytest.raises(ConfigError, match="eggroll_mlp"):
        cls.from_params(cls.Params(), phenotype=PopulationMLP([4, 2]))
    assert isinstance(MLPParams(), network.Params)


def _digits_run(kind: str, seed: int, generations: int = 100, pop: int = 128) -> float:
    from neuroevo.tasks import Digits

    task = Digits(batch_size=256, seed=seed)
    mlp = PopulationMLP([64, 32, 10], activation="tanh")
    phen = EggrollMLP(mlp)
    kw = {"sigma": 0.05, "lr": 0.03, "seed": seed, "init": mlp.init_params}
    if kind == "openes":
        es = OpenES(mlp.num_params, pop, **kw)
    else:
        es = EGGROLL(mlp.num_params, pop, slots=phen.lowrank_slots(), rank=1, **kw)
    for g in range(generations):
        es.tell(task.evaluate(phen, es.ask(), g))
    return task.validate(mlp, es.center)["train_neg_cross_entropy"]


@pytest.mark.slow
def test_eggroll_matches_openes_on_digits() -> None:
    """Rank 1, same budget: the final training loss is the same within seed noise."""
    oes = [_digits_run("openes", s) for s in range(3)]
    egg = [_digits_run("eggroll", s) for s in range(3)]
    noise = max(statistics.stdev(oes), statistics.stdev(egg), 0.01)
    assert abs(statistics.mean(egg) - statistics.mean(oes)) < 3 * noise, (oes, egg)
    assert min(egg) > -0.15  # both actually learn (chance is -ln 10 = -2.3)


@pytest.mark.slow
def test_eggroll_reaches_the_cartpole_target_like_openes() -> None:
    """examples/cartpole_es.toml with strategy 'eggroll' (rank 1) on network 'eggroll_mlp', end to end."""
    from pathlib import Path

    from neuroevo.config import build, load_config
    from neuroevo.runtime.evolve import evolve

    example = Path(__file__).resolve().parent.parent / "examples" / "cartpole_es.toml"
    for seed in range(3):
        overrides = {
            "run": {"seed": seed},
            "strategy": {"name": "eggroll", "rank": 1},
            "network": {"type": "eggroll_mlp"},
        }
        config = load_config(example, overrides)
        built = build(config)
        assert isinstance(built.phenotype, EggrollMLP) and isinstance(built.strategy, EGGROLL)
        result = evolve(
            built.strategy,
            built.phenotype,
            built.task,
            generations=config.run.generations,
            target_fitness=config.run.target_fitness,
            validate_every=0,
        )
        assert result.stop_reason == "target_fitness", (seed, result.best.fitness)
        assert result.best.params.shape == (built.phenotype.num_params,)


def test_runtime_checkpoint_resume_and_best_export(tmp_path) -> None:
    """evolve() with a run folder: the low-rank run resumes bit-identically and saves a plain best."""
    from neuroevo.runtime.evolve import evolve
    from neuroevo.tasks import Digits

    def setup():
        task = Digits(batch_size=64, seed=1)
        network = NETWORKS.get("eggroll_mlp")
        phen = network.build(network.Params(hidden=[8]), task.in_features, task.out_features, "identity")
        es = STRATEGIES.get("eggroll").from_params(EGGROLL.Params(population_size=16), phenotype=phen, seed=1)
        return task, phen, es

    task, phen, straight = setup()
    evolve(straight, phen, task, generations=4, validate_every=0)
    task, phen, first = setup()
    evolve(first, phen, task, generations=2, run_dir=tmp_path / "run", checkpoint_every=2, validate_every=0)
    task, phen, resumed = setup()
    evolve(resumed, phen, task, generations=4, run_dir=tmp_path / "run", resume=True, validate_every=0)
    assert resumed.generation == 4
    assert torch.equal(resumed.center, straight.center)
    assert any((tmp_path / "run" / "best").iterdir())
