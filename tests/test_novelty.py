"""Novelty search (NS / NSR / Pareto, archive, NS-ES meta-population) and the deceptive maze task."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.nn import PopulationMLP, VectorPhenotype
from neuroevo.strategies import GA, STRATEGIES, Novelty, OpenES, reconstruct
from neuroevo.strategies.novelty import knn_novelty, novelty_score, pareto_fronts
from neuroevo.tasks import TASKS
from neuroevo.tasks.maze import (
    HARD_MAZE,
    MazeTask,
    plot_maze_positions,
    read_maze_positions,
    segment_distance,
)


def brute_novelty(desc: torch.Tensor, archive: torch.Tensor, k: int) -> torch.Tensor:
    out = []
    for i in range(desc.shape[0]):
        others = [desc[j] for j in range(desc.shape[0]) if j != i] + list(archive)
        d = sorted(float((desc[i] - o).norm()) for o in others)
        out.append(sum(d[:k]) / min(k, len(d)))
    return torch.tensor(out, dtype=torch.float64)


# -- novelty arithmetic -----------------------------------------------------------------------------


def test_knn_novelty_matches_brute_force():
    gen = torch.Generator().manual_seed(0)
    desc, archive = torch.randn(12, 3, generator=gen), torch.randn(7, 3, generator=gen)
    for k in (1, 3, 30):
        assert torch.allclose(knn_novelty(desc, archive, k), brute_novelty(desc, archive, k))
    assert torch.allclose(knn_novelty(desc, None, 4), brute_novelty(desc, torch.zeros(0, 3), 4))
    # NS-ES: against the archive alone (the population only while the archive is empty)
    alone = knn_novelty(desc, archive, 3, population=False)
    expected = torch.cdist(desc.double(), archive.double()).topk(3, largest=False).values.mean(1)
    assert torch.allclose(alone, expected)
    assert torch.equal(knn_novelty(desc, None, 3, population=False), knn_novelty(desc, None, 3))


def test_knn_novelty_non_finite_rows_score_zero_and_are_nobodys_neighbour():
    desc = torch.tensor([[0.0, 0.0], [1.0, 0.0], [float("nan"), 0.0], [3.0, 0.0]])
    nov = knn_novelty(desc, None, k=1)
    assert nov[2] == 0
    assert torch.allclose(nov[[0, 1, 3]], torch.tensor([1.0, 1.0, 2.0], dtype=torch.float64))


def test_pareto_fronts_and_scores():
    obj = torch.tensor([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [0.0, 0.0]])
    assert pareto_fronts(obj).tolist() == [0, 0, 0, 1, 2]
    reward, novelty = obj[:, 0], obj[:, 1]
    assert torch.equal(novelty_score(reward, novelty, "ns"), novelty.double())
    only_reward = novelty_score(reward, novelty, "nsr", weight=1.0)
    assert only_reward.argmax() == 0
    pareto = novelty_score(reward, novelty, "nsr_pareto")
    assert pareto[:3].min() > pareto[3] > pareto[4]
    with pytest.raises(ConfigError):
        novelty_score(reward, novelty, "bogus")


# -- the wrapper ------------------------------------------------------------------------------------


def vector_ga(**kw) -> GA:
    return GA(2, 10, truncation=3, init_std=1.0, mutation_power=0.3, seed=kw.pop("seed", 0), **kw)


def behaviour(pop: torch.Tensor) -> Fitness:
    """Descriptor = the 2-D vector itself; reward = -|x| (novelty pulls away from it)."""
    return Fitness(values=-pop.norm(dim=1), descriptors=pop.clone())


def drive(strategy, generations: int) -> list[torch.Tensor]:
    seen = []
    for _ in range(generations):
        pop = strategy.ask()
        seen.append(pop.clone())
        strategy.tell(behaviour(pop))
    return seen


def test_needs_descriptors():
    ns = Novelty(vector_ga())
    pop = ns.ask()
    with pytest.raises(ConfigError, match="descriptors"):
        ns.tell(-pop.norm(dim=1))


def test_novelty_search_spreads_out_and_best_tracks_reward():
    ns = Novelty(vector_ga(), k=3, archive_prob=0.2)
    pops = drive(ns, 15)
    greedy = drive(vector_ga(), 15)  # the plain GA on reward contracts to the origin instead
    assert pops[-1].norm(dim=1).mean() > 1.5 * pops[0].norm(dim=1).mean()
    assert greedy[-1].norm(dim=1).mean() < 0.5 * pops[0].norm(dim=1).mean()
    best_reward = max(float((-p.norm(dim=1)).max()) for p in pops)
    assert ns.best.fitness == best_reward  # best = highest reward seen, not most novel
    assert 0 < ns.archive.shape[0] < 15 * 10


def test_archive_probability_threshold_and_bound():
    ns = Novelty(vector_ga(), archive_prob=1.0, archive_size=25)
    drive(ns, 4)
    assert ns.archive.shape == (25, 2)
    last = ns.ask()
    ns.tell(behaviour(last))
    assert torch.equal(ns.archive[-10:], last)  # FIFO: the newest entries are kept
    th = Novelty(vector_ga(), archive_threshold=1e9)
    drive(th, 2)
    assert th.archive.shape[0] == 0
    th2 = Novelty(vector_ga(), archive_threshold=1e-9)
    drive(th2, 2)
    assert th2.archive.shape[0] == 20


def test_resume_is_bit_identical():
    reference = Novelty(vector_ga(), k=4, mode="nsr", archive_prob=0.3)
    ref = drive(reference, 8)
    first = Novelty(vector_ga(), k=4, mode="nsr", archive_prob=0.3)
    drive(first, 4)
    state = copy.deepcopy(first.state_dict())
    resumed = Novelty(vector_ga(), k=4, mode="nsr", archive_prob=0.3)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.archive, first.archive)
    again = drive(resumed, 4)
    for a, b in zip(ref[4:], again, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(reference.archive, resumed.archive)


def test_meta_population_tries_every_centre_then_picks_by_novelty():
    bases = [OpenES(2, 8, sigma=0.2, lr=0.1, seed=s, center=torch.full((2,), float(s))) for s in range(3)]
    ns = Novelty(bases, k=2, archive_prob=0.0, add_centre=True)
    active = []
    for _ in range(8):
        pop = ns.ask()
        active.append(ns.active)
        ns.tell(behaviour(pop))
    assert active[:3] == [0, 1, 2]
    assert all(ns.centre_known) and ns.archive.shape[0] == 8  # one centre behaviour per generation
    state = copy.deepcopy(ns.state_dict())
    bases2 = [OpenES(2, 8, sigma=0.2, lr=0.1, seed=s, center=torch.full((2,), float(s))) for s in range(3)]
    ns2 = Novelty(bases2, k=2, archive_prob=0.0, add_centre=True)
    ns2.load_state_dict(state)
    assert torch.equal(ns2.ask(), ns.ask())


def test_ns_es_follows_the_novelty_gradient():
    es = OpenES(2, 20, sigma=0.1, lr=0.2, center=torch.zeros(2), seed=3)
    ns = Novelty(es, k=5, archive_prob=0.0, add_centre=True)
    drive(ns, 20)
    assert float(ns.center.norm()) > 1.0  # pushed away from where it has been


@pytest.mark.parametrize("name", ["ns_ga", "nsr_ga", "ns_es", "nsr_es"])
def test_registered_variants_build_from_params(name):
    cls = STRATEGIES.get(name)
    keys = ("k", "weight", "archive_prob", "archive_threshold", "archive_size", "mode", "add_centre")
    for key in (*keys, "population_neighbours"):
        assert cls.Params.model_fields[key].description, key
    params = cls.Params(population_size=8, **({"truncation": 3} if "ga" in name else {}))
    strat = cls.from_params(params, phenotype=VectorPhenotype(2), seed=1)
    assert strat.name == name
    drive(strat, 3)
    with pytest.raises(ValueError):
        cls.Params(bogus=1)


def test_nsr_pareto_mode_and_meta_population_from_params():
    ga = STRATEGIES.get("nsr_ga").from_params(
        STRATEGIES.get("nsr_ga").Params(population_size=8, truncation=3, mode="nsr_pareto"),
        phenotype=VectorPhenotype(2),
    )
    assert ga.mode == "nsr_pareto"
    drive(ga, 2)
    with pytest.raises(ValueError):
        STRATEGIES.get("ns_ga").Params(mode="nsr")
    es = STRATEGIES.get("ns_es").from_params(
        STRATEGIES.get("ns_es").Params(population_size=8, meta_population=3), phenotype=VectorPhenotype(2)
    )
    assert len(es.bases) == 3
    assert not torch.equal(es.bases[0].center, es.bases[1].center)


def test_ns_ga_with_seed_chains_exports_the_best_by_reward():
    cls = STRATEGIES.get("ns_ga")
    net = PopulationMLP([2, 3, 2])
    ns = cls.from_params(cls.Params(population_size=8, truncation=3, genome="seeds"), phenotype=net, seed=2)
    for g in range(4):
        pop = ns.ask()
        out = net.forward(pop, torch.ones(1, 2))[:, 0]
        ns.tell(Fitness(values=out[:, 0] + 0.01 * g, descriptors=out))
    assert torch.equal(reconstruct(json.loads(json.dumps(ns.best_genome))), ns.best.params)
    with pytest.raises(ConfigError):
        cls.from_params(
            cls.Params(population_size=8, truncation=3, genome="seeds", crossover_prob=0.5), phenotype=net
        )


# -- novelty over any base strategy ------------------------------------------------------------------


MAZE_CONFIG = {
    "task": {"name": "maze", "steps": 60},
    "network": {"type": "mlp", "hidden": [4], "output_activation": "tanh"},
}


def novelty_config(**strategy):
    from neuroevo.config import validate_config

    return validate_config({**MAZE_CONFIG, "strategy": strategy})


def run_config(config, generations: int):
    """Build ``config`` and run it for ``generations``; returns (strategy, populations, stats)."""
    from neuroevo.config import build

    built = build(config)
    pops, stats = [], []
    for g in range(generations):
        pop = built.strategy.ask()
        pops.append(pop.clone())
        stats.append(built.strategy.tell(built.task.evaluate(built.phenotype, pop, g)))
    return built.strategy, pops, stats


@pytest.mark.parametrize("base", ["snes", "cmaes"])
def test_novelty_over_a_base_without_a_variant_searches_the_maze(base):
    config = novelty_config(name="novelty", base=base, reward_weight=0.0, k=5, archive_prob=0.2, sigma=0.5)
    strategy, pops, stats = run_config(config, 6)
    assert type(strategy.base).name == base and strategy.mode == "ns"
    assert Novelty.needs == frozenset({Capability.DESCRIPTORS}) and strategy.population_kind == "flat"
    sizes = [s["archive_size"] for s in stats]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0] and strategy.archive.shape[1] == 2
    # the base moved: novelty scores drove its updates (a CMA-ES/SNES centre told only zeros would not)
    assert not torch.allclose(pops[0].mean(0), pops[-1].mean(0))
    # the resolved config writes the base's defaults out and validates again
    resolved = config.to_dict()["strategy"]
    assert resolved["base"] == base and "sigma" in resolved and len(resolved) > 12
    again = novelty_config(**resolved)
    assert again.strategy.model_dump() == config.strategy.model_dump()


def test_novelty_wrapper_resumes_bit_identically():
    config = novelty_config(name="novelty", base="cmaes", reward_weight=0.5, archive_prob=0.3)
    reference, ref_pops, _ = run_config(config, 6)
    from neuroevo.config import build

    built = build(config)
    for g in range(3):
        pop = built.strategy.ask()
        built.strategy.tell(built.task.evaluate(built.phenotype, pop, g))
    state = copy.deepcopy(built.strategy.state_dict())
    resumed = build(config).strategy
    resumed.load_state_dict(state)
    for g in range(3, 6):
        pop = resumed.ask()
        assert torch.equal(pop, ref_pops[g])
        resumed.tell(built.task.evaluate(built.phenotype, pop, g))
    assert torch.equal(resumed.archive, reference.archive)


@pytest.mark.parametrize(
    ("preset", "generic"),
    [
        ({"name": "ns_ga", "truncation": 5}, {"base": "ga", "truncation": 5}),
        (
            {"name": "nsr_es", "weight": 0.3, "meta_population": 2},
            {
                "base": "openes",
                "reward_weight": 0.3,
                "meta_population": 2,
                "archive_prob": 0.0,
                "add_centre": True,
                "population_neighbours": False,
            },
        ),
        (
            {"name": "nsr_ga", "mode": "nsr_pareto", "truncation": 5},
            {"base": "ga", "pareto": True, "reward_weight": 0.5, "truncation": 5},
        ),
    ],
)
def test_presets_are_the_wrapper_with_their_papers_defaults(preset, generic):
    a, pops_a, stats_a = run_config(novelty_config(population_size=20, **preset), 5)
    b, pops_b, stats_b = run_config(novelty_config(name="novelty", population_size=20, **generic), 5)
    assert a.name == preset["name"] and b.name == "novelty"
    for x, y in zip(pops_a, pops_b, strict=True):
        assert torch.equal(x, y)
    assert stats_a == stats_b and torch.equal(a.archive, b.archive)


def test_presets_reproduce_the_results_before_the_wrapper():
    """Numbers recorded with the four hand-written variant classes this wrapper replaced."""
    expected = {
        ("ns_ga", "vector"): (-64.82785034179688, 3),
        ("ns_ga", "seeds"): (-64.82785034179688, 3),
        ("nsr_es", None): (-63.36359786987305, 6),
    }
    for (name, genome), (best, archived) in expected.items():
        task = MazeTask(steps=40, record_history=False)
        net = PopulationMLP([task.in_features, 4, task.out_features], output_activation="tanh")
        cls = STRATEGIES.get(name)
        extra = {"truncation": 5, "genome": genome} if genome else {}
        strategy = cls.from_params(cls.Params(population_size=20, **extra), phenotype=net, seed=3)
        for g in range(6):
            strategy.tell(task.evaluate(net, strategy.ask(), g))
        assert strategy.best.fitness == best and strategy.archive.shape == (archived, 2)


def test_novelty_config_errors_are_one_line_naming_the_key():
    with pytest.raises(
        ConfigError, match=r"^strategy\.bogus = 1: unknown key; allowed keys: .*sigma.*reward_weight"
    ):
        novelty_config(name="novelty", base="cmaes", bogus=1)
    with pytest.raises(
        ConfigError, match=r"^strategy\.base = 'ns_ga': not a flat-vector strategy; allowed: .*cmaes"
    ):
        novelty_config(name="novelty", base="ns_ga")
    with pytest.raises(ConfigError, match=r"^strategy\.sigma = -1"):
        novelty_config(name="novelty", base="snes", sigma=-1)
    with pytest.raises(ConfigError, match=r"^strategy\.k = 0"):
        novelty_config(name="novelty", base="snes", k=0)
    with pytest.raises(ConfigError, match="k = 0"):
        Novelty(vector_ga(), k=0)
    keys = Novelty.params_for("snes").model_fields
    assert {"base", "reward_weight", "k", "archive_size", "sigma", "lr_mean"} <= set(keys)
    assert all(info.description for name, info in keys.items() if name in Novelty.Params.model_fields)


def test_novelty_declares_the_base_population_kind_and_needs_descriptors():
    from neuroevo.config import validate_config

    for name, params in (("novelty", {"base": "cmaes"}), ("ns_es", {})):
        cls = STRATEGIES.get(name)
        config = novelty_config(name=name, **params)
        assert cls.contract(config.strategy) == ("flat", frozenset({Capability.DESCRIPTORS}))
    with pytest.raises(ConfigError, match="descriptors"):  # xor gives no behaviour descriptors
        validate_config({"task": {"name": "xor"}, "strategy": {"name": "novelty", "base": "cmaes"}})


def test_archive_stays_bounded_in_checkpoints():
    ns = Novelty(vector_ga(), archive_prob=1.0, archive_size=15)
    sizes = []
    for _ in range(6):
        pop = ns.ask()
        ns.tell(behaviour(pop))
        sizes.append(ns.state_dict()["state"]["archive"].shape[0])
    assert sizes == [10, 15, 15, 15, 15, 15]
    assert Novelty(vector_ga()).archive_size == 10_000  # bounded by default
    with pytest.raises(ConfigError):
        Novelty(vector_ga(), archive_size=0)


# -- the maze ----------------------------------------------------------------------------------------


def straight_driver(task: MazeTask, copies: int = 1) -> tuple[PopulationMLP, torch.Tensor]:
    """A network that ignores its sensors and drives both wheels forward at full speed."""
    net = PopulationMLP([task.in_features, task.out_features], output_activation="tanh")
    params = torch.zeros(copies, net.num_params)
    params[:, -2:] = 10.0  # biases
    return net, params


def test_maze_task_contract_and_registration():
    assert TASKS.get("maze") is MazeTask and TASKS.get("hard_maze") is MazeTask
    task = MazeTask(steps=30)
    assert (task.in_features, task.out_features) == (10, 2)
    net = PopulationMLP([task.in_features, 6, task.out_features], output_activation="tanh")
    pop = torch.stack([net.init_params(torch.Generator().manual_seed(i)) for i in range(7)])
    fit = task.evaluate(net, pop, generation=3)
    assert fit.values.shape == (7,) and fit.descriptors.shape == (7, 2) and fit.steps == 7 * 30
    goal = torch.tensor(HARD_MAZE.goal)
    assert torch.allclose(fit.values, -(fit.descriptors - goal).norm(dim=1))
    # batched = one by one, and deterministic across streams
    for i in (0, 4):
        one = task.evaluate(net, pop[i : i + 1], generation=3, stream=2)
        assert torch.allclose(one.descriptors[0], fit.descriptors[i], atol=1e-4)
    assert set(task.history) == {3}
    with pytest.raises(ValueError):
        MazeTask.Params(bogus=1)
    with pytest.raises(ConfigError):
        MazeTask(maze="nope")


def test_straight_path_ends_in_the_dead_end_below_the_goal():
    task = MazeTask()
    net, params = straight_driver(task, 2)
    fit = task.evaluate(net, params)
    x, y = fit.descriptors[0].tolist()
    assert x == pytest.approx(HARD_MAZE.start[0], abs=1e-3)
    assert 110 < y < 120  # stopped under the divider; the goal is right above it
    assert -63 < float(fit.values[0]) < -54
    assert fit.metrics["success_rate"] == 0.0
    assert task.validate(net, params[0])["solved"] == 0.0


def test_robots_never_pass_through_walls():
    task = MazeTask(steps=80)
    net = PopulationMLP([task.in_features, 8, task.out_features], output_activation="tanh")
    gen = torch.Generator().manual_seed(1)
    pop = torch.randn(40, net.num_params, generator=gen) * 2
    fit = task.evaluate(net, pop)
    pos = fit.descriptors
    assert (segment_distance(pos, task.walls).amin(1) > task.robot_radius - 1e-4).all()
    assert ((pos > 0) & (pos < 200)).all()
    assert len({tuple(p) for p in pos.round(decimals=1).tolist()}) > 20  # diverse behaviours


def test_plot_maze_positions_writes_png(tmp_path):
    task = MazeTask(steps=10)
    net = PopulationMLP([task.in_features, 4, task.out_features], output_activation="tanh")
    for g in range(3):
        pop = torch.randn(5, net.num_params, generator=torch.Generator().manual_seed(g))
        task.evaluate(net, pop, generation=g)
    out = plot_maze_positions(task.history, task, tmp_path / "sub" / "maze.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    as_list = plot_maze_positions([task.history[g] for g in range(3)], "hard", tmp_path / "list.png")
    assert as_list.stat().st_size > 1000
    files = task.write_report(tmp_path / "report")
    assert [f.name for f in files] == ["maze_positions.png"] and files[0].exists()
    # records go to report/maze_positions.jsonl; a fresh task (a resumed run) draws them from there
    recorded = {g: p.clone() for g, p in task.history.items()}
    assert task.write_records(tmp_path / "rec").name == "maze_positions.jsonl" and not task.history
    restored = MazeTask(steps=10)
    assert restored.write_report(tmp_path / "rec")[0].exists()
    back = read_maze_positions(tmp_path / "rec" / "maze_positions.jsonl")
    assert sorted(back) == [0, 1, 2]
    assert torch.allclose(back[2], recorded[2], atol=1e-3)


def test_maze_checkpoint_state_does_not_grow_with_generations(tmp_path):
    task = MazeTask(steps=5)
    net = PopulationMLP([task.in_features, 4, task.out_features], output_activation="tanh")
    pop = torch.randn(6, net.num_params, generator=torch.Generator().manual_seed(0))
    sizes = []
    for g in range(30):
        task.evaluate(net, pop, generation=g)
        if g % 10 == 9:
            sizes.append(len(json.dumps(task.state_dict())))
            task.write_records(tmp_path)  # what the runtime does at every checkpoint
            assert len(task.history) == 0
    assert sizes == [sizes[0]] * 3
    assert sorted(read_maze_positions(tmp_path / "maze_positions.jsonl")) == list(range(30))


def test_maze_run_records_positions_in_the_report_and_resumes(tmp_path):
    from neuroevo.runtime.evolve import evolve
    from neuroevo.runtime.rundir import RunDir

    def run(generations: int, resume: bool):
        task = MazeTask(steps=20)
        net = PopulationMLP([task.in_features, 4, task.out_features], output_activation="tanh")
        cls = STRATEGIES.get("ns_ga")
        strategy = cls.from_params(cls.Params(population_size=12, truncation=4), phenotype=net, seed=1)
        evolve(
            strategy, net, task, generations=generations, run_dir=tmp_path, checkpoint_every=2, resume=resume
        )

    run(5, resume=False)
    _, state = RunDir(tmp_path).latest_checkpoint()
    assert state["task"] == {}  # positions are not in the checkpoint
    run(9, resume=True)
    history = read_maze_positions(tmp_path / "report" / "maze_positions.jsonl")
    assert sorted(history) == list(range(9)) and history[8].shape == (12, 2)
    assert (tmp_path / "report" / "maze_positions.png").stat().st_size > 1000


# -- the deceptive result (slow) --------------------------------------------------------------------


def maze_run(name: str, seed: int, generations: int, **extra) -> int | None:
    """Generation at which some member reaches the goal, or None."""
    task = MazeTask(record_history=False)
    net = PopulationMLP([task.in_features, 8, task.out_features], output_activation="tanh")
    cls = STRATEGIES.get(name)
    params = cls.Params(population_size=100, truncation=20, mutation_power=0.2, **extra)
    strategy = cls.from_params(params, phenotype=net, seed=seed)
    for g in range(generations):
        fit = task.evaluate(net, strategy.ask(), g)
        if fit.metrics["success_rate"] > 0:
            return g
        strategy.tell(fit)
    return None


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitness_ga_gets_stuck_and_novelty_search_reaches_the_goal(seed):
    assert maze_run("ga", seed, 60) is None
    solved_at = maze_run("ns_ga", seed, 150)
    assert solved_at is not None and solved_at < 150
