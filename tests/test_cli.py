import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neuroevo.cli import main
from neuroevo.runtime.export import load_best_module

ROOT = Path(__file__).resolve().parents[1]

GOOD = """
[run]
name = "t"
seed = 1
generations = 8
checkpoint_every = 4
progress = false

[task]
name = "xor"

[network]
hidden = [4]
activation = "tanh"

[strategy]
name = "ga"
population_size = 50
truncation = 10
mutation_power = 0.1
"""


def _cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "neuroevo", *map(str, args)], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.parametrize(
    "patch, expected",
    [
        (
            ("[strategy]", "[strategy]\nmutation_strenght = 0.1"),
            "strategy.mutation_strenght = 0.1: unknown key",
        ),
        (("population_size = 50", 'population_size = "many"'), "strategy.population_size = 'many'"),
        (('activation = "tanh"', 'activation = "tanhh"'), "unknown activation 'tanhh'; allowed:"),
        (("[network]", '[network]\ninit = "glorot_wide"'), "unknown initialiser 'glorot_wide'; allowed:"),
        (('name = "ga"', 'name = "gaa"'), "strategy.name = 'gaa': unknown strategy; allowed:"),
        (('name = "xor"', 'name = "xorr"'), "task.name = 'xorr': unknown task; allowed:"),
        (("[run]", "[run]\nseeed = 2"), "run.seeed = 2: unknown key; allowed keys: name, seed"),
        (
            ("generations = 8", "generations = 0"),
            "run.generations = 0: Input should be greater than or equal to 1",
        ),
        (("[strategy]", "[strategy]\non_nan = 'ignore'"), "strategy.on_nan = 'ignore'"),
        (("truncation = 10", "truncation = 70"), "truncation = 70; allowed: 1..population_size (50)"),
    ],
)
def test_bad_config_one_line_exit_2_nothing_written(tmp_path, capsys, patch, expected):
    config = tmp_path / "bad.toml"
    config.write_text(GOOD.replace(*patch))
    out = tmp_path / "run"
    code = main(["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert not out.exists()


def test_cli_process_errors_have_no_traceback(tmp_path):
    done = _cli("run", tmp_path / "missing.toml")
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    done = _cli("resume", tmp_path / "nowhere")
    assert (
        done.returncode == 2
        and done.stderr.strip() == f"error: run folder {tmp_path / 'nowhere'} does not exist"
    )
    (tmp_path / "plain").mkdir()
    done = _cli("resume", tmp_path / "plain")
    assert done.returncode == 2 and "is not a neuroevo run" in done.stderr
    done = _cli("run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    done = _cli("run", tmp_path / "x.toml", "--generations", "zero")
    assert done.returncode == 2 and "Traceback" not in done.stderr


def test_run_resume_best_export(tmp_path, capsys):
    config = tmp_path / "good.toml"
    config.write_text(GOOD)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--generations", "6", "--seed", "2"]) == 0
    assert "seed = 2" in (out / "config.toml").read_text()
    assert "mutation_decay = 1.0" in (out / "config.toml").read_text()  # every default written out
    metrics_before = (out / "metrics.jsonl").read_text()
    # an existing run is never overwritten by accident
    assert main(["run", str(config), "--out", str(out)]) == 2
    assert "a run already exists" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_text() == metrics_before
    assert main(["resume", str(out), "--generations", "10"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 10
    module, spec = load_best_module(out)
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    assert main(["best", str(out), "--export", str(tmp_path / "net.pt2")]) == 0
    exported = torch.export.load(str(tmp_path / "net.pt2")).module()
    assert torch.allclose(exported(x), module(x))
    assert main(["best", str(out), "--export", str(tmp_path / "w.safetensors")]) == 0
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "w.safetensors"))
    assert torch.equal(weights["0.weight"], module[0].weight.detach())
    assert main(["best", str(out), "--export", str(tmp_path / "w.onnx")]) == 2
    capsys.readouterr()
    assert main(["best", str(out)]) == 0
    assert "best fitness" in capsys.readouterr().out


def test_list_shows_builtins(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    for word in (
        "strategies:",
        "ga",
        "openes",
        "tasks:",
        "digits",
        "activations:",
        "snake",
        "initialisers:",
        "orthogonal",
    ):
        assert word in text


def test_examples_validate():
    from neuroevo.config import build, load_config

    for path in sorted((ROOT / "examples").glob("*.toml")):
        if path.name == "hopper_es.toml" and importlib.util.find_spec("mujoco") is None:
            load_config(path)  # building it needs the extra: pip install 'neuroevo[mujoco]'
            continue
        build(load_config(path))


@pytest.mark.slow
def test_digits_example_reaches_90_percent(tmp_path):
    assert main(["run", str(ROOT / "examples/digits_es.toml"), "--out", str(tmp_path / "d"), "--quiet"]) == 0
    _, spec = load_best_module(tmp_path / "d")
    assert spec["validation"]["val_accuracy"] >= 0.90


def test_custom_fitness_example_runs():
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples/custom_fitness.py")], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert (
        "best accuracy 0.98" in done.stdout or "best accuracy 0.99" in done.stdout or "1.000" in done.stdout
    )


def test_neat_run_exports_its_best_genome(tmp_path):
    out = tmp_path / "run"
    config = ROOT / "examples" / "xor_neat.toml"
    assert main(["run", str(config), "--out", str(out), "--generations", "12", "--seed", "1"]) == 0
    module, _ = load_best_module(out)
    assert int((module.level > 0).sum()) >= 1  # a compiled genome with nodes
    assert main(["best", str(out), "--export", str(tmp_path / "net.pt2")]) == 0
    exported = torch.export.load(str(tmp_path / "net.pt2")).module()
    for batch in (1, 4, 9):  # the batch dimension stays dynamic
        x = torch.rand(batch, 2, generator=torch.Generator().manual_seed(batch))
        torch.testing.assert_close(exported(x), module(x))


def test_resume_of_a_cmaes_checkpoint_of_the_per_member_noise_scheme_is_refused(tmp_path):
    """CMA-ES draws a generation's samples from one key (``noise_scheme = 2``); a checkpoint of
    the per-member scheme (before 2026-12, no ``noise_scheme`` recorded) would continue with other
    numbers, so resuming it is refused in one line, exit 2, folder untouched."""
    import json

    out = tmp_path / "run"
    config = ROOT / "examples" / "rosenbrock_cmaes.toml"
    assert main(["run", str(config), "--out", str(out), "--generations", "3"]) == 0
    (ckpt,) = sorted((out / "checkpoints").glob("*.json"))
    meta = json.loads(ckpt.read_text())
    assert meta["state"]["strategy"]["noise_scheme"] == 2
    del meta["state"]["strategy"]["noise_scheme"]
    ckpt.write_text(json.dumps(meta))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    done = _cli("resume", out, "--generations", "6")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "noise_scheme = 1" in done.stderr and "'cmaes'" in done.stderr, done.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_resume_of_a_checkpoint_from_another_noise_generator_is_refused(tmp_path):
    """Every checkpoint records the noise generator (``NOISE_VERSION``); resuming one drawn by
    another is refused in one line, exit 2, with the folder untouched; a checkpoint from before
    versions were recorded (no ``noise`` key) resumes as version 1."""
    import json

    from neuroevo.core.random import NOISE_VERSION

    config = tmp_path / "good.toml"
    config.write_text(GOOD)
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), "--generations", "4"]) == 0
    (ckpt,) = sorted((out / "checkpoints").glob("*.json"))
    meta = json.loads(ckpt.read_text())
    assert meta["noise"] == NOISE_VERSION
    ckpt.write_text(json.dumps({**meta, "noise": "philox4x32-10/1"}))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    done = _cli("resume", out, "--generations", "8")
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert "noise = 'philox4x32-10/1'" in done.stderr and NOISE_VERSION in done.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    ckpt.write_text(json.dumps({k: v for k, v in meta.items() if k != "noise"}))
    assert main(["resume", str(out), "--generations", "8"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 8
