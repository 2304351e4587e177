import os

import pytest

from neuroevo.cli import main
from neuroevo.runtime.play import play

CARTPOLE = """
[run]
name = "cp"
generations = 2
checkpoint_every = 1
progress = false

[task]
name = "control"
env = "CartPole-v1"
episodes = 3
eval_episodes = 5

[network]
hidden = [8]

[strategy]
name = "openes"
population_size = 16
"""


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    folder = tmp_path_factory.mktemp("play")
    config = folder / "cp.toml"
    config.write_text(CARTPOLE)
    assert main(["run", str(config), "--out", str(folder / "run"), "--quiet"]) == 0
    return folder / "run"


def test_play_prints_returns_and_writes_gif(cartpole_run, tmp_path, capsys):
    gif = tmp_path / "cp.gif"
    assert main(["play", str(cartpole_run), "--episodes", "2", "--gif", str(gif)]) == 0
    text = capsys.readouterr().out
    assert "episode 1: return" in text and "mean return" in text
    from PIL import Image

    with Image.open(gif) as image:
        assert image.n_frames > 5 and image.size[0] > 100


def test_play_is_the_evaluated_policy(cartpole_run):
    """Same policy, same normalisation, deterministic: replaying gives the same returns twice."""
    assert play(cartpole_run, episodes=3, seed=4) == play(cartpole_run, episodes=3, seed=4)


def test_play_bad_input(cartpole_run, tmp_path, capsys):
    assert main(["play", str(cartpole_run), "--env", "Pendulum-v1"]) == 2
    assert "observations have 3 values; the network takes 4" in capsys.readouterr().err
    assert main(["play", str(cartpole_run), "--episodes", "0"]) == 2
    assert main(["play", str(tmp_path / "none")]) == 2
