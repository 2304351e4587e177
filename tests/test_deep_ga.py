"""Seed-chain Deep GA: equivalence with the plain GA, reconstruction, resume, elite re-evaluation."""

from __future__ import annotations

import json

import pytest
import torch

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.nn import PopulationMLP
from neuroevo.strategies import GA, STRATEGIES, SeedGA, reconstruct
from neuroevo.strategies.deep_ga import reconstruct_many

TARGET = torch.linspace(-1, 1, 3 * 5 + 5 + 5 * 2 + 2)


def small_net() -> PopulationMLP:
    return PopulationMLP([3, 5, 2], activation="tanh")


def noisy_fitness(pop: torch.Tensor, generation: int, stream: int = 0) -> torch.Tensor:
    """A cheap noisy objective: -distance to TARGET plus noise keyed like a task's episodes."""
    noise = nrandom.normal(pop.shape[0], 7, generation, stream, "episodes", dtype=torch.float64)
    return -((pop.double() - TARGET) ** 2).sum(1) + 0.05 * noise


def run(strategy: SeedGA, generations: int, start: int = 0, *, reevaluate: bool = True) -> list[torch.Tensor]:
    """A hand-written runtime loop: ask, evaluate, tell, then the elite re-evaluation hook."""
    seen = []
    for g in range(start, start + generations):
        pop = strategy.ask()
        seen.append(pop.clone())
        strategy.tell(noisy_fitness(pop, g))
        request = strategy.reevaluation_request()
        if request is not None and reevaluate:
            candidates, streams = request
            values = torch.stack([noisy_fitness(candidates, g, s) for s in range(1, streams + 1)]).mean(0)
            strategy.tell_reevaluation(values)
    return seen


def make(**kw) -> SeedGA:
    params = dict(population_size=16, truncation=5, mutation_power=0.05, reeval_streams=3, elite_candidates=4)
    params.update(kw)
    return SeedGA.from_params(SeedGA.Params(**params), phenotype=small_net(), seed=11)


def test_registered_with_alias_and_documented_defaults():
    assert STRATEGIES.get("seed_ga") is SeedGA
    assert STRATEGIES.get("deep_ga_seeds") is SeedGA
    params = SeedGA.Params()
    assert params.elite_candidates == 10 and params.reeval_streams == 10
    for name, info in SeedGA.Params.model_fields.items():
        assert info.description, name
    with pytest.raises(ValueError):
        SeedGA.Params(bogus=1)


def test_same_populations_as_plain_ga_without_reevaluation():
    net = small_net()
    ga = GA.from_params(GA.Params(population_size=12, truncation=4), phenotype=net, seed=5)
    sg = SeedGA.from_params(
        SeedGA.Params(population_size=12, truncation=4, reeval_streams=0), phenotype=net, seed=5
    )
    for g in range(6):
        a, b = ga.ask(), sg.ask()
        assert torch.equal(a, b), f"generation {g}"
        fit = noisy_fitness(a, g)
        ga.tell(fit)
        sg.tell(fit)
        assert sg.reevaluation_request() is None


def test_every_member_and_best_reconstruct_bit_identically():
    sg = make(mutation_decay=0.9)  # a schedule: every mutation carries its own power
    run(sg, 8)
    pop = sg.ask()
    for i in range(sg.population_size):
        genome = json.loads(json.dumps(sg.genome(i)))
        assert torch.equal(reconstruct(genome), pop[i])
    best = json.loads(json.dumps(sg.best_genome))
    assert "sigmas" in best and len(best["sigmas"]) == len(best["seeds"]) - 1
    rebuilt = reconstruct(best)  # the genome carries the phenotype spec: no run needed
    assert torch.equal(rebuilt, sg.best.params)
    # the reconstructed network computes exactly what the evaluated member computed
    net = small_net()
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(net.to_module(rebuilt)(x), net.to_module(sg.best.params)(x))
    # explicit arguments: a seed list, an initialiser and one sigma per mutation
    same = reconstruct(best["seeds"], net.init_params, best["sigmas"], num_params=net.num_params)
    assert torch.equal(same, rebuilt)


def test_constant_power_genome_stores_one_sigma():
    sg = make()
    run(sg, 3)
    genome = sg.genome(sg.population_size - 1)
    assert genome["sigma"] == 0.05 and "sigmas" not in genome
    assert len(genome["seeds"]) == 4  # init + one mutation per generation for a child


