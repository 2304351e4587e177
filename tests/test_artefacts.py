"""What a run hands its user is complete and true: exports on raw inputs, best/, resume, errors."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from neuroevo.cli import main
from neuroevo.core.random import derive_key
from neuroevo.runtime import TIMING_FIELDS, RunDir
from neuroevo.runtime.play import play

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "neuroevo"]


def _cli(*args, cwd=None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, **kw)


def _deterministic(run: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in RunDir(run).read_metrics()]


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# -- exports take raw inputs and return what the env or data set expects -----------------------------
@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cartpole") / "run"
    assert main(["run", str(ROOT / "examples/cartpole_es.toml"), "--out", str(out), "--quiet"]) == 0
    return out


def test_cartpole_export_in_a_plain_gymnasium_loop_returns_what_play_returns(cartpole_run, tmp_path):
    program = tmp_path / "policy.pt2"
    assert main(["best", str(cartpole_run), "--export", str(program)]) == 0
    policy = torch.export.load(str(program)).module()
    env = gym.make("CartPole-v1")
    returns = []
    for episode in range(3):  # the same starts as `play --seed 0`
        obs, _ = env.reset(seed=derive_key(0, 0, episode, "play") % 2**31)
        total, done = 0.0, False
        while not done:
            action = policy(torch.as_tensor(obs, dtype=torch.float32).view(1, -1))
            obs, reward, terminated, truncated, _ = env.step(int(action[0]))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    assert returns == play(cartpole_run, episodes=3, seed=0)
    assert min(returns) >= 475  # the run solved it, and the export on raw observations still does


def test_safetensors_export_carries_the_io_steps(cartpole_run, tmp_path):
    from safetensors import safe_open

    target = tmp_path / "w.safetensors"
    assert main(["best", str(cartpole_run), "--export", str(target)]) == 0
    with safe_open(str(target), "pt") as handle:
        io = json.loads(handle.metadata()["io"])
        mean = handle.get_tensor("input.mean")
    spec = json.loads((cartpole_run / "best" / "network.json").read_text())
    assert io["env"] == "CartPole-v1" and io["output"] == {"discrete": {"n": 2, "start": 0}}
    assert torch.allclose(mean, torch.tensor(spec["io"]["input"][0]["standardize"]["mean"]))
    assert main(["best", str(cartpole_run), "--export", str(tmp_path / "p.pt")]) == 2  # .pt2 only


def test_pendulum_export_keeps_actions_within_bounds(tmp_path):
    config = (ROOT / "examples/pendulum_es.toml").read_text()
    out = tmp_path / "pend"
    (tmp_path / "p.toml").write_text(config.replace("population_size = 256", "population_size = 16"))
    assert main(["run", str(tmp_path / "p.toml"), "--out", str(out), "--generations", "3", "--quiet"]) == 0
    assert main(["best", str(out), "--export", str(tmp_path / "p.pt2")]) == 0
    policy = torch.export.load(str(tmp_path / "p.pt2")).module()
    wild = torch.randn(256, 3, generator=torch.Generator().manual_seed(0)) * 50
    actions = policy(wild)
    assert actions.shape == (256, 1)
    actions = actions.detach()
    assert float(actions.min()) >= -2.0 and float(actions.max()) <= 2.0
    assert float(actions.max() - actions.min()) > 0.1  # mapped, not clamped to one value


def test_digits_export_on_raw_pixels_reaches_the_validation_accuracy(tmp_path):
    from sklearn.datasets import load_digits

    from neuroevo.tasks.supervised import split_indices

    out = tmp_path / "digits"
    args = ["run", str(ROOT / "examples/digits_es.toml"), "--out", str(out), "--generations", "40", "--quiet"]
    assert main(args) == 0
    assert main(["best", str(out), "--export", str(tmp_path / "d.pt2")]) == 0
    model = torch.export.load(str(tmp_path / "d.pt2")).module()
    data = load_digits()
    _, val = split_indices(len(data.target), 0.2, 0)
    pixels = torch.tensor(data.data, dtype=torch.float32)[val]
    accuracy = float((model(pixels).argmax(-1) == torch.tensor(data.target)[val]).float().mean())
    recorded = json.loads((out / "best" / "network.json").read_text())["validation"]["val_accuracy"]
    assert recorded > 0.5
    assert accuracy == pytest.approx(recorded, abs=1e-6)


# -- best/ is the truth about the best network --------------------------------------------------------
def test_best_is_validated_when_written_whatever_validate_every_says(tmp_path, capsys):
    config = (ROOT / "examples/xor_ga.toml").read_text().replace("[run]", "[run]\nvalidate_every = 3")
    (tmp_path / "x.toml").write_text(config)
    assert main(["run", str(tmp_path / "x.toml"), "--out", str(tmp_path / "x"), "--quiet"]) == 0
    summary = capsys.readouterr().out
    spec = json.loads((tmp_path / "x" / "best" / "network.json").read_text())
    assert spec["validation"]["train_neg_mse"] == spec["fitness"]  # XOR: validation = the training cases
    assert re.search(rf"train_neg_mse\s+{re.escape(format(spec['fitness'], '.6g'))}", summary), summary
    assert main(["best", str(tmp_path / "x")]) == 0
    assert f"train_neg_mse: {spec['validation']['train_neg_mse']:.6g}" in capsys.readouterr().out


KILLER = textwrap.dedent(
    """
    import os, signal, sys, tempfile
    import neuroevo.runtime.storage as storage
    real = storage.atomic_write
    target, count = sys.argv.pop(1), int(sys.argv.pop(1))
    seen = [0]

    def dying_write(path, data):
        if os.path.basename(str(path)) == target:
            seen[0] += 1
            if seen[0] == count:  # die half-way through this write, leaving its temporary file
                folder = os.path.dirname(str(path))
                fd, tmp = tempfile.mkstemp(prefix="." + target + ".", suffix=".tmp", dir=folder)
                os.write(fd, data[: len(data) // 2])
                os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data)

    storage.atomic_write = dying_write
    from neuroevo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


def _every_3(example: str) -> str:
    """An example with checkpoints every 3 generations and no target (it runs all 14)."""
    lines = (ROOT / "examples" / example).read_text().splitlines()
    lines = [line for line in lines if not line.startswith("target_fitness")]
    return "\n".join(lines).replace("checkpoint_every = 25", "checkpoint_every = 3")


GA_XOR = _every_3("xor_ga.toml")
NEAT_XOR = _every_3("xor_neat.toml")
CMAES_XOR = """
[run]
generations = 14
checkpoint_every = 3
progress = false
[task]
name = "xor"
[network]
hidden = [3]
[strategy]
name = "cmaes"
population_size = 12
"""


@pytest.mark.parametrize(
    "name, config, dies_in, count",
    [
        ("ga", GA_XOR, "ckpt-000009.json", 1),
        ("neat", NEAT_XOR, "network.json", 3),
        pytest.param("cmaes", CMAES_XOR, "ckpt-000006.safetensors", 1, marks=pytest.mark.slow),
    ],
)
def test_sigkill_then_resume_gives_an_identical_best_folder(tmp_path, name, config, dies_in, count):
    (tmp_path / "c.toml").write_text(config)
    common = ["run", "c.toml", "--generations", "14", "--quiet"]
    assert _cli(*common, "--out", "full", cwd=tmp_path).returncode == 0
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, dies_in, str(count), *common, "--out", "killed"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    stale = list((tmp_path / "killed").rglob(".*.tmp"))
    assert stale, "the kill should leave a temporary file behind"
    resumed = _cli("resume", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert not list((tmp_path / "killed").rglob(".*.tmp"))  # resume cleaned them
    assert _deterministic(tmp_path / "killed") == _deterministic(tmp_path / "full")
    assert _folder_bytes(tmp_path / "killed" / "best") == _folder_bytes(tmp_path / "full" / "best")


def test_overwrite_starts_from_an_empty_folder(tmp_path):
    out = tmp_path / "r"
    assert main(["run", str(ROOT / "examples/xor_neat.toml"), "--out", str(out), "--generations", "3"]) == 0
    assert (out / "report" / "species.png").is_file()
    args = ["run", str(ROOT / "examples/xor_ga.toml"), "--out", str(out), "--generations", "3", "--overwrite"]
    assert main(args) == 0
    assert not (out / "report" / "species.png").exists()
    assert len(RunDir(out).read_metrics()) == 3


def test_run_files_get_the_usual_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        assert (
            main(
                [
                    "run",
                    str(ROOT / "examples/xor_ga.toml"),
                    "--out",
                    str(tmp_path / "r"),
                    "--generations",
                    "2",
                ]
            )
            == 0
        )
    finally:
        os.umask(old)
    for path in (tmp_path / "r").rglob("*"):
        assert (path.stat().st_mode & 0o777) == (0o755 if path.is_dir() else 0o644), path


# -- resume is a stated contract ------------------------------------------------------------------------
@pytest.fixture()
def short_run(tmp_path) -> Path:
    out = tmp_path / "r"
    assert (
        main(["run", str(ROOT / "examples/xor_ga.toml"), "--out", str(out), "--generations", "4", "--quiet"])
        == 0
    )
    return out


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("strategy", "mutation_power", 0.3),  # silently ignored before
        ("strategy", "population_size", 100),  # silently applied before
        ("network", "hidden", [6]),  # a RuntimeError traceback before
    ],
)
def test_resume_refuses_a_changed_search_key_and_changes_nothing(short_run, section, key, value, capsys):
    import tomllib

    import tomli_w

    config = short_run / "config.toml"
    data = tomllib.loads(config.read_text())
    assert key in data[section]
    data[section][key] = value
    config.write_text(tomli_w.dumps(data))
    before = {p: p.read_bytes() for p in short_run.rglob("*") if p.is_file()}
    assert main(["resume", str(short_run), "--generations", "6", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{section}.{key} changed from" in err and "run.generations" in err
    assert {p: p.read_bytes() for p in short_run.rglob("*") if p.is_file()} == before


def test_resume_may_change_stop_conditions_and_says_when_there_is_nothing_to_do(short_run, capsys):
    assert main(["resume", str(short_run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "already at generation 4 of 4" in out
    assert main(["resume", str(short_run), "--generations", "6", "--quiet"]) == 0
    assert len(RunDir(short_run).read_metrics()) == 6
    assert "generations = 6" in (short_run / "config.toml").read_text()
    assert main(["resume", str(short_run), "--generations", "20", "--target-fitness", "-1", "--quiet"]) == 0
    assert "target_fitness" in capsys.readouterr().out


# -- one line and exit 2 for bad input ----------------------------------------------------------------------
BASE = "[task]\nname = 'xor'\n[strategy]\nname = 'ga'\npopulation_size = 20\ntruncation = 5\n"


@pytest.mark.parametrize(
    "config, expected",
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00binary", "not a text file"),
        ("[run]\ndevice = 'gpu'\n" + BASE, "run.device = 'gpu'"),
        ("[run]\ndevice = 'mps'\n" + BASE, "allowed: cpu, cuda, cuda:N"),
        ("[run]\nprogress = 'yes'\n" + BASE, "run.progress = 'yes'"),
        ("[run]\ntarget_fitness = nan\n" + BASE, "run.target_fitness = nan"),
        (BASE.replace("population_size = 20", "population_size = '100'"), "strategy.population_size = '100'"),
        (BASE + "[network]\nhidden = []\n", "network.hidden = []"),
        (BASE.replace("name = 'xor'", "name = 'digits'\nbatch_size = '128'"), "task.batch_size = '128'"),
        (BASE + "[network]\nhidden = [4]\nactivation = [['tanh', 'relu', 'sin']]\n", "network.activation ="),
        (BASE.replace("name = 'xor'", "name = 'sine'\nmetric = 'accuracy'"), "task.metric = 'accuracy'"),
        (
            BASE.replace("name = 'xor'", "name = 'gym'\nenv = 'LunarLander-v3'"),
            "pip install 'gymnasium[box2d]'",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, config, expected):
    path = tmp_path / "c.toml"
    path.write_bytes(config if isinstance(config, bytes) else config.encode())
    done = _cli("run", path, "--out", tmp_path / "r", "--quiet")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr
    assert not (tmp_path / "r").exists()


def test_a_folder_as_config_and_an_unwritable_out(tmp_path):
    done = _cli("run", tmp_path, "--out", tmp_path / "r")
    assert done.returncode == 2 and "is a folder" in done.stderr
    (tmp_path / "c.toml").write_text(BASE)
    done = _cli("run", tmp_path / "c.toml", "--out", "/proc/neuroevo-run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "cannot write" in done.stderr


def test_play_refuses_a_gif_path_before_the_episodes(cartpole_run, tmp_path):
    done = _cli("play", cartpole_run, "--gif", tmp_path / "out.txt")
    assert done.returncode == 2 and "--gif" in done.stderr and "allowed: .gif" in done.stderr


def test_a_raising_fitness_mentions_a_checkpoint_only_when_one_exists(tmp_path):
    (tmp_path / "boom.py").write_text("def f(x):\n    raise RuntimeError('boom')\n")
    config = (
        "[run]\nprogress = false\n[task]\nname = 'function'\nfunction = 'boom:f'\nmaximize = true\n"
        "dimension = 3\n[network]\ntype = 'vector'\n[strategy]\nname = 'openes'\npopulation_size = 8\n"
    )
    (tmp_path / "c.toml").write_text(config)
    done = _cli("run", "c.toml", "--out", "r", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "generation 0" in done.stderr and "no checkpoint" in done.stderr and "resume" not in done.stderr


# -- the command line behaves like a good Unix tool -----------------------------------------------------
def test_help_version_and_bare_command_are_fast_and_torch_free():
    for args in ([], ["--help"], ["-h"], ["--version"]):
        done = _cli(*args)
        assert done.returncode == 0 and done.stdout.strip(), (args, done.stderr)
    assert _cli("--version").stdout.startswith("neuroevo ")
    probe = "import sys; from neuroevo.cli import main; main(['--help']); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().endswith("False"), done.stdout


def test_ctrl_c_writes_a_checkpoint_says_how_to_resume_and_exits_130(tmp_path):
    (tmp_path / "c.toml").write_text((ROOT / "examples/xor_ga.toml").read_text())
    proc = subprocess.Popen(
        [*CLI, "run", "c.toml", "--out", "r", "--generations", "100000", "--quiet"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = tmp_path / "r" / "metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "resume" in err and "interrupted at generation" in err
    generations = len(RunDir(tmp_path / "r").read_metrics())
    assert RunDir(tmp_path / "r").latest_checkpoint()[0] == generations
    assert _cli("resume", "r", "--generations", str(generations + 2), "--quiet", cwd=tmp_path).returncode == 0


# -- Python and the CLI meet ------------------------------------------------------------------------------
def test_evolve_overwrite_and_the_readme_quickstart_twice(tmp_path):
    from neuroevo.nn import PopulationMLP
    from neuroevo.runtime import evolve
    from neuroevo.strategies import OpenES
    from neuroevo.tasks import XOR

    def once(**kw):
        net = PopulationMLP([2, 4, 1], activation="tanh", output_activation="sigmoid")
        es = OpenES(net.num_params, population_size=16, init=net.init_params, sigma=0.1, lr=0.05)
        return evolve(es, net, XOR(), generations=3, run_dir=tmp_path / "py", **kw)

    first = once()
    with pytest.raises(Exception, match="overwrite=True"):
        once()
    again = once(overwrite=True)
    assert [m["best"] for m in again.metrics] == [m["best"] for m in first.metrics]
    done = _cli("best", tmp_path / "py")
    assert done.returncode == 0 and "best fitness" in done.stdout


TINYNET = """
import torch


class TinyNet(torch.nn.Sequential):
    def __init__(self):
        super().__init__(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1), torch.nn.Sigmoid())
"""


def test_a_module_adapter_run_exports_through_the_cli(tmp_path, monkeypatch):
    from neuroevo.nn import ModuleAdapter
    from neuroevo.runtime import evolve
    from neuroevo.strategies import GA
    from neuroevo.tasks import XOR

    (tmp_path / "tinynet.py").write_text(TINYNET)
    monkeypatch.syspath_prepend(str(tmp_path))
    from tinynet import TinyNet

    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    net = ModuleAdapter(TinyNet(), in_features=2, out_features=1)  # the spec records 'tinynet:TinyNet'
    ga = GA(net.num_params, population_size=20, truncation=5, init=net.init_params)
    result = evolve(ga, net, XOR(), generations=3, run_dir=tmp_path / "m")
    done = _cli("best", tmp_path / "m", "--export", tmp_path / "m.pt2", env=env)
    assert done.returncode == 0, done.stderr
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    np.testing.assert_allclose(
        program(x).detach().numpy(), net.to_module(result.best.params)(x).detach().numpy()
    )

    # a module that needs constructor arguments: the weights alone still export, the program says why not
    plain = ModuleAdapter(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1)), in_features=2)
    ga = GA(plain.num_params, population_size=20, truncation=5, init=plain.init_params)
    evolve(ga, plain, XOR(), generations=2, run_dir=tmp_path / "s")
    assert _cli("best", tmp_path / "s", "--export", tmp_path / "w.safetensors").returncode == 0
    from safetensors.torch import load_file

    assert set(load_file(str(tmp_path / "w.safetensors"))) == {"0.weight", "0.bias", "1.weight", "1.bias"}
    done = _cli("best", tmp_path / "s", "--export", tmp_path / "s.pt2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "factory" in done.stderr


def test_list_name_prints_the_config_reference_of_one_entry(capsys):
    assert main(["list", "openes"]) == 0
    out = capsys.readouterr().out
    assert "sigma" in out and "0.05" in out and "> 0" in out and "noise std" in out
    assert main(["list", "mlp"]) == 0
    assert "hidden" in capsys.readouterr().out
    assert main(["list", "no_such_thing"]) == 2
    assert "allowed:" in capsys.readouterr().err


def test_a_python_run_says_what_resume_needs(tmp_path):
    from neuroevo.nn import PopulationMLP
    from neuroevo.runtime import evolve
    from neuroevo.strategies import GA
    from neuroevo.tasks import XOR

    net = PopulationMLP([2, 3, 1], output_activation="sigmoid")
    centre = torch.full((net.num_params,), 0.5)  # a custom start no config can state
    evolve(
        GA(net.num_params, 20, truncation=5, init=lambda generator: centre.clone()),
        net,
        XOR(),
        generations=2,
        run_dir=tmp_path / "p",
    )
    assert not (tmp_path / "p" / "config.toml").exists()
    assert "no config.toml: the strategy differs" in (tmp_path / "p" / "run.log").read_text()
    done = _cli("resume", tmp_path / "p")
    assert done.returncode == 2 and "started from Python" in done.stderr and "resume=True" in done.stderr
    assert _cli("best", tmp_path / "p").returncode == 0


def _python_objects(kind: str, seed: int):
    """(strategy, network, task) built in Python from registered classes, as a user would."""
    from neuroevo.nn import NEATPhenotype, PopulationMLP
    from neuroevo.strategies import GA, NEAT, OpenES
    from neuroevo.tasks import XOR, Digits

    if kind == "openes":
        task, net = Digits(batch_size=256, seed=seed), PopulationMLP([64, 16, 10], activation="tanh")
        return OpenES(net.num_params, 16, init=net.init_params, sigma=0.05, seed=seed), net, task
    if kind == "ga":
        net = PopulationMLP([2, 4, 1], output_activation="sigmoid")
        return GA(net.num_params, 24, truncation=6, init=net.init_params, seed=seed), net, XOR(seed=seed)
    return NEAT(2, 1, 40, seed=seed), NEATPhenotype(2, 1), XOR(seed=seed)


@pytest.mark.parametrize("kind", ["openes", "ga", "neat"])
def test_a_python_run_of_registered_objects_resumes_from_the_cli(tmp_path, kind):
    """Its config.toml is written, and `neuroevo resume` continues it bit-identically."""
    from neuroevo.runtime import evolve

    whole, part = tmp_path / "whole", tmp_path / "part"
    evolve(*_python_objects(kind, 3), generations=6, run_dir=whole, checkpoint_every=3)
    evolve(*_python_objects(kind, 3), generations=3, run_dir=part, checkpoint_every=3)
    config = (part / "config.toml").read_text()
    assert "seed = 3" in config and "generations = 3" in config
    done = _cli("resume", part, "--generations", 6, "--quiet")
    assert done.returncode == 0, done.stderr
    assert _deterministic(part) == _deterministic(whole)
    assert _folder_bytes(part / "best") == _folder_bytes(whole / "best")


def test_a_python_run_with_a_task_seed_of_its_own_writes_no_config(tmp_path):
    from neuroevo.runtime import evolve

    strategy, net, _ = _python_objects("ga", 1)
    from neuroevo.tasks import XOR

    evolve(strategy, net, XOR(seed=2), generations=1, run_dir=tmp_path / "r")
    assert not (tmp_path / "r" / "config.toml").exists()
    assert "task's seed 2 differs from the strategy's 1" in (tmp_path / "r" / "run.log").read_text()


def test_a_cli_run_keeps_the_config_it_wrote(tmp_path):
    """evolve describes only Python runs: the CLI's resolved config.toml is left as written."""
    out = tmp_path / "cli"
    assert (
        main(
            [
                "run",
                str(ROOT / "examples" / "xor_ga.toml"),
                "--out",
                str(out),
                "--generations",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    written = (out / "config.toml").read_text()
    assert written == (out / "checkpoints" / "config.toml").read_text()
    assert "no config.toml" not in (out / "run.log").read_text()
    assert main(["resume", str(out), "--generations", "3", "--quiet"]) == 0
    assert (out / "config.toml").read_text().replace("generations = 3", "generations = 2") == written


def test_ctrl_c_right_after_tell_is_held_until_the_generation_is_written(tmp_path):
    """A Ctrl-C that lands between a generation's tell and its metrics line is raised after the
    line and the checkpoint: the checkpoint written on the way out matches the metrics."""
    import os
    import signal

    from neuroevo.nn import PopulationMLP
    from neuroevo.runtime import evolve
    from neuroevo.strategies import OpenES
    from neuroevo.tasks import XOR

    net = PopulationMLP([2, 4, 1], activation="tanh", output_activation="sigmoid")
    es = OpenES(net.num_params, population_size=16, init=net.init_params, sigma=0.1, lr=0.05)
    tell = es.tell

    def tell_then_ctrl_c(fitness):
        stats = tell(fitness)
        if es.generation == 3:
            os.kill(os.getpid(), signal.SIGINT)  # delivered before the line of generation 2 is written
        return stats

    es.tell = tell_then_ctrl_c
    try:
        result = evolve(es, net, XOR(), generations=10, run_dir=tmp_path / "r", checkpoint_every=5)
    except KeyboardInterrupt:
        pytest.fail("the Ctrl-C escaped the run instead of stopping it after the generation")
    assert result.stop_reason == "interrupted" and es.generation == 3
    run = RunDir(tmp_path / "r")
    assert len(run.read_metrics()) == 3 == run.latest_checkpoint()[0]
