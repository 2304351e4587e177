"""``ControlTask``: fitness = mean return over E episodes of a native batched environment.

All ``P x E`` episodes run as one batch of ``N = P * E`` environment rows (row ``p * E + e``
is member p's episode e). Every member sees the same E initial states in a generation
(common random numbers), drawn from the key ``(seed, generation, stream, "episodes")``, so a
resumed run replays the same episodes. ``validate`` uses the distinct purpose
``"validation"``: held-out initial states that training never sees.

Finished episodes are masked; when a tensor population has at most half its members still
running, the finished members are dropped from the batch (their rows and parameter rows),
which is what makes early-failing populations cheap (not for stateful phenotypes, those with
``reset_state(population)``, which is called at the start of every rollout).
``Fitness.steps`` counts only the env steps of running episodes.

Observation normalisation (on by default) follows OpenAI-ES: statistics frozen during an
evaluation, then updated with every observation a policy was fed; they live in
``state_dict()`` so a resumed run continues with the same statistics. The rollout sums the
observations per member; the merge (``ShardedEvaluation.merge_members``) reduces those sums
over the population in member order, so a population split into shards on several workers
(``neuroevo.runtime.ray_executor``) gives the same statistics, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from neuroevo.core import random as nrandom
from neuroevo.core.compile import compile_enabled
from neuroevo.core.contracts import Capability, MemberResults, activations_per_sample
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task, TaskParams
from neuroevo.tasks.control.base import BatchedEnv
from neuroevo.tasks.control.envs import ENVS, make_env
from neuroevo.tasks.control.fused import COMPILE_MIN_ROWS, block_steps, block_weights, fusable, fused_block
from neuroevo.tasks.control.normalization import RunningObsNorm
from neuroevo.tasks.control.policy import as_population, map_actions, population_size

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class ControlParams(TaskParams):
    env: str = Field("CartPole-v1", description=f"environment id; one of {', '.join(ENVS)}")
    episodes: int = Field(5, ge=1, description="episodes per member; fitness is their mean return")
    max_steps: int | None = Field(None, ge=1, description="episode step limit; default: the env's own")
    normalize_obs: bool = Field(True, description="running mean/std observation normalisation (OpenAI-ES)")
    deterministic: bool = Field(True, description="argmax / tanh-mean actions; false samples actions")
    action_noise: float = Field(0.1, ge=0, description="pre-tanh Gaussian std when deterministic = false")
    eval_episodes: int = Field(100, ge=1, description="held-out episodes run by validate()")
    dtype: Literal["float32", "float64"] = Field("float32", description="env and observation precision")
    compile: bool | Literal["auto"] = Field(
        False,
        description="torch.compile the fused rollout: true, false, or auto (when P x E >= "
        f"{COMPILE_MIN_ROWS}); see neuroevo.tasks.control.fused",
    )

    @field_validator("env")
    @classmethod
    def _known_env(cls, value: str) -> str:
        if value not in ENVS:
            raise ValueError(f"unknown env {value!r}; allowed: {', '.join(ENVS)}")
        return value


@dataclass
class Rollout:
    """Per-episode results of one batched rollout, ``[P, E]`` each, plus per-member observation
    statistics: ``obs_count[P]``, ``obs_sum[P, obs]``, ``obs_sumsq[P, obs]`` (float64)."""

    returns: torch.Tensor
    lengths: torch.Tensor
    steps: int
    obs_count: torch.Tensor
    obs_sum: torch.Tensor
    obs_sumsq: torch.Tensor


class EpisodicTask(Task):
    """What control and Gymnasium tasks share: fitness = mean return, held-out validation, obs stats.

    A subclass gives ``episode_starts(episodes, generation, stream, purpose)`` (initial states or
    reset seeds keyed by the counter-based generator) and ``rollout(phenotype, population,
    starts, action_generator=)``, and sets ``episodes``, ``eval_episodes``, ``deterministic``,
    ``seed``, ``device`` and ``obs_norm``.
    """

    #: held-out validation episodes (purpose "validation") that training never sees
    provides: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.INPUTS, Capability.EPISODES, Capability.VALIDATION}
    )

    episodes: int
    eval_episodes: int
    deterministic: bool
    seed: int
    device: torch.device
    obs_norm: RunningObsNorm

    def episode_starts(self, episodes: int, generation: int, stream: int, purpose: str) -> Any:
        raise NotImplementedError

    def rollout(self, phenotype: Any, population: Any, starts: Any, *, action_generator=None) -> Rollout:
        raise NotImplementedError

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        """Mean return over ``episodes`` episodes per member; updates the observation statistics after."""
        results = self.evaluate_members(phenotype, population, generation, stream=stream)
        return self.merge_members(results, generation, stream=stream)

    def evaluate_members(
        self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0
    ) -> MemberResults:
        """The ``ShardedEvaluation`` hook: mean returns, episode lengths and observation sums per
        member, with the statistics frozen (the task is not changed)."""
        starts = self.episode_starts(self.episodes, generation, stream, "episodes")
        action_gen = None
        if not self.deterministic:
            action_gen = nrandom.member_generator(self.seed, generation, stream, "actions")
        result = self.rollout(phenotype, population, starts, action_generator=action_gen)
        rows = {"lengths": result.lengths, "obs_count": result.obs_count}
        rows.update(obs_sum=result.obs_sum, obs_sumsq=result.obs_sumsq)
        return MemberResults(values=result.returns.mean(1).to(self.device), steps=result.steps, rows=rows)

    def merge_members(self, results: MemberResults, generation: int = 0, *, stream: int = 0) -> Fitness:
        """Merge every member's observation sums into the statistics (in member order) and return
        the population's fitness and mean episode length."""
        rows = results.rows
        total = rows["obs_count"].sum()
        self.obs_norm.update(float(total), rows["obs_sum"].sum(0), rows["obs_sumsq"].sum(0))
        return Fitness(
            values=results.values,
            steps=results.steps,
            metrics={"episode_length_mean": float(rows["lengths"].double().mean())},
        )

    def validate(self, phenotype: Any, params: Any) -> dict[str, float]:
        """Return of one member over ``eval_episodes`` held-out episodes (statistics not updated)."""
        starts = self.episode_starts(self.eval_episodes, 0, 0, "validation")
        action_gen = None
        if not self.deterministic:
            action_gen = nrandom.member_generator(self.seed, 0, 0, "validation_actions")
        result = self.rollout(phenotype, as_population(params), starts, action_generator=action_gen)
        returns = result.returns[0]
        return {
            "eval_return_mean": float(returns.mean()),
            "eval_return_std": float(returns.std(unbiased=False)),
            "eval_length_mean": float(result.lengths[0].double().mean()),
        }

    def bytes_per_member(self, phenotype: Any) -> int:
        """The ``EstimatesMemory`` hook: one member's episodes in flight, each with its
        observations, activations and env state (float64 at most), with temporaries."""
        per_episode = activations_per_sample(phenotype) + 4 * int(self.in_features) + 16
        return int(self.episodes) * per_episode * 8 * 4

    def export_io(self) -> dict[str, Any]:
        """The ``ExportsIO`` hook: raw observations in (normalised with the current stats), actions out."""
        io: dict[str, Any] = {"env": self.env_id, "input": [], **self.action_io()}
        if self.obs_norm.enabled:
            stats = {"mean": self.obs_norm.mean.tolist(), "std": self.obs_norm.std.tolist()}
            io["input"] = [*io["input"], {"standardize": stats}]
        io["describe"] = {
            "input": f"raw {self.env_id} observations [B, {self.in_features}] (float32)",
            "output": self.action_words(),
        }
        return io

    def action_io(self) -> dict[str, Any]:
        """The output mapping as an io spec (``neuroevo.nn.io``): argmax, or tanh scaled to the bounds."""
        raise NotImplementedError

    def action_words(self) -> str:
        output = self.action_io()["output"]
        if "discrete" in output:
            return f"actions [B] (int64), argmax of {output['discrete']['n']} outputs: env.step(int(a))"
        return f"actions [B, {len(output['box']['low'])}] (float32) within the action bounds"

    def state_dict(self) -> dict[str, Any]:
        return {"obs_norm": self.obs_norm.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "obs_norm" in state:
            self.obs_norm.load_state_dict(state["obs_norm"])


class ControlTask(EpisodicTask):
    """Mean return of each member over ``episodes`` episodes of a native batched env (see module doc)."""

    name = "control"
    Params = ControlParams

    def __init__(
        self,
        env: str | None = None,
        *,
        params: ControlParams | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        compact: bool = True,
        **keys: Any,
    ):
        """``ControlTask("CartPole-v1", episodes=3)``: ``env`` and ``keys`` are ``ControlParams`` keys.

        ``compact = False`` keeps finished members in the batch (for tests of the compaction).
        """
        if env is not None:
            keys["env"] = env
        if isinstance(keys.get("dtype"), torch.dtype):
            keys["dtype"] = next(name for name, dt in DTYPES.items() if dt == keys["dtype"])
        self.params = p = self.params_from(params, **keys)
        self.env_id, self.episodes, self.max_steps = p.env, p.episodes, p.max_steps
        self.deterministic, self.action_noise, self.eval_episodes = (
            p.deterministic,
            p.action_noise,
            p.eval_episodes,
        )
        self.dtype = dtype = DTYPES[p.dtype]
        self.seed = int(seed)
        self.device = torch.device(device)
        self.compact = bool(compact)
        self.compile = p.compile
        self.env = self.make_env()
        self.in_features = self.env.obs_dim
        self.out_features = self.env.num_actions if self.env.discrete else self.env.action_dim
        self.obs_norm = RunningObsNorm(self.env.obs_dim, enabled=p.normalize_obs, device=self.device)
        if not self.env.discrete:
            self.action_low = torch.tensor(self.env.action_low, dtype=dtype, device=self.device)
            self.action_high = torch.tensor(self.env.action_high, dtype=dtype, device=self.device)

    def action_io(self) -> dict[str, Any]:
        if self.env.discrete:
            return {"output": {"discrete": {"n": self.env.num_actions, "start": 0}}}
        low, high = self.action_low.tolist(), self.action_high.tolist()
        return {"output": {"box": {"low": low, "high": high}}}

    def make_env(self) -> BatchedEnv:
        """A fresh batched environment with this task's step limit, dtype and device."""
        return make_env(self.env_id, max_episode_steps=self.max_steps, dtype=self.dtype, device=self.device)

    def initial_states(self, episodes: int, generation: int, stream: int, purpose: str) -> torch.Tensor:
        """``[episodes, S]`` initial states keyed by ``(seed, generation, stream, purpose)``."""
        gen = nrandom.member_generator(self.seed, generation, stream, purpose)
        return self.env.sample_initial_states(episodes, gen)

    # -- the rollout ------------------------------------------------------------------------------
    def rollout(
        self,
        phenotype: Any,
        population: Any,
        initial_states: torch.Tensor,
        *,
        action_generator: torch.Generator | None = None,
    ) -> Rollout:
        """Run every member from each of ``initial_states[E, S]`` until all episodes end.

        Uses the current (frozen) observation statistics and does not update them. An MLP
        population with deterministic actions runs the fused path (``fused_rollout``).
        """
        if fusable(phenotype, population, deterministic=self.deterministic):
            return self.fused_rollout(phenotype, population, initial_states)
        return self.plain_rollout(phenotype, population, initial_states, action_generator=action_generator)

    def plain_rollout(
        self,
        phenotype: Any,
        population: Any,
        initial_states: torch.Tensor,
        *,
        action_generator: torch.Generator | None = None,
    ) -> Rollout:
        """``rollout`` for any phenotype and population: one eager step at a time, finished
        members dropped from the batch as soon as at most half are running."""
        members = population_size(population)
        episodes = int(initial_states.shape[0])
        env = self.make_env()
        obs = env.reset(initial_states.repeat(members, 1))
        n = members * episodes
        dev, dtype = self.device, self.dtype
        returns = torch.zeros(n, dtype=torch.float64, device=dev)
        lengths = torch.zeros(n, dtype=torch.long, device=dev)
        rows = torch.arange(n, device=dev)
        member_rows = torch.arange(members, device=dev)  # the member of each running population row
        active = torch.ones(n, dtype=torch.bool, device=dev)
        obs_count = torch.zeros(members, dtype=torch.float64, device=dev)
        obs_sum = torch.zeros(members, env.obs_dim, dtype=torch.float64, device=dev)
        obs_sumsq = torch.zeros(members, env.obs_dim, dtype=torch.float64, device=dev)
        frozen = self.obs_norm.frozen(dtype)
        reset_state = getattr(phenotype, "reset_state", None)
        if callable(reset_state):  # recurrent phenotypes: every episode starts from a clean state
            reset_state(population)
        can_compact = (
            self.compact
            and not callable(reset_state)
            and isinstance(population, torch.Tensor)
            and population.dim() == 2
        )
        pop, alive = population, members
        steps = 0
        with torch.inference_mode():
            for _ in range(env.max_steps):
                if self.obs_norm.enabled:  # per-member sums: the merge reduces them in member order
                    mask = active.unsqueeze(1).to(torch.float64)
                    obs64 = (obs.to(torch.float64) * mask).view(alive, episodes, -1)
                    obs_count.index_add_(0, member_rows, mask.view(alive, episodes).sum(1))
                    obs_sum.index_add_(0, member_rows, obs64.sum(1))
                    obs_sumsq.index_add_(0, member_rows, (obs64 * obs64).sum(1))
                x = self.obs_norm.normalize(obs, frozen).view(alive, episodes, -1)
                out = phenotype.forward(pop, x).reshape(alive * episodes, -1)
                if env.discrete:
                    actions = map_actions(
                        out,
                        num_actions=env.num_actions,
                        deterministic=self.deterministic,
                        generator=action_generator,
                    )
                else:
                    actions = map_actions(
                        out,
                        low=self.action_low,
                        high=self.action_high,
                        deterministic=self.deterministic,
                        action_noise=self.action_noise,
                        generator=action_generator,
                    )
                obs, reward, terminated, truncated = env.step(actions, active)
                returns.index_add_(0, rows, reward.to(torch.float64))
                lengths.index_add_(0, rows, active.long())
                steps += int(active.sum())
                active = active & ~(terminated | truncated)
                running = active.view(alive, episodes).any(1)
                still = int(running.sum())
                if still == 0:
                    break
                if can_compact and still <= alive // 2:
                    keep = running.repeat_interleave(episodes)
                    pop = pop[running]
                    env.select(keep)
                    obs, active, rows = obs[keep], active[keep], rows[keep]
                    member_rows = member_rows[running]
                    alive = still
        return Rollout(
            returns=returns.view(members, episodes),
            lengths=lengths.view(members, episodes),
            steps=steps,
            obs_count=obs_count,
            obs_sum=obs_sum,
            obs_sumsq=obs_sumsq,
        )

    def episode_starts(self, episodes: int, generation: int, stream: int, purpose: str) -> torch.Tensor:
        return self.initial_states(episodes, generation, stream, purpose)

    # -- the fused rollout ---------------------------------------------------------------------------
    def use_compile(self, rows: int) -> bool:
        """Whether a fused rollout of ``rows`` env rows (P x E) is compiled (``compile`` key)."""
        if self.compile == "auto":
            return compile_enabled() and rows >= COMPILE_MIN_ROWS
        return bool(self.compile)

    def fused_rollout(
        self, phenotype: Any, population: torch.Tensor, initial_states: torch.Tensor, *, compiled=None
    ) -> Rollout:
        """``rollout`` for an MLP population, ``block_steps(env)`` steps per fused block (see ``fused``).

        Eager (``compiled`` False) it gives the plain path's results bit for bit; compiled they
        agree to float rounding. ``compiled`` None decides by the ``compile`` key.
        """
        members = int(population.shape[0])
        episodes = int(initial_states.shape[0])
        n = members * episodes
        compiled = self.use_compile(n) if compiled is None else bool(compiled)
        block = fused_block(
            self.env, phenotype.activations, normalize=self.obs_norm.enabled, compiled=compiled
        )
        env, dev, dtype = self.env, self.device, self.dtype
        state = initial_states.to(device=dev, dtype=dtype).repeat(members, 1)
        elapsed = torch.zeros(n, dtype=torch.long, device=dev)
        active = torch.ones(n, dtype=torch.bool, device=dev)
        returns = torch.zeros(n, dtype=torch.float64, device=dev)
        lengths = torch.zeros(n, dtype=torch.long, device=dev)
        obs_sum = torch.zeros(members, env.obs_dim, dtype=torch.float64, device=dev)
        obs_sumsq = torch.zeros(members, env.obs_dim, dtype=torch.float64, device=dev)
        mean, inv_std = self.obs_norm.frozen(dtype)
        if env.discrete:
            low = high = torch.zeros(1, dtype=dtype, device=dev)
        else:
            low, high = self.action_low, self.action_high
        out_rows = torch.arange(n, device=dev)  # the full-size row of each working row
        out_members = torch.arange(members, device=dev)
        results = [returns.clone(), lengths.clone(), obs_sum.clone(), obs_sumsq.clone()]
        can_compact = self.compact and not compiled
        pop = population
        carry = (state, elapsed, active, returns, lengths, obs_sum, obs_sumsq)

        def flush(rows: torch.Tensor, member_rows: torch.Tensor, keep: torch.Tensor | None = None) -> None:
            """Copy finished working rows (all when ``keep`` is None) into the full-size results."""
            w_returns, w_lengths, w_sum, w_sumsq = carry[3:]
            sel, msel = (slice(None), slice(None)) if keep is None else (~keep, ~running)
            results[0][rows[sel]] = w_returns[sel]
            results[1][rows[sel]] = w_lengths[sel]
            if self.obs_norm.enabled:
                results[2][member_rows[msel]] = w_sum[msel]
                results[3][member_rows[msel]] = w_sumsq[msel]

        with torch.inference_mode():  # ~20% less per-op overhead than no_grad on small tensors
            weights = block_weights(phenotype, pop)
            for _ in range(-(-env.max_steps // block_steps(env, compiled=compiled))):
                carry = block(weights, mean, inv_std, low, high, *carry)
                active = carry[2]
                running = active.view(-1, episodes).any(1)
                still = int(running.sum())
                if still == 0:
                    break
                alive = running.shape[0]
                if can_compact and still <= alive // 2:
                    keep = running.repeat_interleave(episodes)
                    flush(out_rows, out_members, keep)
                    carry = tuple(t[keep] for t in carry[:5]) + tuple(t[running] for t in carry[5:])
                    out_rows, out_members = out_rows[keep], out_members[running]
                    pop = pop[running]
                    weights = block_weights(phenotype, pop)
            flush(out_rows, out_members)
        returns, lengths = results[0].view(members, episodes), results[1].view(members, episodes)
        count = (
            lengths.sum(1).double()
            if self.obs_norm.enabled
            else torch.zeros(members, dtype=torch.float64, device=dev)
        )
        return Rollout(
            returns=returns,
            lengths=lengths,
            steps=int(lengths.sum()),
            obs_count=count,
            obs_sum=results[2],
            obs_sumsq=results[3],
        )
