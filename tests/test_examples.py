"""Every file in ``examples/`` runs, each in a short version (2 generations).

A TOML config runs through ``neuroevo run --generations 2``; a Python script runs with
``NEUROEVO_EXAMPLE_GENERATIONS=2``, which it must read. A ``.py`` file that a config example
names (its fitness function or network module) is covered by that config's run. A file of
any other kind, or a script that does not read the variable, fails
``test_every_example_is_covered``: a new example is tested from the day it is added. (How far
the full versions get is the business of the solve tests: test_control_solve.py, ...)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from neuroevo.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p for p in (ROOT / "examples").iterdir() if p.is_file() and not p.name.startswith("."))
CONFIGS = "\n".join(p.read_text() for p in (ROOT / "examples").glob("*.toml"))
SCRIPTS = [p for p in EXAMPLES if p.suffix == ".py" and p.name not in CONFIGS]
GENERATIONS_VAR = "NEUROEVO_EXAMPLE_GENERATIONS"
SHORT = 2


def test_every_example_is_covered():
    assert EXAMPLES, "no examples found"
    for path in EXAMPLES:
        assert path.suffix in (".toml", ".py"), f"examples/{path.name}: no short run is defined for this kind"
        if path in SCRIPTS:
            assert GENERATIONS_VAR in path.read_text(), f"examples/{path.name} must honour {GENERATIONS_VAR}"


@pytest.mark.parametrize("path", [p for p in EXAMPLES if p.suffix == ".toml"], ids=lambda p: p.name)
def test_config_example_runs_short(path, tmp_path):
    if path.name == "hopper_es.toml" and importlib.util.find_spec("mujoco") is None:
        pytest.skip("Hopper-v5 needs the mujoco extra: pip install 'neuroevo[mujoco]'")
    out = tmp_path / path.stem
    assert main(["run", str(path), "--out", str(out), "--quiet", "--generations", str(SHORT)]) == 0
    lines = [json.loads(s) for s in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["generation"] for m in lines] == list(range(len(lines))) and 1 <= len(lines) <= SHORT
    assert all(m["evaluations"] > 0 for m in lines)
    best = json.loads((out / "best" / "network.json").read_text())
    assert best["fitness"] == max(m["best_ever"] for m in lines)
    assert (out / "report" / "report.html").stat().st_size > 10_000


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.name)
def test_python_example_runs_short(path, tmp_path):
    env = {**os.environ, GENERATIONS_VAR: str(SHORT), "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "an example says what it found"


def test_sine_cmaes_example_reaches_its_target(tmp_path):
    """The full CMA-ES example: under a thousand generations, a few seconds."""
    out = tmp_path / "sine"
    assert main(["run", str(ROOT / "examples/sine_cmaes.toml"), "--out", str(out), "--quiet"]) == 0
    best = json.loads((out / "best" / "network.json").read_text())
    assert best["fitness"] >= -0.001 and best["generation"] < 1000
