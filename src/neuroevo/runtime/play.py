"""``neuroevo play``: run a run's best policy in Gymnasium, print returns, optionally save a GIF.

The policy is the exported best network (``load_best_module``): the best member with the
task's observation normalisation and action mapping as they were when it was written to
``best/`` (argmax for discrete actions; tanh squashed and scaled to the bounds for
continuous ones). So ``play`` returns what the ``.pt2`` export returns in a plain Gymnasium
loop. Frames come from Gymnasium's ``rgb_array`` rendering and are written with Pillow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from neuroevo.core.errors import ConfigError
from neuroevo.core.random import derive_key
from neuroevo.runtime.export import load_best_module
from neuroevo.runtime.rundir import RunDir
from neuroevo.tasks.gym_make import make_env

GIF_SUFFIXES = (".gif",)


def check_gif_path(gif: str | Path | None) -> None:
    """A one-line ConfigError, before any episode runs, for a GIF path that cannot be written."""
    if gif is None:
        return
    path = Path(gif)
    if path.suffix.lower() not in GIF_SUFFIXES:
        raise ConfigError(f"--gif {path}: unknown file type {path.suffix!r}; allowed: .gif")
    if path.is_dir():
        raise ConfigError(f"--gif {path}: is a folder; allowed: a file path")


def play(
    run_dir: str | Path,
    *,
    episodes: int = 5,
    gif: str | Path | None = None,
    env_id: str | None = None,
    seed: int = 0,
    max_frames: int = 2000,
    fps: int = 30,
) -> list[float]:
    """Returns of ``episodes`` episodes of the best policy; writes a GIF of them if asked."""
    if episodes < 1:
        raise ConfigError(f"--episodes = {episodes}; allowed: >= 1")
    check_gif_path(gif)
    run = RunDir(run_dir)
    run.require_run()
    policy, spec = load_best_module(run.path)
    env_id = env_id or (spec.get("io") or {}).get("env")
    if env_id is None:
        raise ConfigError(
            f"{run.path}: the run's task has no environment; allowed: a control/gym run, or --env ID"
        )
    env = make_env(env_id, "--env", render_mode="rgb_array" if gif else None)
    obs_dim = int(np.prod(env.observation_space.shape or (0,)))
    if obs_dim != int(spec.get("in_features", obs_dim)):
        raise ConfigError(
            f"--env {env_id!r}: observations have {obs_dim} values; the network takes {spec['in_features']}"
        )
    frames: list[np.ndarray] = []
    returns: list[float] = []
    with torch.no_grad():
        for episode in range(episodes):
            _reset_state(policy)
            obs, _ = env.reset(seed=derive_key(seed, 0, episode, "play") % 2**31)
            total, done = 0.0, False
            while not done:
                if gif and len(frames) < max_frames:
                    frames.append(env.render())
                action = policy(torch.as_tensor(np.asarray(obs, dtype=np.float32)).view(1, -1))[0]
                obs, reward, terminated, truncated, _ = env.step(_to_env(action, env.action_space))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    env.close()
    if gif:
        _write_gif(frames, Path(gif), fps)
    return returns


@runtime_checkable
class _Resettable(Protocol):
    """An exported module with state across calls (a recurrent NEAT genome)."""

    def reset(self) -> None: ...


def _reset_state(policy: torch.nn.Module) -> None:
    """Recurrent modules (stateful NEAT) start each episode from a fresh state."""
    for module in policy.modules():
        if isinstance(module, _Resettable):
            module.reset()


def _to_env(action: torch.Tensor, space: Any) -> Any:
    import gymnasium

    if isinstance(space, gymnasium.spaces.Discrete):
        return int(action)
    return action.reshape(space.shape).numpy().astype(space.dtype)


def _write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    if not frames:
        raise ConfigError("no frames were rendered; allowed: an environment with rgb_array rendering")
    images = [Image.fromarray(frame) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, 1000 // fps), loop=0)