def test_reconstruct_many_shares_prefixes_and_matches_one_by_one():
    init = small_net().init_params
    d = small_net().num_params
    chains = [[1, 2, 3], [1, 2, 4], [1, 2], [9], [1, 2, 3]]
    powers = [[0.1, 0.2], [0.1, 0.3], [0.1], [], [0.1, 0.2]]
    many = reconstruct_many(chains, powers, init, d)
    for c, p, row in zip(chains, powers, many, strict=True):
        assert torch.equal(reconstruct(c, init, p, num_params=d), row)
    assert torch.equal(many[0], many[4])
    assert not torch.equal(many[0], many[1])


def test_state_dict_is_json_only_and_resume_is_bit_identical():
    reference = make(mutation_decay=0.95)
    ref_pops = run(reference, 10)

    first = make(mutation_decay=0.95)
    run(first, 5)
    state = json.loads(json.dumps(first.state_dict()))  # raises if anything is a tensor
    assert state["best"]["params"] is None
    resumed = make(mutation_decay=0.95)
    resumed.load_state_dict(state)
    assert torch.equal(resumed.best.params, first.best.params)
    pops = run(resumed, 5, start=5)
    for g, (a, b) in enumerate(zip(ref_pops[5:], pops, strict=True)):
        assert torch.equal(a, b), f"generation {5 + g}"
    assert reference.best.fitness == resumed.best.fitness
    assert torch.equal(reference.best.params, resumed.best.params)
    assert reference.best_genome == resumed.best_genome


def test_resume_between_tell_and_reevaluation():
    a, b = make(), make()
    run(a, 3)
    run(b, 2)
    pop = b.ask()
    b.tell(noisy_fitness(pop, 2))
    state = json.loads(json.dumps(b.state_dict()))
    c = make()
    c.load_state_dict(state)
    candidates, streams = c.reevaluation_request()
    assert torch.equal(candidates, b.reevaluation_request()[0])
    c.tell_reevaluation(torch.stack([noisy_fitness(candidates, 2, s) for s in range(1, streams + 1)]).mean(0))
    assert torch.equal(c.ask(), a.ask())


def test_elite_is_the_best_candidate_after_reevaluation():
    sg = make(elites=1, elite_candidates=4)
    pop = sg.ask()
    fit = noisy_fitness(pop, 0)
    sg.tell(fit)
    order = torch.argsort(fit, descending=True, stable=True)
    assert torch.equal(sg.population[0], pop[order[0]])  # provisional elite: top by one evaluation
    candidates, streams = sg.reevaluation_request()
    assert streams == 3 and candidates.shape == (4, pop.shape[1])
    assert torch.equal(candidates, pop[order[:4]])
    stats = sg.tell_reevaluation(torch.tensor([0.0, 1.0, float("nan"), 3.0]))  # candidate 3 wins
    assert stats["elite_candidate"] == 3.0
    assert torch.equal(sg.ask()[0], pop[order[3]])
    assert torch.equal(reconstruct(sg.genome(0)), pop[order[3]])
    with pytest.raises(RuntimeError):
        sg.tell_reevaluation(torch.zeros(4))


def test_reevaluation_checks_and_skipping():
    sg = make()
    pop = sg.ask()
    sg.tell(noisy_fitness(pop, 0))
    with pytest.raises(ValueError):
        sg.tell_reevaluation(torch.zeros(3))
    sg.ask()  # the runtime went on without re-evaluating: the request is dropped
    assert sg.reevaluation_request() is None
    assert make(elites=0).reevaluation_request() is None


def test_mutation_power_schedule():
    sg = make(mutation_power=0.1, mutation_decay=0.5, mutation_min=0.03)
    powers = []
    for g in range(4):
        pop = sg.ask()
        powers.append(sg.tell(noisy_fitness(pop, g))["mutation_power"])
    assert powers == [0.1, 0.05, 0.03, 0.03]


def test_without_phenotype_uses_scaled_normal_init():
    sg = SeedGA(6, 4, truncation=2, init_std=0.5, seed=1, reeval_streams=0)
    row = sg.ask()[2]
    assert torch.equal(row, 0.5 * nrandom.normal(6, 1, 0, 2, "init"))
    assert torch.equal(reconstruct(sg.genome(2)), row)


# -- does as well as the plain GA (slow) ------------------------------------------------------------


def evolve_elite(strategy, task, net, generations: int, stop=None) -> torch.Tensor:
    """Run ask/tell (+ the re-evaluation hook on streams 1..n) and return the final elite."""
    for g in range(generations):
        pop = strategy.ask()
        strategy.tell(task.evaluate(net, pop, g))
        request = getattr(strategy, "reevaluation_request", lambda: None)()
        if request is not None:
            candidates, streams = request
            values = [task.evaluate(net, candidates, g, stream=s).values for s in range(1, streams + 1)]
            strategy.tell_reevaluation(torch.stack(values).mean(0))
        if stop is not None and g % 2 == 1 and stop(strategy.ask()[0]):
            break
    return strategy.ask()[0]


