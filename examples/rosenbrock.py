"""The Rosenbrock function, batched over a population: f(x[P, D]) -> [P], minimum 0 at x = 1.

Used by ``examples/rosenbrock_cmaes.toml`` (``task.function = "examples/rosenbrock.py:rosenbrock"``)
and importable from Python: ``FunctionTask(rosenbrock, maximize=False)``.
"""

import torch


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    """sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2 for every row of ``x[P, D]`` (Rosenbrock 1960)."""
    x = x.to(torch.float64)
    head, tail = x[:, :-1], x[:, 1:]
    return (100.0 * (tail - head**2) ** 2 + (1.0 - head) ** 2).sum(1)
