"""PBT through the runtime: TOML config, `neuroevo run`/`resume`, checkpoints, best/, pbt.jsonl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from neuroevo.config import build, load_config
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.runtime.rundir import TIMING_FIELDS, RunDir
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.pbt import PBTSupervised

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits_pbt.toml"


def _deterministic(lines: list[dict]) -> list[dict]:
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


def _make(explore: str):
    space = {
        "lr": {"low": 1e-3, "high": 0.3, "log": True},
        "beta1": {"low": 0.5, "high": 0.95},
        "batch_size": {"type": "integer", "low": 8, "high": 48},
        "dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.3]},
    }
    strategy = PBT(6, space=space, ready_every=6, explore=explore, pb2_candidates=32, seed=11)
    return strategy, TrainableMLP([4, 8, 3]), PBTSupervised(dataset="iris", optimizer="adamw", seed=11)


@pytest.mark.parametrize("explore", ["perturb", "pb2"])
def test_resume_is_bit_identical_scheduler_state_included(tmp_path, explore):
    full = evolve(*_make(explore), generations=9, run_dir=tmp_path / "full", checkpoint_every=3)
    evolve(*_make(explore), generations=5, run_dir=tmp_path / "part", checkpoint_every=3)
    strategy, net, task = _make(explore)
    resumed = evolve(
        strategy, net, task, generations=9, run_dir=tmp_path / "part", checkpoint_every=3, resume=True
    )
    a, b = RunDir(tmp_path / "full"), RunDir(tmp_path / "part")
    assert _deterministic(a.read_metrics()) == _deterministic(b.read_metrics())
    assert torch.equal(full.best.params, resumed.best.params)
    for name in ("pbt.jsonl", "best/schedule.json", "best/params.safetensors"):
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    state_a, state_b = (
        a.latest_checkpoint()[1]["strategy"]["state"],
        b.latest_checkpoint()[1]["strategy"]["state"],
    )
    for key in ("values", "parents", "ages", "member_steps", "pb2_x", "pb2_y", "best_member"):
        assert torch.equal(state_a[key], state_b[key]), key
    if explore == "pb2":
        assert strategy.state.pb2_y.numel() > 0
    events = [json.loads(line) for line in (a.path / "pbt.jsonl").read_text().splitlines()]
    assert len(events) == 9 * 6
    assert {"member", "step", "parent", "old", "new", "fitness"} <= set(events[0])
    assert any(e["exploited"] and e["parent"] != e["member"] for e in events)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    import neuroevo.nn.stacked as stacked
    import neuroevo.runtime.rundir as rundir
    where, limit = sys.argv.pop(1), int(sys.argv.pop(1))
    calls = [0]

    def dying(real):
        def call(self, *a, **k):
            calls[0] += 1
            if calls[0] == limit:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *a, **k)
        return call

    if where == "step":  # SIGKILL in the middle of a ready interval
        stacked.VectorSGD.step = dying(stacked.VectorSGD.step)
    else:  # SIGKILL after pbt.jsonl got the interval's records, before the checkpoint that counts them
        rundir.RunDir.write_checkpoint = dying(rundir.RunDir.write_checkpoint)
    from neuroevo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _short_config(tmp_path: Path, generations: int, ready_every: int) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("generations = 20 ", f"generations = {generations} ")
    text = text.replace("ready_every = 100", f"ready_every = {ready_every}")
    text = text.replace("checkpoint_every = 5", "checkpoint_every = 2").replace(
        "hidden = [128]", "hidden = [16]"
    )
    text = text.replace("population_size = 16", "population_size = 8")
    config = tmp_path / "c.toml"
    config.write_text(text)
    return config


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, RunDir]:
    tmp_path = tmp_path_factory.mktemp("full")
    config = _short_config(tmp_path, generations=7, ready_every=5)
    done = subprocess.run(
        [sys.executable, "-m", "neuroevo", "run", str(config), "--out", str(tmp_path / "full"), "--quiet"],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return config, RunDir(tmp_path / "full")


# (where, nth call): the 28th optimiser step is step 3 of generation 5 (0-based 4); the 3rd
# checkpoint write is generation 6's, after pbt.jsonl got generations 4 and 5
# the kill inside an optimiser step runs in the long suite (each case is a run, a kill, a resume)
@pytest.mark.parametrize(
    "where, limit", [pytest.param("step", 28, marks=pytest.mark.slow), ("checkpoint", 3)]
)
def test_sigkill_then_neuroevo_resume_is_identical(tmp_path, uninterrupted, where, limit):
    config, full = uninterrupted
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cli = [sys.executable, "-m", "neuroevo"]
    out = str(tmp_path / "killed")
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, where, str(limit), "run", str(config), "--out", out, "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = RunDir(tmp_path / "killed")
    assert run.latest_checkpoint()[0] == 4  # checkpoint 4 is the last complete one
    written = [json.loads(line) for line in (run.path / "pbt.jsonl").read_text().splitlines()]
    # the checkpoint of generation 4 counts 4 generations of ready events (8 members each)
    assert max(e["generation"] for e in written) == (3 if where == "step" else 5)
    resumed = subprocess.run(
        [*cli, "resume", str(run.path), "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _deterministic(full.read_metrics()) == _deterministic(run.read_metrics())
    assert len(run.read_metrics()) == 7
    for name in ("pbt.jsonl", "best/schedule.json", "best/params.safetensors", "best/network.json"):
        assert (full.path / name).read_bytes() == (run.path / name).read_bytes(), name
    events = [json.loads(line) for line in (run.path / "pbt.jsonl").read_text().splitlines()]
    assert [(e["generation"], e["member"]) for e in events] == [(g, m) for g in range(7) for m in range(8)]
    assert not any(k.startswith("pbt/") for line in run.read_metrics() for k in line)  # small lines
    for name in ("pbt_schedule.png", "pbt_curves.png", "pbt_lineage.png"):
        assert (run.report / name).stat().st_size > 0


def test_best_member_exports_and_scores_like_validation(tmp_path):
    from neuroevo.runtime.export import export_best, load_best_module

    config = _short_config(tmp_path, generations=3, ready_every=20)
    cfg = load_config(config)
    built = build(cfg)
    result = evolve(built.strategy, built.phenotype, built.task, generations=3, run_dir=tmp_path / "r")
    module, spec = load_best_module(tmp_path / "r")
    task = built.task
    mean, std = task.data.input_stats  # the export takes raw features and standardises them itself
    with torch.no_grad():
        acc = (module(task.data.x_val * std + mean).argmax(-1) == task.data.y_val).float().mean()
    assert result.validation["val_accuracy"] == pytest.approx(result.best.fitness)
    assert (
        abs(float(acc) - result.best.fitness) <= 1.5 / task.data.y_val.numel()
    )  # float rounding: <= 1 digit
    assert spec["network"]["type"] == "trainable_mlp"
    schedule = json.loads((tmp_path / "r" / "best" / "schedule.json").read_text())
    assert len(schedule["schedule"]) == schedule["generation"] + 1
    assert {"lr", "weight_decay", "momentum"} <= set(schedule["schedule"][0])
    export_best(tmp_path / "r", tmp_path / "w.safetensors")
    assert (tmp_path / "w.safetensors").stat().st_size > 0


def test_digits_example_reaches_97_percent_validation_accuracy(tmp_path):
    """examples/digits_pbt.toml (P = 16, lr/weight decay/momentum), shortened to 10 ready intervals."""
    cfg = load_config(EXAMPLE, {"run": {"generations": 10}})
    assert cfg.strategy.population_size == 16 and set(cfg.strategy.space) == {
        "lr",
        "weight_decay",
        "momentum",
    }
    built = build(cfg)
    result = evolve(built.strategy, built.phenotype, built.task, generations=10)
    assert result.validation["val_accuracy"] >= 0.97
    assert sum(m["exploited"] for m in result.metrics) >= 4 * 9


def test_pbt_replay_trains_a_fresh_model_on_the_best_schedule(tmp_path):
    from neuroevo.cli import main
    from neuroevo.pbt_replay import describe, replay

    config = _short_config(tmp_path, generations=4, ready_every=100)
    assert main(["run", str(config), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    best = json.loads((tmp_path / "r" / "best" / "network.json").read_text())
    metrics = replay(tmp_path / "r")
    assert metrics["replay_steps"] == 100 * (
        json.loads((tmp_path / "r" / "best" / "schedule.json").read_text())["generation"] + 1
    )
    assert metrics["val_accuracy"] >= 0.9
    assert metrics["val_accuracy"] >= best["validation"]["val_accuracy"] - 0.05
    assert replay(tmp_path / "r") == metrics  # deterministic
    assert "val_accuracy" in describe(metrics)
    assert main(["pbt-replay", str(tmp_path / "r")]) == 0  # the same through the CLI


@pytest.mark.slow
def test_async_mode_from_the_cli_then_sigkill_and_resume_is_identical(tmp_path):
    """`[strategy] mode = "async"` through `neuroevo run`: staggered ready points, checkpoints,
    best/, pbt.jsonl; a SIGKILL between the records and their checkpoint, then `neuroevo resume`,
    ends byte for byte like the uninterrupted run."""
    config = _short_config(tmp_path, generations=9, ready_every=8)
    text = config.read_text()
    assert 'mode = "sync"' in text
    config.write_text(text.replace('mode = "sync"', 'mode = "async"\nasync_groups = 4'))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cli = [sys.executable, "-m", "neuroevo"]
    done = subprocess.run(
        [*cli, "run", str(config), "--out", str(tmp_path / "full"), "--quiet"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    full = RunDir(tmp_path / "full")
    events = [json.loads(line) for line in (full.path / "pbt.jsonl").read_text().splitlines()]
    # P = 8 in 4 groups: at generation g (a tick of 2 steps) members g % 4 and g % 4 + 4 are ready
    assert [(e["generation"], e["member"]) for e in events] == [
        (g, m) for g in range(9) for m in (g % 4, g % 4 + 4)
    ]
    first = {e["member"]: e["step"] for e in reversed(events)}  # each member's first ready point
    assert first == {m: 2 * (m % 4 + 1) for m in range(8)}
    assert all(e["step"] - first[e["member"]] in (0, 8, 16) for e in events if not e["exploited"])
    exploited = [e for e in events if e["exploited"]]
    assert exploited and all(e["parent"] != e["member"] for e in exploited)
    for e in exploited:  # only a member that had reached a ready point is a parent
        assert any(o["member"] == e["parent"] and o["generation"] <= e["generation"] for o in events)
    lines = full.read_metrics()
    assert len(lines) == 9 and all(line["ready"] == 2 for line in lines)
    assert (full.best / "schedule.json").is_file() and (full.best / "params.safetensors").is_file()

    killed = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            "checkpoint",
            "3",
            "run",
            str(config),
            "--out",
            str(tmp_path / "k"),
            "--quiet",
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    run = RunDir(tmp_path / "k")
    assert run.latest_checkpoint()[0] == 4
    resumed = subprocess.run(
        [*cli, "resume", str(run.path), "--quiet"], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _deterministic(full.read_metrics()) == _deterministic(run.read_metrics())
    for name in ("pbt.jsonl", "best/schedule.json", "best/params.safetensors", "best/network.json"):
        assert (full.path / name).read_bytes() == (run.path / name).read_bytes(), name


def test_resume_cuts_pbt_jsonl_back_to_its_checkpoint(tmp_path):
    """What a kill leaves in pbt.jsonl after the checkpoint a resume starts from is rewritten, not kept."""
    evolve(*_make("perturb"), generations=5, run_dir=tmp_path / "r", checkpoint_every=2)
    run = RunDir(tmp_path / "r")
    records = run.path / "pbt.jsonl"
    reference = records.read_bytes()
    assert len(reference.splitlines()) == 5 * 6
    assert run.latest_checkpoint()[1]["runtime"]["records"] == {"pbt.jsonl": len(reference)}
    for drop in ([5], [2, 4, 5]):  # back to checkpoint 4, then to none at all (a fresh start)
        for g in drop:
            for suffix in (".json", ".safetensors"):
                run.checkpoint_stem(g).with_suffix(suffix).unlink(missing_ok=True)
        with records.open("a") as handle:
            handle.write('{"generation": 99, "torn')  # and a line cut short by the kill
        evolve(*_make("perturb"), generations=5, run_dir=run.path, checkpoint_every=2, resume=True)
        assert records.read_bytes() == reference