@pytest.mark.slow
def test_seed_chain_ga_solves_digits_like_the_plain_ga():
    from neuroevo.tasks import Digits

    accuracy = {}
    for cls, extra in ((GA, {}), (SeedGA, {"elite_candidates": 5, "reeval_streams": 3})):
        task = Digits(batch_size=256, seed=0)
        net = PopulationMLP([64, 16, 10])
        params = cls.Params(population_size=64, truncation=10, mutation_power=0.05, **extra)
        strategy = cls.from_params(params, phenotype=net, seed=0)
        elite = evolve_elite(strategy, task, net, 100)
        accuracy[cls.name] = task.validate(net, elite)["val_accuracy"]
    assert accuracy["ga"] > 0.6 and accuracy["seed_ga"] > 0.6, accuracy  # chance is 0.1
    assert accuracy["seed_ga"] >= accuracy["ga"] - 0.08, accuracy


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_seed_chain_ga_solves_cartpole_like_the_plain_ga(seed):
    control = pytest.importorskip("neuroevo.tasks.control")
    for cls, extra in ((GA, {}), (SeedGA, {"elite_candidates": 4, "reeval_streams": 2})):
        task = control.ControlTask(env="CartPole-v1", episodes=3, eval_episodes=20, seed=seed)
        net = PopulationMLP([task.in_features, 16, task.out_features])
        params = cls.Params(population_size=32, truncation=8, mutation_power=0.1, **extra)
        strategy = cls.from_params(params, phenotype=net, seed=seed)

        def solved(elite, task=task, net=net):
            return task.validate(net, elite)["eval_return_mean"] >= 475

        elite = evolve_elite(strategy, task, net, 30, stop=solved)
        assert solved(elite), cls.name


def test_members_as_seeds_rebuild_the_asked_rows_and_candidates():
    """``member_recipe()`` (the trie of seed chains) rebuilds ``ask()``'s rows bit for bit, in any
    range; likewise the elite candidates of the re-evaluation."""
    from neuroevo.core.contracts import RegeneratesMembers
    from neuroevo.runtime.ray_executor import nbytes

    ga = make(population_size=40, truncation=6)
    assert isinstance(ga, RegeneratesMembers)
    shared = ga.member_recipe().shared
    for g in range(8):
        pop = ga.ask()
        recipe = ga.member_recipe()
        assert recipe.shared is shared  # the run-long part: one object, sent once
        assert len(recipe) == 40 and torch.equal(recipe.rows(0, 40), pop)
        assert torch.equal(recipe.rows(13, 29), pop[13:29])
        chains, _ = recipe.chains(0, 40)
        assert chains == ga.chains
        ga.tell(noisy_fitness(pop, g))
        candidates, streams = ga.reevaluation_request()
        assert torch.equal(ga.reevaluation_recipe().rows(0, len(candidates)), candidates)
        ga.tell_reevaluation(
            torch.stack([noisy_fitness(candidates, g, s) for s in range(1, streams + 1)]).mean(0)
        )
    # the trie holds each shared ancestor once: far fewer nodes than members x chain length, and
    # its bytes (24 per node, 8 per member) do not grow with the network
    nodes = recipe.seed.numel()
    assert nodes < 40 * 8 / 2 and nbytes(recipe) == 24 * nodes + 8 * 40


def test_seeds_beyond_63_bits_survive_the_trie():
    from neuroevo.strategies.deep_ga import SeedChainInit, SeedChainMembers

    init = SeedChainInit(None, 7, 0.1, torch.float32)
    chains, powers = [[2**64 - 5, 3], [2**64 - 5, 2**63 + 1]], [[0.5], [0.25]]
    recipe = SeedChainMembers.of(chains, powers, init)
    assert recipe.chains(0, 2) == (chains, powers) and recipe.seed.numel() == 3
    expected = reconstruct_many(chains, powers, None, 7, init_std=0.1)
    assert torch.equal(recipe.rows(0, 2), expected)


def test_genome_of_another_noise_generator_is_refused():
    """A genome records the generator that drew it; one drawn by another is refused, not rebuilt
    into different weights. A genome from before versions were recorded is version 1."""
    sg = make()
    run(sg, 2)
    genome = json.loads(json.dumps(sg.genome(0)))
    assert genome["noise"] == nrandom.NOISE_VERSION
    unversioned = {k: v for k, v in genome.items() if k != "noise"}
    assert torch.equal(reconstruct(unversioned), reconstruct(genome))
    with pytest.raises(ConfigError, match=r"noise = 'philox4x32-10/1'.*draws 'splitmix64-mt19937/1'"):
        reconstruct({**genome, "noise": "philox4x32-10/1"})
