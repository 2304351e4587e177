"""``GymTask``: fitness = mean return over E episodes of any registered Gymnasium environment.

The ``P x E`` episodes are stepped through ``gymnasium.vector`` (``SyncVectorEnv`` by default,
``AsyncVectorEnv`` with ``vectorization = "async"``), ``num_envs`` rows at a time (default:
all rows for sync, one per CPU for async), with whole members per chunk. Rows whose episode
ended are ignored (the vector env autoresets them; their rewards are masked out), and the
chunk stops once every row has ended. Every member sees the same E episodes in a
generation: episode e is reset with a Gymnasium seed drawn from the key
``(seed, generation, stream, "episodes")``; ``validate`` uses the purpose ``"validation"``.

Spaces: observations Box (flattened) or Discrete (one-hot); actions Discrete (argmax of the
outputs, or a softmax sample with ``deterministic = false``) or Box (tanh-squashed and
scaled to finite bounds; unbounded dimensions take the raw output). Any other space is a
``ConfigError`` naming it. Observation normalisation is the same as ``ControlTask``'s.
For the five classic-control envs, ``ControlTask`` gives the same returns much faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.errors import ConfigError
from neuroevo.tasks.base import TaskParams
from neuroevo.tasks.control.normalization import RunningObsNorm
from neuroevo.tasks.control.policy import map_actions, population_size
from neuroevo.tasks.control.task import EpisodicTask, Rollout
from neuroevo.tasks.gym_make import make_env

Vectorization = Literal["sync", "async"]


class GymParams(TaskParams):
    env: str = Field("CartPole-v1", description="a registered Gymnasium id with Box/Discrete spaces")
    episodes: int = Field(5, ge=1, description="episodes per member; fitness is their mean return")
    max_steps: int | None = Field(None, ge=1, description="episode step limit; default: the env's own")
    vectorization: Vectorization = Field("sync", description="gymnasium.vector mode: sync or async")
    num_envs: int = Field(
        0, ge=0, description="envs per vector env; 0 = all rows (sync) or one per CPU (async)"
    )
    normalize_obs: bool = Field(True, description="running mean/std observation normalisation (OpenAI-ES)")
    deterministic: bool = Field(True, description="argmax / tanh-mean actions; false samples actions")
    action_noise: float = Field(0.1, ge=0, description="pre-tanh Gaussian std when deterministic = false")
    eval_episodes: int = Field(10, ge=1, description="held-out episodes run by validate()")
    env_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="extra keyword arguments of gym.make"
    )


def _space_error(env_id: str, what: str, space: Any) -> ConfigError:
    return ConfigError(
        f"task.env = {env_id!r} has {what} space {space}; allowed: Box or Discrete {what} spaces"
    )


class GymTask(EpisodicTask):
    """Mean return of each member over ``episodes`` episodes of a Gymnasium env (see module doc)."""

    name = "gym"
    Params = GymParams

    def __init__(
        self,
        env: str | None = None,
        *,
        params: GymParams | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        **keys: Any,
    ):
        """``GymTask("CartPole-v1", episodes=3)``: ``env`` and ``keys`` are ``GymParams`` keys."""
        if env is not None:
            keys["env"] = env
        self.params = p = self.params_from(params, **keys)
        env, max_steps = p.env, p.max_steps
        self.env_id = env
        self.env_kwargs = dict(p.env_kwargs)
        try:
            spec = gymnasium.spec(env)
        except gymnasium.error.Error as err:
            raise ConfigError(
                f"task.env = {env!r} is not a registered Gymnasium id ({err}); "
                "allowed: ids listed by gymnasium.pprint_registry()"
            ) from None
        self.max_steps = int(max_steps or spec.max_episode_steps or 0)
        if self.max_steps < 1:
            raise ConfigError(f"task.env = {env!r} has no time limit; set task.max_steps (allowed: >= 1)")
        self.episodes, self.vectorization, self.num_envs = p.episodes, p.vectorization, p.num_envs
        self.deterministic, self.action_noise, self.eval_episodes = (
            p.deterministic,
            p.action_noise,
            p.eval_episodes,
        )
        self.seed = int(seed)
        self.device = torch.device(device)
        probe = self._make()
        self.observation_space, self.action_space = probe.observation_space, probe.action_space
        probe.close()
        obs_space, act_space = self.observation_space, self.action_space
        if isinstance(obs_space, spaces.Box):
            self.in_features = int(np.prod(obs_space.shape))
        elif isinstance(obs_space, spaces.Discrete):
            self.in_features = int(obs_space.n)
        else:
            raise _space_error(env, "observation", obs_space)
        if isinstance(act_space, spaces.Discrete):
            self.out_features = int(act_space.n)
        elif isinstance(act_space, spaces.Box):
            self.out_features = int(np.prod(act_space.shape))
            low = torch.as_tensor(act_space.low.reshape(-1), dtype=torch.float64)
            high = torch.as_tensor(act_space.high.reshape(-1), dtype=torch.float64)
            self._bounded = torch.isfinite(low) & torch.isfinite(high)
            self.action_low = torch.where(self._bounded, low, -1.0).float()
            self.action_high = torch.where(self._bounded, high, 1.0).float()
        else:
            raise _space_error(env, "action", act_space)
        self.obs_norm = RunningObsNorm(self.in_features, enabled=p.normalize_obs, device=self.device)
        self._vector_envs: dict[int, gymnasium.vector.VectorEnv] = {}

    def action_io(self) -> dict[str, Any]:
        space, io = self.action_space, {}
        if isinstance(self.observation_space, spaces.Discrete):
            io["input"] = [{"one_hot": {"n": self.in_features}}]
        if isinstance(space, spaces.Discrete):
            io["output"] = {"discrete": {"n": int(space.n), "start": int(space.start)}}
        else:
            low, high, bounded = self.action_low.tolist(), self.action_high.tolist(), self._bounded.tolist()
            io["output"] = {"box": {"low": low, "high": high, "bounded": bounded}}
        return io

    # -- environments ---------------------------------------------------------------------------------
    def _make(self) -> gymnasium.Env:
        return make_env(self.env_id, "task.env", max_episode_steps=self.max_steps, **self.env_kwargs)

    def _vector_env(self, n: int) -> gymnasium.vector.VectorEnv:
        env = self._vector_envs.get(n)
        if env is None:
            fns: list[Callable[[], gymnasium.Env]] = [self._make] * n
            if self.vectorization == "async":
                env = gymnasium.vector.AsyncVectorEnv(fns)
            else:
                env = gymnasium.vector.SyncVectorEnv(fns)
            self._vector_envs[n] = env
        return env

    def close(self) -> None:
        """Close the vector envs (worker processes in async mode)."""
        for env in self._vector_envs.values():
            env.close()
        self._vector_envs.clear()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: nothing left to close cleanly
            pass

    def episode_seeds(self, episodes: int, generation: int, stream: int, purpose: str) -> list[int]:
        """Gymnasium reset seeds of ``episodes`` episodes keyed by ``(seed, generation, stream, purpose)``."""
        gen = nrandom.member_generator(self.seed, generation, stream, purpose)
        return torch.randint(0, 2**31 - 1, (episodes,), generator=gen).tolist()

    # -- observation / action conversion --------------------------------------------------------------
    def _obs_tensor(self, obs: Any, n: int) -> torch.Tensor:
        if isinstance(self.observation_space, spaces.Discrete):
            idx = torch.as_tensor(np.asarray(obs), dtype=torch.long).reshape(n) - int(
                self.observation_space.start
            )
            return torch.nn.functional.one_hot(idx, self.in_features).float()
        return torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(n, -1))

    def _actions(self, out: torch.Tensor, generator: torch.Generator | None) -> np.ndarray:
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            idx = map_actions(
                out, num_actions=int(space.n), deterministic=self.deterministic, generator=generator
            )
            return idx.cpu().numpy().astype(space.dtype) + space.start
        squashed = map_actions(
            out,
            low=self.action_low,
            high=self.action_high,
            deterministic=self.deterministic,
            action_noise=self.action_noise,
            generator=generator,
        )
        act = torch.where(self._bounded.to(out.device), squashed, out)
        return act.cpu().numpy().astype(space.dtype).reshape(out.shape[0], *space.shape)

    # -- the rollout ----------------------------------------------------------------------------------
    def rollout(
        self,
        phenotype: Any,
        population: Any,
        seeds: list[int],
        *,
        action_generator: torch.Generator | None = None,
    ) -> Rollout:
        """Run every member on the episodes reset with ``seeds`` (frozen observation statistics)."""
        members, episodes = population_size(population), len(seeds)
        if self.num_envs:
            chunk = self.num_envs
        else:
            chunk = members * episodes if self.vectorization == "sync" else os.cpu_count() or 1
        per_chunk = max(1, chunk // episodes)
        if not isinstance(population, torch.Tensor):
            per_chunk = members  # only tensor populations can be sliced by member
        returns = torch.zeros(members, episodes, dtype=torch.float64)
        lengths = torch.zeros(members, episodes, dtype=torch.long)
        obs_count = torch.zeros(members, dtype=torch.float64)  # per member: the merge reduces in order
        obs_sum = torch.zeros(members, self.in_features, dtype=torch.float64)
        obs_sumsq = torch.zeros(members, self.in_features, dtype=torch.float64)
        frozen = self.obs_norm.frozen(torch.float32)
        steps = 0
        with torch.no_grad():
            for m0 in range(0, members, per_chunk):
                m1 = min(members, m0 + per_chunk)
                pop = population[m0:m1] if isinstance(population, torch.Tensor) else population
                n = (m1 - m0) * episodes
                env = self._vector_env(n)
                obs, _ = env.reset(seed=list(seeds) * (m1 - m0))
                reset_state = getattr(phenotype, "reset_state", None)
                if callable(reset_state):  # recurrent phenotypes: episodes start from a clean state
                    reset_state(pop)
                active = np.ones(n, dtype=bool)
                ret = np.zeros(n, dtype=np.float64)
                length = np.zeros(n, dtype=np.int64)
                for _ in range(self.max_steps):
                    x = self._obs_tensor(obs, n)
                    if self.obs_norm.enabled:
                        mask = torch.from_numpy(active).to(torch.float64)
                        seen = (x.to(torch.float64) * mask.unsqueeze(1)).view(m1 - m0, episodes, -1)
                        obs_count[m0:m1] += mask.view(m1 - m0, episodes).sum(1)
                        obs_sum[m0:m1] += seen.sum(1)
                        obs_sumsq[m0:m1] += (seen * seen).sum(1)
                    x = self.obs_norm.normalize(x.to(self.device), frozen).view(m1 - m0, episodes, -1)
                    out = phenotype.forward(pop, x).reshape(n, -1)
                    obs, reward, terminated, truncated, _ = env.step(self._actions(out, action_generator))
                    ret += np.where(active, reward, 0.0)
                    length += active
                    steps += int(active.sum())
                    active &= ~(np.asarray(terminated) | np.asarray(truncated))
                    if not active.any():
                        break
                returns[m0:m1] = torch.from_numpy(ret).view(m1 - m0, episodes)
                lengths[m0:m1] = torch.from_numpy(length).view(m1 - m0, episodes)
        return Rollout(returns, lengths, steps, obs_count, obs_sum, obs_sumsq)

    def episode_starts(self, episodes: int, generation: int, stream: int, purpose: str) -> list[int]:
        return self.episode_seeds(episodes, generation, stream, purpose)
