"""Evolve a network on your own fitness function, from Python.

Run: python examples/custom_fitness.py   (NEUROEVO_EXAMPLE_GENERATIONS=2 for a short version, as CI runs it)
The objective here is a non-differentiable one: the fraction of points of scikit-learn's
generated "two moons" classified correctly (a step function of the weights, so gradients are useless). The
direction is stated explicitly: maximize=True.
"""

import os

import torch
from sklearn.datasets import make_moons

from neuroevo.nn import PopulationMLP
from neuroevo.runtime import evolve
from neuroevo.strategies import OpenES
from neuroevo.tasks import FunctionTask

points, labels = make_moons(n_samples=400, noise=0.1, random_state=0)
x, y = torch.tensor(points, dtype=torch.float32), torch.tensor(labels)
net = PopulationMLP([2, 16, 2], activation=[["tanh"] * 8 + ["sin"] * 8])  # per-neuron activations


def accuracy(population: torch.Tensor) -> torch.Tensor:
    """Fitness of every member at once: fraction of points whose argmax class is right."""
    return (net(population, x).argmax(-1) == y).float().mean(-1)


strategy = OpenES(net.num_params, population_size=128, init=net.init_params, sigma=0.1, lr=0.05, seed=0)
generations = int(os.environ.get("NEUROEVO_EXAMPLE_GENERATIONS", 200))
result = evolve(
    strategy,
    net,
    FunctionTask(accuracy, maximize=True),
    generations=generations,
    target_fitness=0.98,
    progress=True,
)
print(
    f"best accuracy {result.best.fitness:.3f} after {result.generations} generations ({result.stop_reason})"
)
