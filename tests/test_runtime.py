import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from neuroevo.core.errors import FitnessEvaluationError
from neuroevo.nn import PopulationMLP
from neuroevo.runtime import TIMING_FIELDS, RunDir, evolve
from neuroevo.strategies import GA, OpenES
from neuroevo.tasks import XOR, Digits, FunctionTask


def _digits_setup(seed=0):
    task = Digits(batch_size=128, seed=seed)
    mlp = PopulationMLP([64, 16, 10], "tanh")
    es = OpenES(mlp.num_params, 32, init=mlp.init_params, sigma=0.05, lr=0.03, seed=seed)
    return es, mlp, task


def _deterministic(lines):
    return [{k: v for k, v in line.items() if k not in TIMING_FIELDS} for line in lines]


def test_stops_on_generations_target_time_and_callback(tmp_path):
    task, mlp = XOR(), PopulationMLP([2, 4, 1], "tanh", "sigmoid")

    def ga():
        return GA(mlp.num_params, 100, init=mlp.init_params, mutation_power=0.1, seed=0)

    res = evolve(ga(), mlp, task, generations=5)
    assert res.generations == 5 and res.stop_reason == "generations" and len(res.metrics) == 5
    assert res.evaluations == 500
    res = evolve(ga(), mlp, task, generations=500, target_fitness=-0.05)
    assert res.stop_reason == "target_fitness" and res.best.fitness >= -0.05 and res.generations < 500
    res = evolve(ga(), mlp, task, time_budget=0.3)
    assert res.stop_reason == "time_budget" and res.generations >= 1
    seen = []
    res = evolve(
        ga(), mlp, task, generations=50, callbacks=[lambda line, s: seen.append(line) or len(seen) == 3]
    )
    assert res.stop_reason == "callback" and res.generations == 3
    with pytest.raises(ValueError, match="stop condition"):
        evolve(ga(), mlp, task)


def test_run_folder_contents(tmp_path):
    es, mlp, task = _digits_setup()
    res = evolve(es, mlp, task, generations=6, run_dir=tmp_path / "run", checkpoint_every=4)
    run = RunDir(tmp_path / "run")
    lines = run.read_metrics()
    assert [m["generation"] for m in lines] == list(range(6))
    for key in (
        "best",
        "mean",
        "std",
        "best_ever",
        "evaluations",
        "seconds",
        "evals_per_s",
        "nan_count",
        "val_accuracy",
        "sigma",
        "lr",
    ):
        assert key in lines[-1]
    assert run.checkpoint_generations() == [4, 6]
    spec = json.loads((run.best / "network.json").read_text())
    tensors = load_file(str(run.best / "params.safetensors"))
    assert torch.equal(tensors["params"], res.best.params)
    assert spec["network"]["layer_sizes"] == [64, 16, 10]
    assert (run.report / "fitness.png").stat().st_size > 1000


def test_resumed_run_is_identical_to_uninterrupted(tmp_path):
    es, mlp, task = _digits_setup()
    full = evolve(es, mlp, task, generations=12, run_dir=tmp_path / "full", checkpoint_every=5)
    # an interrupted run: stop after 7 generations (checkpoints at 5 and 7), resume to 12
    es, mlp, task = _digits_setup()
    evolve(es, mlp, task, generations=7, run_dir=tmp_path / "part", checkpoint_every=5)
    es, mlp, task = _digits_setup()  # fresh objects, as a new process would have
    resumed = evolve(
        es, mlp, task, generations=12, run_dir=tmp_path / "part", checkpoint_every=5, resume=True
    )
    assert _deterministic(RunDir(tmp_path / "full").read_metrics()) == _deterministic(
        RunDir(tmp_path / "part").read_metrics()
    )
    assert torch.equal(full.best.params, resumed.best.params)
    assert (tmp_path / "full/best/params.safetensors").read_bytes() == (
        tmp_path / "part/best/params.safetensors"
    ).read_bytes()


def test_raising_fitness_names_generation_and_keeps_checkpoint(tmp_path):
    calls = {"n": 0}

    def flaky(pop):
        calls["n"] += 1
        if calls["n"] == 8:
            raise ValueError("simulator crashed")
        return -(pop**2).sum(1)

    def make():
        return OpenES(5, 10, center=torch.ones(5), sigma=0.1, lr=0.05, seed=1)

    task = FunctionTask(flaky, maximize=True)
    with pytest.raises(
        FitnessEvaluationError, match="generation 7: fitness evaluation raised ValueError: simulator"
    ):
        evolve(make(), None, task, generations=20, run_dir=tmp_path / "r", checkpoint_every=5)
    run = RunDir(tmp_path / "r")
    assert run.checkpoint_generations() == [5]
    assert len(run.read_metrics()) == 7
    good = FunctionTask(lambda pop: -(pop**2).sum(1), maximize=True)
    resumed = evolve(make(), None, good, generations=20, run_dir=run, checkpoint_every=5, resume=True)
    straight = evolve(make(), None, good, generations=20)
    assert _deterministic(run.read_metrics()) == _deterministic(straight.metrics)
    assert torch.equal(resumed.best.params, straight.best.params)


def test_corrupt_newest_checkpoint_falls_back(tmp_path):
    es, mlp, task = _digits_setup()
    evolve(es, mlp, task, generations=4, run_dir=tmp_path / "r", checkpoint_every=2)
    run = RunDir(tmp_path / "r")
    blob = run.checkpoint_stem(4).with_suffix(".safetensors")
    blob.write_bytes(blob.read_bytes()[:-10])
    generation, state = run.latest_checkpoint()
    assert generation == 2 and state["strategy"]["generation"] == 2


CONFIG = """
[run]
name = "kill"
seed = 3
generations = 14
checkpoint_every = 3
progress = false

[task]
name = "digits"
batch_size = 128

[network]
hidden = [16]

[strategy]
name = "openes"
population_size = 32
sigma = 0.05
lr = 0.03
"""

KILLER = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    import neuroevo.runtime.storage as storage
    real = storage.atomic_write
    target = sys.argv.pop(1)

    def dying_write(path, data):
        if str(path).endswith(target):  # die half-way through writing this file
            fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(str(path)) + ".", suffix=".tmp",
                                       dir=os.path.dirname(str(path)))
            os.write(fd, data[: len(data) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data)

    storage.atomic_write = dying_write
    from neuroevo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


# the JSON half of a checkpoint in the long suite (each case is a run, a kill and two resumes)
@pytest.mark.parametrize(
    "dies_in", ["ckpt-000009.safetensors", pytest.param("ckpt-000009.json", marks=pytest.mark.slow)]
)
def test_sigkill_during_checkpoint_write_then_resume_is_identical(tmp_path, dies_in):
    config = tmp_path / "c.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    cli = [sys.executable, "-m", "neuroevo"]
    done = subprocess.run(
        [*cli, "run", str(config), "--out", str(tmp_path / "full")], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, dies_in, "run", str(config), "--out", str(tmp_path / "killed")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9
    run = RunDir(tmp_path / "killed")
    assert run.latest_checkpoint()[0] == 6  # the torn checkpoint 9 is not used
    resumed = subprocess.run(
        [*cli, "resume", str(tmp_path / "killed")], env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    full, again = RunDir(tmp_path / "full"), RunDir(tmp_path / "killed")
    assert _deterministic(full.read_metrics()) == _deterministic(again.read_metrics())
    assert len(again.read_metrics()) == 14
    assert (full.best / "params.safetensors").read_bytes() == (again.best / "params.safetensors").read_bytes()
