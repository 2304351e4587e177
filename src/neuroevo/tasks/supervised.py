"""Supervised fitness: classification and regression over fixed data, batched over the population.

Every member sees the same (mini)batch in a generation; with ``batch_size > 0`` the batch is
drawn from the key (seed, generation, "minibatch"). Metrics (higher is better):
``accuracy``, ``neg_mse``, ``neg_cross_entropy`` (softmax cross-entropy for multi-class,
binary cross-entropy on a probability output for binary targets).

Built-in datasets: ``xor``, ``parity`` (N bits), ``sine`` and ``regression`` (a named 1-D
function), and scikit-learn's bundled ``iris``, ``breast_cancer`` and ``digits`` (nothing is
downloaded), split into train/validation by a fixed seed and standardised on train.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import Capability, activations_per_sample
from neuroevo.core.errors import ConfigError
from neuroevo.core.types import Fitness
from neuroevo.tasks.base import Task, TaskParams

Kind = Literal["binary", "multiclass", "regression"]
Metric = Literal["accuracy", "neg_mse", "neg_cross_entropy"]

ALLOWED_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "neg_mse", "neg_cross_entropy"),
    "multiclass": ("accuracy", "neg_mse", "neg_cross_entropy"),
    "regression": ("neg_mse",),
}

# what ``validate`` reports (MSE on multi-class logits says little, so it is left out)
REPORTED_METRICS: dict[str, tuple[str, ...]] = {
    "binary": ("accuracy", "neg_mse", "neg_cross_entropy"),
    "multiclass": ("accuracy", "neg_cross_entropy"),
    "regression": ("neg_mse",),
}


class SupervisedTask(Task):
    """Fitness of each member on ``(x, y)``; ``validate`` reports held-out metrics of one member.

    Built from tensors (a Python API for your own data); the registered datasets below take
    their config keys instead.
    """

    name = "supervised"
    provides: ClassVar[frozenset[Capability]] = frozenset({Capability.INPUTS})

    def __init__(
        self,
        x_train: torch.Tensor,
        y_train: torch.Tensor,
        x_val: torch.Tensor | None = None,
        y_val: torch.Tensor | None = None,
        *,
        kind: Kind = "multiclass",
        metric: Metric = "neg_cross_entropy",
        batch_size: int = 0,
        seed: int = 0,
        num_classes: int | None = None,
        device: torch.device | str = "cpu",
    ):
        if metric not in ALLOWED_METRICS[kind]:
            raise ConfigError(
                f"task.metric = {metric!r} for a {kind} task; allowed: {', '.join(ALLOWED_METRICS[kind])}"
            )
        self.device = torch.device(device)
        self.kind, self.metric, self.batch_size, self.seed = kind, metric, int(batch_size), int(seed)
        self.x_train = torch.as_tensor(x_train, dtype=torch.float32).to(self.device)
        self.y_train = self._targets(y_train)
        self.x_val = None if x_val is None else torch.as_tensor(x_val, dtype=torch.float32).to(self.device)
        self.y_val = None if y_val is None else self._targets(y_val)
        self.in_features = self.x_train.shape[1]
        if kind == "multiclass":
            self.num_classes = num_classes or int(self.y_train.max()) + 1
            self.out_features = self.num_classes
        else:
            self.out_features = 1 if self.y_train.dim() == 1 else self.y_train.shape[1]
        self.default_output_activation = "sigmoid" if kind == "binary" else "identity"

    def _targets(self, y: Any) -> torch.Tensor:
        y = torch.as_tensor(y)
        y = y.long() if self.kind == "multiclass" else y.float()
        return y.to(self.device)

    # -- scoring --------------------------------------------------------------------------
    def score(self, outputs: torch.Tensor, y: torch.Tensor, metric: str) -> torch.Tensor:
        """``metric`` per member for ``outputs[P, B, out]`` against targets ``y[B]``/``y[B, out]``."""
        if self.kind == "multiclass":
            if metric == "accuracy":
                return (outputs.argmax(-1) == y).float().mean(-1)
            if metric == "neg_cross_entropy":
                logp = torch.log_softmax(outputs, dim=-1)
                picked = logp.gather(-1, y.view(1, -1, 1).expand(outputs.shape[0], -1, 1))
                return picked.squeeze(-1).mean(-1)
            onehot = torch.nn.functional.one_hot(y, outputs.shape[-1]).to(outputs.dtype)
            return -((outputs - onehot) ** 2).mean((-1, -2))
        target = y.view(1, y.shape[0], -1).to(outputs.dtype)
        if metric == "neg_mse":
            return -((outputs - target) ** 2).mean((-1, -2))
        if metric == "accuracy":
            return ((outputs > 0.5).to(outputs.dtype) == target).all(-1).float().mean(-1)
        p = outputs.clamp(1e-7, 1 - 1e-7)
        return (target * p.log() + (1 - target) * (1 - p).log()).mean((-1, -2))

    def _batch(self, generation: int, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.x_train.shape[0]
        if not self.batch_size or self.batch_size >= n:
            return self.x_train, self.y_train
        gen = nrandom.member_generator(self.seed, generation, stream, "minibatch")
        idx = torch.randperm(n, generator=gen)[: self.batch_size].to(self.device)
        return self.x_train[idx], self.y_train[idx]

    def evaluate(self, phenotype: Any, population: Any, generation: int = 0, *, stream: int = 0) -> Fitness:
        x, y = self._batch(generation, stream)
        with torch.no_grad():
            outputs = phenotype.forward(population, x)
            values = self.score(outputs, y, self.metric)
        return Fitness(values=values, steps=int(values.shape[0]) * int(x.shape[0]))

    def metrics_of(self, phenotype: Any, params: Any, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            outputs = phenotype.forward(_as_population(params), x)
            names = REPORTED_METRICS[self.kind]
            return {m: float(self.score(outputs, y, m)[0]) for m in names}

    def bytes_per_member(self, phenotype: Any) -> int:
        """The ``EstimatesMemory`` hook: one member's activations on a batch, with the scoring's
        temporaries (about four float32 copies of every layer's output)."""
        rows = self.batch_size if 0 < self.batch_size < self.x_train.shape[0] else self.x_train.shape[0]
        return int(rows) * activations_per_sample(phenotype) * 4 * 4

    def validate(self, phenotype: Any, params: Any) -> dict[str, float]:
        """Metrics of one member: ``train_*`` on all training data, ``val_*`` on held-out data."""
        out = {
            f"train_{k}": v for k, v in self.metrics_of(phenotype, params, self.x_train, self.y_train).items()
        }
        if self.x_val is not None:
            out.update(
                {f"val_{k}": v for k, v in self.metrics_of(phenotype, params, self.x_val, self.y_val).items()}
            )
        return out


def _as_population(params: Any) -> Any:
    if isinstance(params, torch.Tensor) and params.dim() == 1:
        return params.unsqueeze(0)
    if isinstance(params, (list, tuple)):
        return params
    if isinstance(params, torch.Tensor):
        return params
    return [params]


# -- built-in datasets ------------------------------------------------------------------------


class SupervisedParams(TaskParams):
    metric: Metric | None = Field(
        None,
        description="fitness metric; default: neg_mse (binary, regression) or neg_cross_entropy (classes)",
    )
    batch_size: int = Field(0, ge=0, description="minibatch per generation; 0 = full batch")


class SplitParams(SupervisedParams):
    validation_fraction: float = Field(0.2, gt=0, lt=1, description="share of the data held out")
    split_seed: int = Field(0, description="seed of the train/validation split")
    standardize: bool = Field(True, description="standardise features with the training statistics")


def xor_data() -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return x, torch.tensor([0.0, 1.0, 1.0, 0.0])


def parity_data(bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor(list(itertools.product([0.0, 1.0], repeat=bits)))
    return x, x.sum(1).remainder(2)


REGRESSION_FUNCTIONS = {
    "sin": torch.sin,
    "cos": torch.cos,
    "square": lambda x: x * x,
    "cube": lambda x: x**3,
    "abs": torch.abs,
    "gauss": lambda x: torch.exp(-x * x),
    "tanh": torch.tanh,
    "sinc": torch.sinc,
}


def regression_data(
    function: str, low: float, high: float, samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if function not in REGRESSION_FUNCTIONS:
        raise ConfigError(f"task.function = {function!r}; allowed: {', '.join(REGRESSION_FUNCTIONS)}")
    x = torch.linspace(low, high, samples).unsqueeze(1)
    return x, REGRESSION_FUNCTIONS[function](x)


def split_indices(n: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeded (train, validation) row indices of a data set of ``n`` rows."""
    gen = nrandom.member_generator(seed, 0, 0, "split")
    order = torch.randperm(n, generator=gen)
    n_val = max(1, int(round(fraction * n)))
    return order[n_val:], order[:n_val]


def standardization(x_train: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` of the training features (std floored at 1e-6 for constant pixels)."""
    return x_train.mean(0), x_train.std(0).clamp_min(1e-6)


def split(x: torch.Tensor, y: torch.Tensor, fraction: float, seed: int, standardize: bool):
    """A seeded train/validation split, features standardised with the train statistics."""
    train, val = split_indices(x.shape[0], fraction, seed)
    x_train, x_val = x[train], x[val]
    if standardize:
        mean, std = standardization(x_train)
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    return x_train, y[train], x_val, y[val]


def _sklearn(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn import datasets

    loader = {
        "iris": datasets.load_iris,
        "breast_cancer": datasets.load_breast_cancer,
        "digits": datasets.load_digits,
    }
    data = loader[name]()
    return torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target)


class TruthTable(SupervisedTask):
    """A binary task on every row of a truth table (the whole table is the training set)."""

    Params = SupervisedParams

    def __init__(self, params: SupervisedParams | None = None, *, seed: int = 0, device="cpu", **keys: Any):
        self.params = p = self.params_from(params, **keys)
        x, y = self.table(p)
        metric = p.metric or "neg_mse"
        super().__init__(
            x, y, kind="binary", metric=metric, batch_size=p.batch_size, seed=seed, device=device
        )

    def table(self, params: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The inputs and targets of the table."""
        raise NotImplementedError


class XOR(TruthTable):
    """The 4 XOR cases; fitness neg_mse by default on a sigmoid output. Validation = the same 4 cases."""

    name = "xor"

    def table(self, params: SupervisedParams) -> tuple[torch.Tensor, torch.Tensor]:
        return xor_data()


class ParityParams(SupervisedParams):
    bits: int = Field(3, ge=2, le=16, description="input bits; the data is all 2^bits inputs")


class Parity(TruthTable):
    """N-bit parity on all 2^N inputs."""

    name = "parity"
    Params = ParityParams

    def table(self, params: ParityParams) -> tuple[torch.Tensor, torch.Tensor]:
        return parity_data(params.bits)


class RegressionParams(SupervisedParams):
    function: str = Field("sin", description="y = f(x), f one of: " + ", ".join(REGRESSION_FUNCTIONS))
    low: float = Field(-math.pi, description="left end of the x grid")
    high: float = Field(math.pi, description="right end of the x grid")
    samples: int = Field(64, ge=2, description="grid points")


class Regression(SupervisedTask):
    """Fit y = f(x) for a named 1-D function on a grid (``sine`` is this with f = sin)."""

    name = "regression"
    Params = RegressionParams

    def __init__(self, params: RegressionParams | None = None, *, seed: int = 0, device="cpu", **keys: Any):
        self.params = p = self.params_from(params, **keys)
        x, y = regression_data(p.function, p.low, p.high, p.samples)
        super().__init__(
            x,
            y,
            kind="regression",
            metric=p.metric or "neg_mse",
            batch_size=p.batch_size,
            seed=seed,
            device=device,
        )


class Sine(Regression):
    """Fit y = sin(x) on a grid over [-pi, pi] (64 points by default)."""

    name = "sine"


class SklearnTask(SupervisedTask):
    """A scikit-learn bundled dataset with a seeded train/validation split."""

    Params = SplitParams
    provides: ClassVar[frozenset[Capability]] = frozenset({Capability.INPUTS, Capability.VALIDATION})
    dataset = ""

    def __init__(self, params: SplitParams | None = None, *, seed: int = 0, device="cpu", **keys: Any):
        self.params = p = self.params_from(params, **keys)
        x, y = _sklearn(self.dataset)
        parts = split(x, y, p.validation_fraction, p.split_seed, p.standardize)
        train, _ = split_indices(x.shape[0], p.validation_fraction, p.split_seed)
        self.input_stats = standardization(x[train]) if p.standardize else None
        super().__init__(
            *parts,
            kind="multiclass",
            metric=p.metric or "neg_cross_entropy",
            batch_size=p.batch_size,
            seed=seed,
            device=device,
        )

    def export_io(self) -> dict[str, Any]:
        """The ``ExportsIO`` hook: raw scikit-learn features in (standardised as in training), logits out."""
        io: dict[str, Any] = {"input": [], "output": {"classes": {"n": self.num_classes}}}
        if self.input_stats is not None:
            mean, std = self.input_stats
            io["input"] = [{"standardize": {"mean": mean.tolist(), "std": std.tolist()}}]
        io["describe"] = {
            "input": f"raw sklearn.datasets.load_{self.dataset}() features [B, {self.in_features}] (float32)",
            "output": f"class logits [B, {self.num_classes}]; argmax is the label",
        }
        return io


class Iris(SklearnTask):
    """Iris: 150 flowers, 4 features, 3 classes."""

    name = dataset = "iris"


class BreastCancer(SklearnTask):
    """Wisconsin breast cancer: 569 samples, 30 features, 2 classes."""

    name = dataset = "breast_cancer"


class Digits(SklearnTask):
    """8x8 handwritten digits: 1797 samples, 64 features, 10 classes."""

    name = dataset = "digits"
