"""``neuroevo play``: run a run's best policy in Gymnasium, print returns, optionally save a GIF.

The policy is exactly the one evaluated during the run: the best member, the task's
observation normalisation from the newest checkpoint, and the task's action mapping
(argmax for discrete actions; tanh squashed and scaled to the bounds for continuous ones).
Frames come from Gymnasium's ``rgb_array`` rendering and are written with Pillow.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuroevo.core.errors import ConfigError
from neuroevo.core.random import derive_key
from neuroevo.runtime.rundir import RunDir, load_best


def _policy_member(phenotype: Any, spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Any:
    if "member" in spec and hasattr(phenotype, "member_from_spec"):
        return phenotype.member_from_spec(spec["member"])
    return tensors["params"]


def _as_population(member: Any) -> Any:
    if isinstance(member, torch.Tensor):
        return member.unsqueeze(0)
    return [member]


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
    import gymnasium

    from neuroevo.config import build, validate_config

    if episodes < 1:
        raise ConfigError(f"--episodes = {episodes}; allowed: >= 1")
    run = RunDir(run_dir)
    run.require_run()
    built = build(validate_config(tomllib.loads(run.config.read_text())))
    task, phenotype = built.task, built.phenotype
    found = run.latest_checkpoint()
    if found is not None:
        task.load_state_dict(found[1].get("task", {}))
    spec, tensors = load_best(run.path)
    member = _policy_member(phenotype, spec, tensors)
    env_id = env_id or getattr(task, "env_id", None)
    if env_id is None:
        raise ConfigError(
            f"{run.path}: task {type(task).name!r} has no environment; allowed: a control/gym run, "
            "or --env ENV-ID"
        )
    try:
        env = gymnasium.make(env_id, render_mode="rgb_array" if gif else None)
    except gymnasium.error.Error as exc:
        raise ConfigError(f"--env {env_id!r}: {exc}") from None
    obs_dim = int(np.prod(env.observation_space.shape or (0,)))
    if obs_dim != phenotype.in_features:
        raise ConfigError(
            f"--env {env_id!r}: observations have {obs_dim} values; the network takes {phenotype.in_features}"
        )
    normalizer = getattr(task, "obs_norm", None)
    action_space = env.action_space
    frames: list[np.ndarray] = []
    returns: list[float] = []
    with torch.no_grad():
        for episode in range(episodes):
            obs, _ = env.reset(seed=derive_key(seed, 0, episode, "play") % 2**31)
            total, done = 0.0, False
            while not done:
                if gif and len(frames) < max_frames:
                    frames.append(env.render())
                x = torch.as_tensor(np.asarray(obs, dtype=np.float32)).view(1, 1, -1)
                if normalizer is not None:
                    x = normalizer.normalize(x)
                out = phenotype.forward(_as_population(member), x).reshape(-1)
                obs, reward, terminated, truncated, _ = env.step(_action(out, action_space))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    env.close()
    if gif:
        _write_gif(frames, Path(gif), fps)
    return returns


def _action(out: torch.Tensor, space: Any) -> Any:
    import gymnasium

    if isinstance(space, gymnasium.spaces.Discrete):
        return int(out[: int(space.n)].argmax()) + int(space.start)
    low = torch.as_tensor(space.low, dtype=torch.float32)
    high = torch.as_tensor(space.high, dtype=torch.float32)
    bounded = torch.isfinite(low) & torch.isfinite(high)
    low, high = torch.where(bounded, low, -1.0), torch.where(bounded, high, 1.0)
    action = low + (torch.tanh(out[: low.numel()].float()) + 1.0) * 0.5 * (high - low)
    return action.reshape(space.shape).numpy().astype(space.dtype)


def _write_gif(frames: list[np.ndarray], path: Path, fps: int) -> None:
    from PIL import Image

    if not frames:
        raise ConfigError("no frames were rendered; allowed: an environment with rgb_array rendering")
    images = [Image.fromarray(frame) for frame in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=max(1, 1000 // fps), loop=0)
