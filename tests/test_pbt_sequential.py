"""PBT's sequential mode: a list of modules + optimisers, a member step of (state, hyperparams, data)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuroevo.core import random as nrandom
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.runtime.rundir import TIMING_FIELDS, RunDir
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.pbt import PBTSupervised
from neuroevo.tasks.pbt_sequential import PBTSequential, set_optimizer_hyperparams

SEED, SIZE, BATCH = 3, 6, 16
SPACE = {"lr": {"low": 1e-3, "high": 0.5, "log": True}, "momentum": {"low": 0.0, "high": 0.95}}
NET = TrainableMLP([4, 8, 3])
DATA = PBTSupervised(dataset="iris", seed=SEED).data


def _init(member: int, generator: torch.Generator) -> dict:
    # the stacked task's init, so both modes start from the same weights
    flat = NET.init_params(nrandom.member_generator(SEED, 0, member, "pbt_init_weights"))
    model = NET.to_module(flat)
    return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}


def _data(generation: int, step: int, member: int) -> torch.Tensor:
    # the stacked task's minibatch for this member and step
    n = DATA.x_train.shape[0]
    gen = nrandom.member_generator(SEED, generation, step, "pbt_batch")
    return torch.randint(n, (SIZE, BATCH), generator=gen)[member]


def _step(state: dict, hyperparams: dict, idx: torch.Tensor) -> float:
    set_optimizer_hyperparams(state["optimizer"], hyperparams)
    state["optimizer"].zero_grad()
    loss = F.cross_entropy(state["model"](DATA.x_train[idx]), DATA.y_train[idx])
    loss.backward()
    state["optimizer"].step()
    return float(loss.detach())


def _evaluate(state: dict) -> float:
    with torch.no_grad():
        return float((state["model"](DATA.x_val).argmax(-1) == DATA.y_val).float().mean())


def _sequential() -> PBTSequential:
    return PBTSequential(_init, _step, _evaluate, data=_data, seed=SEED)


def _pbt() -> PBT:
    return PBT(SIZE, space=SPACE, ready_every=5, seed=SEED)


def test_sequential_mode_follows_the_stacked_trainer_through_exploits():
    seq, stacked = _sequential(), PBTSupervised(dataset="iris", seed=SEED, batch_size=BATCH)
    a, b = _pbt(), _pbt()
    exploited = 0.0
    for generation in range(6):
        pa, pb = a.ask(), b.ask()
        assert torch.equal(pa.parents, pb.parents)
        fa = seq.evaluate(None, pa, generation)
        fb = stacked.evaluate(NET, pb, generation)
        exploited += a.tell(fa.values)["exploited"]
        b.tell(fb.values)
    assert exploited >= 5 and int(a.state.member_steps.max()) == 30
    for i, member in enumerate(seq.members):
        for name, p in member["model"].named_parameters():
            assert torch.allclose(stacked.weights[name][i], p.detach(), atol=1e-5), (i, name)


def test_sequential_exploit_copies_the_snapshot_exactly():
    seq, pbt = _sequential(), _pbt()
    for generation in range(2):
        pop = pbt.ask()
        pbt.tell(seq.evaluate(None, pop, generation).values)
    saved = [{k: v for k, v in s.items()} for s in seq.state_dict()["saved"]]
    parents = pbt.state.parents
    seq.apply_exploit(parents)
    for i in torch.nonzero(parents >= 0).flatten().tolist():
        source = saved[int(parents[i])]["model"]
        for name, value in seq.members[i]["model"].state_dict().items():
            assert torch.equal(value, source[name])
        moments = seq.members[i]["optimizer"].state_dict()["state"]
        for key, entry in saved[int(parents[i])]["optimizer"]["state"].items():
            assert torch.equal(moments[key]["momentum_buffer"], entry["momentum_buffer"])


def test_sequential_resume_is_bit_identical(tmp_path):
    evolve(_pbt(), None, _sequential(), generations=6, run_dir=tmp_path / "full", checkpoint_every=2)
    evolve(_pbt(), None, _sequential(), generations=3, run_dir=tmp_path / "part", checkpoint_every=2)
    evolve(
        _pbt(), None, _sequential(), generations=6, run_dir=tmp_path / "part", checkpoint_every=2, resume=True
    )

    def lines(path):
        return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in RunDir(path).read_metrics()]

    assert lines(tmp_path / "full") == lines(tmp_path / "part")
    assert (tmp_path / "full" / "pbt.jsonl").read_bytes() == (tmp_path / "part" / "pbt.jsonl").read_bytes()


def test_a_failing_member_fails_alone_and_is_replaced():
    def flaky(state: dict, hyperparams: dict, idx: torch.Tensor) -> float:
        if state.get("fail"):
            raise FloatingPointError("diverged")
        return _step(state, hyperparams, idx)

    def init(member: int, generator: torch.Generator) -> dict:
        return _init(member, generator)

    seq = PBTSequential(init, flaky, _evaluate, data=_data, seed=SEED, member_errors="nan")
    pbt = _pbt()
    pbt.tell(seq.evaluate(None, pbt.ask(), 0).values)
    seq.members[2]["fail"] = True  # member 2 breaks during the next interval
    fitness = seq.evaluate(None, pbt.ask(), 1)
    assert fitness.metrics["failed_members"] == 1 and torch.isnan(fitness.values[2])
    assert torch.isfinite(fitness.values[[0, 1, 3, 4, 5]]).all()  # the others trained on
    for name, value in seq.members[2]["model"].state_dict().items():
        assert torch.equal(value, seq.saved[2]["model"][name])  # back to its saved state
    pbt.tell(fitness.values)
    assert pbt.state.parents[2] >= 0  # NaN counts as the worst: it copies a good member next
    pbt.tell(seq.evaluate(None, pbt.ask(), 2).values)
    strict = PBTSequential(init, flaky, _evaluate, data=_data, seed=SEED)
    strict.evaluate(None, _pbt().ask(), 0)
    strict.members[0]["fail"] = True
    import pytest

    with pytest.raises(FloatingPointError):
        strict.evaluate(None, _pbt().ask(), 1)
