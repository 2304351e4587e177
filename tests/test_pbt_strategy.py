"""PBT's strategy side: the search space, exploit, explore, PB2, bounds, state."""

from __future__ import annotations

import math

import pytest
import torch

from neuroevo.config import validate_config
from neuroevo.core.errors import ConfigError
from neuroevo.strategies import STRATEGIES
from neuroevo.strategies.pbt import PBT, SearchSpace
from neuroevo.strategies.pbt import exploit as rules

SPACE = {
    "lr": {"low": 1e-4, "high": 1e-1, "log": True},
    "momentum": {"low": 0.0, "high": 0.99},
    "batch_size": {"type": "integer", "low": 16, "high": 128},
    "layers": {"type": "integer", "low": 1, "high": 64, "log": True},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
}


def test_registered_and_config_pairs_with_trainable_network():
    assert STRATEGIES.get("pbt") is PBT
    cfg = validate_config(
        {
            "task": {"name": "pbt_supervised"},
            "network": {"type": "trainable_mlp"},
            "strategy": {"name": "pbt", "space": {"lr": {"low": 0.001, "high": 0.1, "log": True}}},
        }
    )
    assert cfg.strategy.space["lr"].log and cfg.to_toml()


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"low": 1.0, "high": 0.1}, "reversed or empty bounds"),
        ({"low": 0.5, "high": 0.5}, "reversed or empty bounds"),
        ({"type": "integer", "low": 8, "high": 2}, "reversed or empty bounds"),
        ({"low": 0.0, "high": 1.0, "log": True}, "log = true needs low > 0"),
        ({"type": "categorical", "choices": ["a"]}, "at least 2"),
        ({"low": 0.1}, "needs both low and high"),
    ],
)
def test_bad_bounds_are_config_errors(spec, words):
    with pytest.raises(ConfigError, match=words) as err:
        SearchSpace({"lr": spec})
    assert "strategy.space.lr" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match=words) as err:  # the same through a TOML config
        validate_config(
            {
                "task": {"name": "pbt_supervised"},
                "network": {"type": "trainable_mlp"},
                "strategy": {"name": "pbt", "space": {"lr": spec}},
            }
        )
    assert str(err.value).startswith("strategy.space.lr")
    with pytest.raises(ConfigError):
        PBT(space={"lr": spec})


def test_empty_space_is_a_config_error():
    with pytest.raises(ConfigError, match="empty search space"):
        SearchSpace({})


def test_perturb_factors_log_space_integer_and_categorical():
    space = SearchSpace(SPACE)
    values = torch.tensor([[1e-2, 0.5, 50.0, 8.0, 1.0]], dtype=torch.float64)
    up = torch.full((1, 5), 1.2, dtype=torch.float64)
    no = torch.zeros(1, 5, dtype=torch.bool)
    u = torch.zeros(1, 5, dtype=torch.float64)
    out = space.perturb(values, up, no, u)
    assert out[0, 0] == pytest.approx(1.2e-2) and out[0, 1] == pytest.approx(0.6)
    assert out[0, 2] == 60 and out[0, 3] == 10 and out[0, 4] == 2  # int 8 * 1.2 = 9.6 -> 10; next choice
    down = space.perturb(values, up * 0 + 0.8, no, u)
    assert down[0, 4] == 0 and down[0, 2] == 40
    # an integer that a factor cannot move (1 * 1.2 rounds to 1) still moves by one
    small = space.perturb(torch.tensor([[1e-2, 0.5, 16.0, 1.0, 2.0]], dtype=torch.float64), up, no, u)
    assert small[0, 3] == 2 and small[0, 4] == 1  # last choice moving up: its only neighbour
    # resampling draws from the prior (log-uniform for lr)
    fresh = space.perturb(values, up, torch.ones(1, 5, dtype=torch.bool), torch.full((1, 5), 0.5).double())
    assert fresh[0, 0] == pytest.approx(math.sqrt(1e-4 * 1e-1)) and fresh[0, 4] == 1


def test_clip_and_reflect_at_the_bounds():
    space = SearchSpace({"lr": {"low": 1e-3, "high": 1e-1, "log": True}, "m": {"low": 0.0, "high": 1.0}})
    values = torch.tensor([[0.09, 0.9]], dtype=torch.float64)
    f = torch.full((1, 2), 1.5, dtype=torch.float64)
    no = torch.zeros(1, 2, dtype=torch.bool)
    u = torch.zeros(1, 2, dtype=torch.float64)
    clipped = space.perturb(values, f, no, u, "clip")
    assert clipped[0, 0] == pytest.approx(0.1) and clipped[0, 1] == 1.0
    reflected = space.perturb(values, f, no, u, "reflect")
    # 0.09 * 1.5 = 0.135: log-space overshoot log(1.35) is reflected to 0.1 / 1.35
    assert reflected[0, 0] == pytest.approx(0.1 / 1.35) and reflected[0, 1] == pytest.approx(0.65)


