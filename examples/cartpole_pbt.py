"""PBT of a policy-gradient learner on the batched CartPole-v1: lr and entropy coefficient evolve.

    PYTHONPATH=src .venv/bin/python examples/cartpole_pbt.py            # P = 8, writes runs/cartpole_pbt
    PYTHONPATH=src .venv/bin/python examples/cartpole_pbt.py --generations 4 --out /tmp/cp

The learner is REINFORCE with a baseline (Williams 1992): per update, every member plays
``episodes`` episodes of the native batched CartPole (all members' episodes are one
``[P * episodes]`` env), then takes one AdamW step on
``-mean(log pi(a|s) * (G_t - b_t)) - entropy_coef * H(pi(.|s))``, with ``G_t`` the discounted
return-to-go and ``b_t`` its mean over the member's episodes at the same time step. The
members' policies are stacked (``TrainableMLP`` + ``torch.func``), updated by one
``VectorAdamW`` step with per-member lr: this file is a user's own task built from the library's
pieces. ``ready_every`` updates per ready interval; fitness = mean return of the interval's last
update; ``validate`` plays 100 greedy episodes with the best member (``eval_return_mean``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import torch
from torch.func import functional_call, grad, vmap

from neuroevo.core import random as nrandom
from neuroevo.core.types import Fitness
from neuroevo.nn.stacked import VectorAdamW, copy_rows
from neuroevo.nn.trainable import TrainableMLP
from neuroevo.runtime import evolve
from neuroevo.strategies.pbt import PBT
from neuroevo.tasks.base import Task
from neuroevo.tasks.control.cartpole import CartPole

GAMMA = 0.99


class CartPoleReinforce(Task):
    """Stacked REINFORCE learners; one PBT member each."""

    name = "cartpole_reinforce"

    def __init__(self, episodes: int = 16, seed: int = 0):
        self.episodes, self.seed = episodes, seed
        self.in_features, self.out_features = 4, 2
        self.optimizer = VectorAdamW()
        self.params: dict[str, torch.Tensor] | None = None

    # -- episodes ------------------------------------------------------------------------------
    def rollout(
        self, phenotype: TrainableMLP, params: dict, episodes: int, gen: torch.Generator, greedy=False
    ):
        """Observations ``[T, P, E, 4]``, actions and alive masks ``[T, P, E]``, returns ``[P, E]``."""
        size = next(iter(params.values())).shape[0]
        env = CartPole()
        obs = env.reset(gen, size * episodes).view(size, episodes, 4)
        alive = torch.ones(size, episodes, dtype=torch.bool)
        trace_obs, trace_act, trace_alive = [], [], []
        total = torch.zeros(size, episodes)
        with torch.no_grad():
            for _ in range(env.max_steps):
                logits = phenotype.forward_stacked(params, obs)
                if greedy:
                    action = logits.argmax(-1)
                else:
                    p1 = torch.softmax(logits, -1)[..., 1]
                    action = (torch.rand(size, episodes, generator=gen) < p1).long()
                trace_obs.append(obs)
                trace_act.append(action)
                trace_alive.append(alive)
                obs, reward, terminated, truncated = env.step(action.view(-1), alive.view(-1))
                obs = obs.view(size, episodes, 4)
                total += reward.view(size, episodes)
                alive = alive & ~(terminated | truncated).view(size, episodes)
                if not bool(alive.any()):
                    break
        return torch.stack(trace_obs), torch.stack(trace_act), torch.stack(trace_alive), total

    # -- training --------------------------------------------------------------------------------
    def _grads(self, phenotype: TrainableMLP):
        base = phenotype.base

        def loss(params, obs, act, adv, mask, entropy_coef):
            logp = torch.log_softmax(functional_call(base, params, (obs,)), -1)
            picked = logp.gather(-1, act.unsqueeze(-1)).squeeze(-1)
            entropy = -(logp.exp() * logp).sum(-1)
            n = mask.sum().clamp_min(1)
            return -((picked * adv + entropy_coef * entropy) * mask).sum() / n

        return vmap(grad(loss))

    def update(self, phenotype, hp: dict[str, torch.Tensor], gen: torch.Generator) -> torch.Tensor:
        obs, act, alive, total = self.rollout(phenotype, self.params, self.episodes, gen)
        mask = alive.float()
        returns = torch.zeros_like(mask)
        running = torch.zeros_like(mask[0])
        for t in range(mask.shape[0] - 1, -1, -1):  # discounted return-to-go, every member at once
            running = mask[t] * (1.0 + GAMMA * running)
            returns[t] = running
        count = mask.sum(2, keepdim=True).clamp_min(1)
        baseline = (returns * mask).sum(2, keepdim=True) / count
        adv = (returns - baseline) * mask
        scale = adv.pow(2).sum((0, 2), keepdim=True).div(mask.sum((0, 2), keepdim=True).clamp_min(1)).sqrt()
        adv = adv / scale.clamp_min(1e-6)
        per_member = lambda x: x.transpose(0, 1).reshape(x.shape[1], -1, *x.shape[3:])  # noqa: E731
        grads = self._grads(phenotype)(
            self.params,
            per_member(obs),
            per_member(act),
            per_member(adv),
            per_member(mask),
            hp["entropy_coef"].float(),
        )
        self.step += 1
        self.optimizer.step(self.params, grads, self.opt_state, hp, self.step)
        return total.mean(1)

    def evaluate(
        self, phenotype: TrainableMLP, population: Any, generation: int = 0, *, stream: int = 0
    ) -> Fitness:
        size = len(population)
        if self.params is None:
            flats = torch.stack(
                [
                    phenotype.init_params(nrandom.member_generator(self.seed, 0, i, "init"))
                    for i in range(size)
                ]
            )
            self.params = {k: v.clone() for k, v in phenotype.unflatten(flats).items()}
            self.opt_state = self.optimizer.init_state(self.params)
            self.step = torch.zeros(size, dtype=torch.long)
        copy_rows(
            [*self.params.values(), *[t for s in self.opt_state.values() for t in s.values()], self.step],
            population.parents,
        )
        values = population.hyperparams()
        hp = {
            "lr": values["lr"],
            "entropy_coef": values["entropy_coef"],
            "beta1": torch.full((size,), 0.9),
            "beta2": torch.full((size,), 0.999),
            "eps": torch.full((size,), 1e-8),
            "weight_decay": torch.zeros(size),
        }
        returns = torch.zeros(size)
        for k in range(int(population.steps)):
            returns = self.update(
                phenotype, hp, nrandom.member_generator(self.seed, generation, k, "episodes")
            )
        params = self.params
        population.attach(lambda i: torch.cat([v[i].reshape(-1) for v in params.values()]))
        return Fitness(values=returns, steps=size * int(population.steps) * self.episodes)

    def validate(self, phenotype: TrainableMLP, params: Any) -> dict[str, float]:
        single = {k: v.unsqueeze(0) for k, v in phenotype.named_tensors(params).items()}
        gen = nrandom.member_generator(self.seed, 0, 0, "eval")
        *_, total = self.rollout(phenotype, single, 100, gen, greedy=True)
        return {"eval_return_mean": float(total.mean())}

    def state_dict(self) -> dict[str, Any]:
        if self.params is None:
            return {}
        return {"params": self.params, "opt": self.opt_state, "step": self.step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.params = {k: v.clone() for k, v in state["params"].items()}
            self.opt_state = {b: {k: v.clone() for k, v in s.items()} for b, s in state["opt"].items()}
            self.step = state["step"].clone()


def main() -> None:
    parser = argparse.ArgumentParser()
    # NEUROEVO_EXAMPLE_GENERATIONS: the short version the example tests run
    parser.add_argument(
        "--generations", type=int, default=int(os.environ.get("NEUROEVO_EXAMPLE_GENERATIONS", 6))
    )
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/cartpole_pbt")
    args = parser.parse_args()
    torch.set_num_threads(1)
    space = {
        "lr": {"low": 1e-3, "high": 0.1, "log": True},
        "entropy_coef": {"low": 1e-4, "high": 0.1, "log": True},
    }
    strategy = PBT(args.population, space=space, ready_every=10, seed=args.seed)
    result = evolve(
        strategy,
        TrainableMLP([4, 32, 2], "tanh"),
        CartPoleReinforce(seed=args.seed),
        generations=args.generations,
        run_dir=args.out,
        checkpoint_every=5,
    )
    print(
        f"best member: mean return {result.best.fitness:.1f} (training episodes); "
        f"greedy over 100 episodes: {result.validation['eval_return_mean']:.1f}"
    )


if __name__ == "__main__":
    main()
