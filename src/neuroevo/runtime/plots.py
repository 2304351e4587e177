"""Report plots (matplotlib, Agg backend; imported only when a report is written)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_fitness(metrics: list[dict[str, Any]], path: str | Path) -> None:
    """Best, mean (with std band) and best-ever fitness per generation, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [m["generation"] for m in metrics]
    best = [m["best"] for m in metrics]
    mean = [m["mean"] for m in metrics]
    std = [m["std"] for m in metrics]
    best_ever = [m["best_ever"] for m in metrics]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.fill_between(
        gens,
        [a - b for a, b in zip(mean, std, strict=True)],
        [a + b for a, b in zip(mean, std, strict=True)],
        alpha=0.2,
        label="mean ± std",
    )
    ax.plot(gens, mean, label="mean")
    ax.plot(gens, best, label="generation best")
    ax.plot(gens, best_ever, label="best ever", linestyle="--")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