@pytest.mark.parametrize("explore", ["perturb", "pb2"])
@pytest.mark.parametrize("bounds", ["clip", "reflect"])
@pytest.mark.parametrize("exploit", ["truncation", "tournament"])
def test_property_no_hyperparameter_ever_leaves_its_bounds(explore, bounds, exploit):
    """Many random ready events, with factors that overshoot on purpose: every value stays legal."""
    gen = torch.Generator().manual_seed(7)
    generations = 8 if explore == "pb2" else 60
    for seed in range(1 if explore == "pb2" else 4):
        pbt = PBT(
            12,
            space=SPACE,
            ready_every=10,
            exploit=exploit,
            explore=explore,
            bounds=bounds,
            perturb_factors=[0.05, 0.5, 3.0, 40.0],
            resample_probability=0.1,
            pb2_candidates=32,
            seed=seed,
        )
        exploited = 0
        for _ in range(generations):
            pop = pbt.ask()
            assert bool(pbt.space.contains(pop.values).all()), pop.values
            fitness = torch.randn(12, generator=gen)
            fitness[int(torch.randint(12, (1,), generator=gen))] = float("nan")  # a failed member
            stats = pbt.tell(fitness)
            exploited += int(stats["exploited"])
            parents = pbt.state.parents
            assert bool(((parents == -1) | ((parents >= 0) & (parents < 12))).all())
            assert not bool((parents == torch.arange(12)).any())  # never copies itself
        assert exploited > generations  # the events really exploited
        assert bool(pbt.space.contains(pbt.state.values).all())


def test_truncation_bottom_copies_top():
    fitness = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.8, 0.2, 0.7, 0.0])
    parents = rules.truncation(fitness, 0.25, torch.tensor([0.99, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    # P = 8, fraction 0.25: the bottom two (members 7 and 0) copy one of the top two (1 and 4)
    assert parents[7] == 1 and parents[0] == 4
    assert (parents[1:7] == -1).all()


def test_tournament_copies_only_better():
    fitness = torch.tensor([0.0, 1.0, 2.0, 3.0])
    parents = rules.tournament(fitness, torch.zeros(4))  # everyone meets the next member
    assert parents.tolist() == [1, 2, 3, -1]


def test_exploited_member_starts_from_parent_values_and_ages_reset():
    pbt = PBT(8, space=SPACE, ready_every=5, resample_probability=0.0, perturb_factors=[1.2], seed=3)
    before = pbt.ask().values.clone()
    fitness = torch.arange(8, dtype=torch.float64)
    pbt.tell(fitness)
    after = pbt.ask()
    for i in torch.nonzero(after.parents >= 0).flatten().tolist():
        parent = int(after.parents[i])
        assert fitness[parent] > fitness[i]
        assert after.values[i, 0] == pytest.approx(min(before[parent, 0] * 1.2, 0.1))
        assert pbt.state.ages[i] == 0
    assert int(pbt.state.ages.max()) == 5 and int(pbt.state.member_steps.max()) == 5


def _drive(pbt: PBT, start: int, stop: int) -> list[torch.Tensor]:
    out = []
    for g in range(start, stop):
        pop = pbt.ask()
        out.append(pop.values.clone())
        pbt.tell(torch.sin(torch.arange(pbt.population_size, dtype=torch.float64) * (g + 1)))
    return out


@pytest.mark.parametrize("explore", ["perturb", "pb2"])
def test_state_dict_round_trip_continues_identically(explore):
    from neuroevo.runtime.storage import join_tensors, split_tensors

    make = lambda: PBT(10, space=SPACE, ready_every=3, explore=explore, pb2_candidates=16, seed=5)  # noqa: E731
    straight = make()
    full = _drive(straight, 0, 8)
    first = make()
    _drive(first, 0, 4)
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(first.state_dict(), tensors)  # what a checkpoint stores
    resumed = make()
    resumed.load_state_dict(join_tensors(tree, tensors))
    rest = _drive(resumed, 4, 8)
    for a, b in zip(full[4:], rest, strict=True):
        assert torch.equal(a, b)
    if explore == "pb2":
        assert resumed.state.pb2_y.numel() > 0 and torch.equal(straight.state.pb2_x, resumed.state.pb2_x)


def test_pb2_moves_towards_the_better_region():
    """On a bandit where fitness gain grows with lr, PB2 picks higher lr than the parents have."""
    space = {"lr": {"low": 0.0, "high": 1.0}}
    pbt = PBT(8, space=space, ready_every=1, explore="pb2", pb2_candidates=64, pb2_kappa=0.5, seed=2)
    fitness = torch.zeros(8, dtype=torch.float64)
    for _ in range(6):
        values = pbt.ask().values[:, 0]
        fitness = pbt.state.start_fitness.nan_to_num(0.0) + values  # gain = lr
        pbt.tell(fitness)
    assert float(pbt.state.values[:, 0].mean()) > 0.7


def test_bad_strategy_arguments_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"^PBT: truncation_fraction = 0.9: .*less than or equal to 0.5"):
        PBT(space={"lr": {"low": 0.1, "high": 1.0}}, truncation_fraction=0.9)
    with pytest.raises(ConfigError, match=r"^PBT: perturb_factors = \[1.0\]"):
        PBT(space={"lr": {"low": 0.1, "high": 1.0}}, perturb_factors=[1.0])


def test_failed_members_always_copy_beyond_the_bottom_fraction():
    nan = float("nan")
    fitness = torch.tensor([0.5, nan, 0.9, nan, 0.7, 0.1, nan, 0.8], dtype=torch.float64)
    pbt = PBT(8, space={"lr": {"low": 0.1, "high": 1.0}}, seed=0)
    pbt.ask()
    pbt.tell(fitness)
    parents = pbt.state.parents
    replaced = set(torch.nonzero(parents >= 0).flatten().tolist())
    assert {1, 3, 6} <= replaced  # three failures, more than the bottom quarter (2)
    assert set(parents[parents >= 0].tolist()) <= {2, 7}  # they copy the top quarter
    assert rules.tournament(torch.zeros(3), torch.zeros(3), torch.tensor([True, False, False]))[0] == 1
