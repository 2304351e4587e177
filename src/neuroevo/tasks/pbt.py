"""PBT's task: train a whole population of networks together, score each on validation data.

``pbt_supervised`` trains one network per member on a data set the project ships (digits,
iris, breast_cancer, sine), all members at once: their weights are stacked tensors
``[P, *shape]`` (``torch.func.stack_module_state``), one training step is one
``vmap(grad_and_value(loss))`` over the members plus one vectorised optimiser update
(``neuroevo.nn.stacked``), with no Python loop over members.

``evaluate(phenotype, population, generation)`` is one ready interval of synchronous PBT:

1. **exploit**: members with ``population.parents[i] >= 0`` copy rows of every stacked tensor
   (weights, optimiser state incl. Adam moments, step counts) from member ``parents[i]`` *as
   saved at the last ready point*, i.e. the task state that ``state_dict`` returns and the run
   checkpointed. A parent without a saved state is an error, never a fresh start;
2. train every member ``population.steps`` steps with its own hyperparameters;
3. fitness = ``fitness_metric`` of each member on the validation split.

Hyperparameters a member does not get from the search space take this task's values
(``lr``, ``momentum``, ...). Per-member **batch size**: each step draws ``max(batch_size)``
examples per member (uniformly, with replacement; each member its own draw) and weights the loss of
example ``b`` of member ``i`` by ``[b < batch_size_i] / batch_size_i``: a mask over the largest
batch, so member ``i``'s gradient is its mean loss over its first ``batch_size_i`` examples.
Per-member **dropout**: inverted-dropout masks per hidden layer, ``[P, B, width]``, drawn
outside the vmapped function and passed to ``TrainableMLP.module().forward``. Batches and masks
come from the keys (seed, generation, step within the interval, purpose), so a resumed run
trains on the same data.

Asynchronous PBT (``population.ready`` set, ``strategy.mode = "async"``): the members train
together as above, one *tick* per call, but each has its own ready points. The task keeps a
second copy of every stacked tensor, the **saved** state: after training, the rows of the
ready members are written to it (their ready point); an exploit copies the parent's saved
rows, which may be older than its current ones, into both the member's current and saved
rows. The saved copy is in ``state_dict`` (so in checkpoints), so a resume continues exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.nn.stacked import VECTOR_OPTIMIZERS, copy_rows
from neuroevo.tasks.base import Task, TaskParams
from neuroevo.tasks.supervised import BreastCancer, Digits, Iris, Sine, SupervisedTask

DATASETS: dict[str, type[SupervisedTask]] = {
    "digits": Digits,
    "iris": Iris,
    "breast_cancer": BreastCancer,
    "sine": Sine,
}

#: the hyperparameters this task reads, beyond those of its optimiser
TASK_HYPERPARAMS = ("dropout", "batch_size")


class PBTSupervisedParams(TaskParams):
    dataset: Literal["digits", "iris", "breast_cancer", "sine"] = Field("digits", description="data set")
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share (scikit-learn sets)")
    split_seed: int = Field(0, description="seed of the train/validation split")
    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="sgd (with momentum) | adamw")
    fitness_metric: Literal["accuracy", "neg_cross_entropy", "neg_mse"] | None = Field(
        None, description="validation metric used as fitness; default accuracy (neg_mse for regression)"
    )
    lr: float = Field(0.01, gt=0, description="learning rate of members whose space has none")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0, description="SGD: L2 added to the gradient; AdamW: decoupled")
    beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay")
    beta2: float = Field(0.999, ge=0, lt=1, description="AdamW second-moment decay")
    eps: float = Field(1e-8, gt=0, description="AdamW denominator term")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout after each hidden layer")
    batch_size: int = Field(64, ge=1, description="examples per member per step")


# what each hyperparameter may be (checked against the search space before training)
def _positive(v: float) -> bool:
    return v > 0


def _non_negative(v: float) -> bool:
    return v >= 0


def _unit_interval(v: float) -> bool:
    return 0 <= v < 1


_LIMITS: dict[str, tuple[Any, str]] = {
    "lr": (_positive, "> 0"),
    "momentum": (_unit_interval, "in [0, 1)"),
    "weight_decay": (_non_negative, ">= 0"),
    "beta1": (_unit_interval, "in [0, 1)"),
    "beta2": (_unit_interval, "in [0, 1)"),
    "eps": (_positive, "> 0"),
    "dropout": (_unit_interval, "in [0, 1)"),
    "batch_size": (lambda v: v >= 1, ">= 1"),
}


class PBTSupervised(Task):
    """Supervised training of a stacked population; fitness = a validation metric per member."""

    name = "pbt_supervised"
    Params = PBTSupervisedParams
    #: TRAINING, not INPUTS: only networks that are trained (``trainable_*``) pair with this task
    provides: ClassVar[frozenset[Capability]] = frozenset(
        {Capability.VALIDATION, Capability.TRAINING, Capability.READY_POINTS}
    )

    def __init__(
        self, params: PBTSupervisedParams | None = None, *, seed: int = 0, device: Any = "cpu", **keys: Any
    ):
        """``keys`` are ``PBTSupervisedParams`` fields (dataset, optimizer, lr, ...), validated once."""
        self.params = p = self.params_from(params, **keys)
        split_seed = p.split_seed
        self.seed, self.device = int(seed), torch.device(device)
        cls = DATASETS[p.dataset]
        if cls is Sine:
            data = cls(seed=seed, device=device)
            n_val = max(1, round(p.validation_fraction * data.x_train.shape[0]))
            order = torch.randperm(
                data.x_train.shape[0], generator=nrandom.member_generator(split_seed, 0, 0, "split")
            )
            x, y = data.x_train, data.y_train
            data.x_train, data.y_train = x[order[n_val:]], y[order[n_val:]]
            data.x_val, data.y_val = x[order[:n_val]], y[order[:n_val]]
        else:
            data = cls(
                validation_fraction=p.validation_fraction, split_seed=split_seed, seed=seed, device=device
            )
        self.data = data
        self.kind = data.kind
        self.metric = p.fitness_metric or ("neg_mse" if self.kind == "regression" else "accuracy")
        if self.kind == "regression" and self.metric != "neg_mse":
            raise ConfigError(
                f"task.fitness_metric = {self.metric!r} for a regression data set; allowed: neg_mse"
            )
        self.in_features, self.out_features = data.in_features, data.out_features
        self.default_output_activation = "identity"
        self.optimizer = VECTOR_OPTIMIZERS[p.optimizer]()
        self.allowed = (*self.optimizer.hyperparams, *TASK_HYPERPARAMS)
        self.weights: dict[str, torch.Tensor] | None = None
        self.opt_state: dict[str, dict[str, torch.Tensor]] = {}
        self.step = torch.zeros(0, dtype=torch.long)
        self.saved = torch.zeros(0, dtype=torch.bool)
        #: asynchronous mode: every stacked tensor's rows as saved at each member's last ready point
        self.snapshot: list[torch.Tensor] | None = None
        self._grad_fns: dict[bool, Any] = {}
        #: the clock of ``ready_seconds`` intervals (a test may replace it)
        self.clock: Callable[[], float] = time.monotonic
        self.last_steps = 0

    # -- hyperparameters ----------------------------------------------------------------------
    def check_space(self, population: Any) -> None:
        """Every hyperparameter in the space must be one this task reads, with legal bounds."""
        for hp in population.space.params:
            if hp.name not in self.allowed:
                raise ConfigError(
                    f"strategy.space.{hp.name}: the {self.name} task ({self.params.optimizer}) reads no such "
                    f"hyperparameter; allowed: {', '.join(self.allowed)}"
                )
            legal, words = _LIMITS[hp.name]
            values = hp.spec.choices if hp.kind == "categorical" else [hp.spec.low, hp.spec.high]
            numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if len(numbers) != len(values):
                raise ConfigError(f"strategy.space.{hp.name}.choices = {values!r}; allowed: numbers")
            bad = [v for v in numbers if not legal(float(v))]
            if bad:
                raise ConfigError(f"strategy.space.{hp.name} reaches {bad[0]!r}; allowed: {hp.name} {words}")

    def member_hyperparams(self, population: Any) -> dict[str, torch.Tensor]:
        """name -> ``Tensor[P]`` (float64) for every hyperparameter the task reads."""
        size = len(population)
        out = {
            name: torch.full((size,), float(getattr(self.params, name)), dtype=torch.float64)
            for name in self.allowed
        }
        for name, value in population.hyperparams().items():
            out[name] = torch.as_tensor(
                value if isinstance(value, torch.Tensor) else [float(v) for v in value], dtype=torch.float64
            )
        return out

    # -- state ---------------------------------------------------------------------------------
    def init_members(self, phenotype: Any, size: int) -> None:
        """Fresh members: ``phenotype.init_params`` from key (seed, 0, member, "pbt_init") each, stacked."""
        modules = []
        for i in range(size):  # once per run, not on the training path
            flat = phenotype.init_params(nrandom.member_generator(self.seed, 0, i, "pbt_init_weights"))
            modules.append(phenotype.to_module(flat))
        params, _ = stack_module_state(modules)
        self.weights = {k: v.detach().to(self.device).contiguous() for k, v in params.items()}
        self.opt_state = self.optimizer.init_state(self.weights)
        self.step = torch.zeros(size, dtype=torch.long)
        self.saved = torch.zeros(size, dtype=torch.bool)

    def stacked_tensors(self) -> list[torch.Tensor]:
        """Every per-member tensor, in a fixed order: what an exploit copies."""
        assert self.weights is not None
        out = list(self.weights.values())
        for name in self.optimizer.buffers:
            out.extend(self.opt_state[name].values())
        return [*out, self.step]

    def apply_exploit(self, parents: torch.Tensor) -> torch.Tensor:
        """Copy the saved state of each member's parent into it; returns the replaced members."""
        parents = parents.long()
        wanted = parents[parents >= 0]
        if wanted.numel() and not bool(self.saved[wanted].all()):
            missing = int(wanted[~self.saved[wanted]][0])
            raise RuntimeError(f"exploit from member {missing}, which has no saved state at this ready point")
        if self.snapshot is None:  # synchronous: the current state is every member's saved state
            return copy_rows(self.stacked_tensors(), parents)
        dst = torch.nonzero(parents >= 0).flatten()
        if dst.numel():
            src = parents[dst]
            for current, saved in zip(self.stacked_tensors(), self.snapshot, strict=True):
                rows = saved.index_select(0, src.to(saved.device))  # read before any write: simultaneous
                current.index_copy_(0, dst.to(current.device), rows)
                saved.index_copy_(0, dst.to(saved.device), rows)
        return dst

    def save_ready(self, ready: torch.Tensor) -> None:
        """Asynchronous mode: the ``ready`` members' current rows become their saved state."""
        if self.snapshot is None:
            self.snapshot = [t.clone() for t in self.stacked_tensors()]
        idx = torch.nonzero(ready).flatten()
        for current, saved in zip(self.stacked_tensors(), self.snapshot, strict=True):
            saved.index_copy_(0, idx.to(saved.device), current.index_select(0, idx.to(current.device)))
        self.saved[idx] = True

    def state_dict(self) -> dict[str, Any]:
        if self.weights is None:
            return {}
        return {
            "optimizer": self.params.optimizer,
            "params": {k: v.clone() for k, v in self.weights.items()},
            "opt": {b: {k: v.clone() for k, v in s.items()} for b, s in self.opt_state.items()},
            "step": self.step.clone(),
            "saved": self.saved.clone(),
            **({} if self.snapshot is None else {"snapshot": [t.clone() for t in self.snapshot]}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if state["optimizer"] != self.params.optimizer:
            raise ConfigError(
                f"task.optimizer = {self.params.optimizer!r} but the checkpoint holds {state['optimizer']!r}"
            )
        self.weights = {k: v.clone().to(self.device) for k, v in state["params"].items()}
        self.opt_state = {
            b: {k: v.clone().to(self.device) for k, v in s.items()} for b, s in state["opt"].items()
        }
        self.step = state["step"].clone().long()
        self.saved = state["saved"].clone().bool()
        snapshot = state.get("snapshot")
        self.snapshot = None if snapshot is None else [t.clone().to(self.device) for t in snapshot]

    # -- training --------------------------------------------------------------------------------
    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.kind == "regression":
            return ((out - y.view(out.shape[0], -1)) ** 2).mean(-1)
        return F.cross_entropy(out, y, reduction="none")

    def _grad_fn(self, phenotype: Any, dropout: bool):
        key = (id(phenotype), dropout)
        if key not in self._grad_fns:
            base = phenotype.base

            def loss(params, x, y, weight, masks):
                kwargs = {} if masks is None else {"dropout_masks": masks}
                out = functional_call(base, params, (x,), kwargs)
                return (self._loss(out, y) * weight).sum()

            self._grad_fns[key] = vmap(grad_and_value(loss), in_dims=(0, 0, 0, 0, 0 if dropout else None))
        return self._grad_fns[key]

    def train(
        self,
        phenotype: Any,
        hp: dict[str, torch.Tensor],
        steps: int,
        generation: int,
        seconds: float | None = None,
    ) -> torch.Tensor:
        """``steps`` optimiser steps of every member at once; returns the last step's mean loss per member.

        With ``seconds``, steps go on until that much time has passed on ``self.clock`` (at least
        one); ``self.last_steps`` says how many were taken.
        """
        assert self.weights is not None
        x_all, y_all = self.data.x_train, self.data.y_train
        n, size = x_all.shape[0], self.step.shape[0]
        batch = hp["batch_size"].round().long().clamp(1, n)
        b_max = int(batch.max())
        weight = (torch.arange(b_max).unsqueeze(0) < batch.unsqueeze(1)).float() / batch.unsqueeze(1).float()
        weight = weight.to(self.device)
        p_drop = hp["dropout"].float()
        use_dropout = bool((p_drop > 0).any())
        if use_dropout and not phenotype.hidden_sizes:
            raise ConfigError(
                f"dropout > 0 with network {phenotype.spec()['type']!r}, which takes no dropout masks; "
                "allowed: dropout = 0, or network.type = 'trainable_mlp'"
            )
        keep = (1 - p_drop).view(size, 1, 1).to(self.device)
        grad_fn = self._grad_fn(phenotype, use_dropout)
        hp_dev = {k: v.to(self.device) for k, v in hp.items()}
        loss = torch.zeros(size)
        start, k = self.clock(), 0
        while (k < steps) if seconds is None else (k == 0 or self.clock() - start < seconds):
            # one step of the interval; every member advances in each
            gen = nrandom.member_generator(self.seed, generation, k, "pbt_batch")
            idx = torch.randint(n, (size, b_max), generator=gen).to(self.device)
            masks = None
            if use_dropout:
                masks = [
                    (torch.rand(size, b_max, width, generator=gen).to(self.device) < keep).float() / keep
                    for width in phenotype.hidden_sizes
                ]
            grads, loss = grad_fn(self.weights, x_all[idx], y_all[idx], weight, masks)
            self.step += 1
            self.optimizer.step(self.weights, grads, self.opt_state, hp_dev, self.step)
            k += 1
        self.last_steps = k
        return loss.detach()

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        """One ready interval: exploit copies, ``population.steps`` training steps, validation fitness."""
        size = len(population)
        self.check_space(population)
        if self.weights is None:
            self.init_members(phenotype, size)
        if self.step.shape[0] != size:
            raise ValueError(f"the population has {size} members; the task trains {self.step.shape[0]}")
        self.apply_exploit(population.parents)
        hp = self.member_hyperparams(population)
        train_loss = self.train(
            phenotype, hp, int(population.steps), generation, getattr(population, "seconds", None)
        )
        population.trained = torch.full((size,), self.last_steps, dtype=torch.long)
        ready = getattr(population, "ready", None)
        if ready is None:
            self.saved[:] = True  # the state now in memory is this ready point's saved state
        else:
            self.save_ready(ready.to(torch.bool))
        with torch.no_grad():
            out = phenotype.forward_stacked(self.weights, self.data.x_val)
            values = self.data.score(out, self.data.y_val, self.metric)
        params = self.weights
        population.attach(lambda i: torch.cat([v[i].reshape(-1) for v in params.values()]))
        finite = train_loss[torch.isfinite(train_loss)]
        metrics = {"train_loss_median": float(finite.median()) if finite.numel() else float("nan")}
        return Fitness(values=values, steps=size * self.last_steps, metrics=metrics)

    def validate(self, phenotype: Any, params: Any) -> dict[str, float]:
        """Train and validation metrics of one member (the best): its flat weights."""
        return self.data.validate(phenotype, params)

    def export_io(self) -> dict[str, Any]:
        """The ``ExportsIO`` hook: the data set's input/output steps (standardisation, classes)."""
        inner = getattr(self.data, "export_io", None)
        return inner() if callable(inner) else {"input": [], "output": {}}
