"""Third-party strategies, tasks, networks and activations found through entry points.

A tiny package is written into a temporary folder with its ``.dist-info`` (what pip would
install) and put on ``sys.path`` of a fresh interpreter; its names then work in a TOML
config and in ``neuroevo list``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

PLUGIN = '''
import torch
from pydantic import Field

from neuroevo.nn.networks import NetworkEntry, NetworkParams, build_mlp, MLPParams
from neuroevo.strategies.ga import GA
from neuroevo.tasks.supervised import XOR


def bent(x):
    """f(x) = x + 0.5 * sin(x): a plugin activation"""
    return x + 0.5 * torch.sin(x)


class TinyGA(GA):
    """A GA from a plugin package."""

    name = "tiny_ga"


class XorAgain(XOR):
    """XOR, registered by a plugin."""

    name = "xor_again"


class WideParams(MLPParams):
    width: int = Field(3, ge=1, description="the one hidden layer's width")


def build_wide(params, in_features, out_features, default_output_activation="identity", **kw):
    params = MLPParams(hidden=[params.width], activation=params.activation)
    return build_mlp(params, in_features, out_features, default_output_activation, **kw)


from neuroevo.nn.mlp import PopulationMLP

wide = NetworkEntry("wide", WideParams, build_wide, PopulationMLP.from_spec, description="one wide layer")
'''

ENTRY_POINTS = """
[neuroevo.strategies]
tiny_ga = tinyplug:TinyGA

[neuroevo.tasks]
xor_again = tinyplug:XorAgain

[neuroevo.networks]
wide = tinyplug:wide

[neuroevo.activations]
bent = tinyplug:bent
broken = tinyplug_missing:nothing
"""

CONFIG = """
[run]
generations = 3
progress = false

[task]
name = "xor_again"

[network]
type = "wide"
width = 5
activation = "bent"

[strategy]
name = "tiny_ga"
population_size = 20
truncation = 5
"""


def _install(site: Path) -> None:
    (site / "tinyplug.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "tinyplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def _neuroevo(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), *sys.path])}
    return subprocess.run(
        [sys.executable, "-m", "neuroevo", *args], capture_output=True, text=True, cwd=cwd, env=env
    )


def test_plugins_work_in_a_config_and_in_list(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    listing = _neuroevo(site, "list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    for line in ("tiny_ga", "xor_again", "wide", "bent"):
        assert line in listing.stdout
    # the broken plugin is one line naming it and the error, and does not stop the rest
    broken = [line for line in listing.stdout.splitlines() if "broken" in line]
    assert len(broken) == 1 and "tinyplug_missing" in broken[0] and "ModuleNotFoundError" in broken[0]
    keys = _neuroevo(site, "list", "wide", cwd=tmp_path)
    assert keys.returncode == 0 and "width" in keys.stdout and "the one hidden layer's width" in keys.stdout

    (tmp_path / "plug.toml").write_text(CONFIG)
    run = _neuroevo(site, "run", "plug.toml", "--out", "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    config = (tmp_path / "r" / "config.toml").read_text()
    assert 'name = "tiny_ga"' in config and 'type = "wide"' in config and 'activation = "bent"' in config
    shown = _neuroevo(site, "best", "r", cwd=tmp_path)
    assert shown.returncode == 0 and "Linear(in_features=2, out_features=5" in shown.stdout, shown.stderr


def test_a_plugin_that_fails_to_import_is_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install(site)
    (tmp_path / "bad.toml").write_text(CONFIG.replace('activation = "bent"', 'activation = "broken"'))
    run = _neuroevo(site, "run", "bad.toml", "--out", "r", "--quiet", cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert "plugin 'broken'" in run.stderr and "tinyplug_missing" in run.stderr
    assert not (tmp_path / "r").exists()
