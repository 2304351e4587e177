"""Pictures and files for NEAT genomes: network drawings, species plots, genome JSON.

matplotlib is imported only when a picture is drawn (with the non-interactive Agg backend),
so importing this module costs nothing. The file type follows the suffix of ``path``
(``.svg``, ``.png``, ``.pdf``).

- ``draw_genome(genome, path)``: inputs on the left, outputs on the right, hidden nodes by
  topological depth; nodes coloured by activation (legend), edge width by ``|weight|``, colour
  by sign (blue positive, red negative), disabled connections dashed grey.
- ``plot_species(metrics, path)``: stacked species sizes over generations (neat-python's
  ``speciation.png``), from the ``species/<id>`` entries ``NEAT.tell`` returns (metrics lines,
  or a run's ``metrics.jsonl``); ``species_stats`` writes those entries.
- ``save_genome_json`` / ``load_genome_json``: the genome JSON that round-trips.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from neuroevo.nn.neat.genome import genome_from_json, genome_to_json
from neuroevo.nn.neat.population import NEATPopulation

SPECIES_PREFIX = "species/"
"""Metrics keys ``species/<id>``: the member count of species ``id`` in that generation."""


def _as_json(genome: Any) -> dict[str, Any]:
    if isinstance(genome, (str, Path)):
        return json.loads(Path(genome).read_text())
    if isinstance(genome, NEATPopulation):
        return genome_to_json(genome.genome(0))
    if isinstance(genome, dict) and "nodes" in genome:
        return genome
    if isinstance(genome, dict):
        return genome_to_json(genome)
    raise TypeError(f"expected a NEAT genome (dict, JSON or path), not {type(genome).__name__}")


def save_genome_json(genome: Any, path: str | Path) -> Path:
    """Write a genome as JSON (``load_genome_json`` reads it back as a genome dict)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_as_json(genome), indent=1))
    return path


def load_genome_json(path: str | Path) -> dict[str, Any]:
    """A genome dict (tensors) from a JSON file written by ``save_genome_json``."""
    return genome_from_json(json.loads(Path(path).read_text()))


def _depths(spec: dict[str, Any]) -> dict[int, int]:
    """Column of every node: inputs 0, others the longest enabled path from an input (cycles cut)."""
    num_in, num_out = spec["num_inputs"], spec["num_outputs"]
    keys = [n["key"] for n in spec["nodes"]]
    depth = {i: 0 for i in range(num_in)}
    for k in keys:
        depth[k] = 1
    edges = [(c["in"], c["out"]) for c in spec["connections"] if c["enabled"] and c["in"] in depth]
    for _ in range(len(depth)):
        changed = False
        for a, b in edges:
            if b in depth and depth[a] + 1 > depth[b] and depth[a] + 1 <= len(depth):
                depth[b] = depth[a] + 1
                changed = True
        if not changed:
            break
    last = max([depth[k] for k in keys] + [1]) + 1
    for k in range(num_in, num_in + num_out):
        depth[k] = last  # outputs in the rightmost column
    return depth


def draw_genome(
    genome: Any,
    path: str | Path,
    *,
    show_disabled: bool = True,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw one genome (dict, JSON, or a JSON file path) to ``path`` (.svg / .png / .pdf)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    spec = _as_json(genome)
    num_in, num_out = spec["num_inputs"], spec["num_outputs"]
    depth = _depths(spec)
    columns: dict[int, list[int]] = {}
    for key in sorted(depth):
        columns.setdefault(depth[key], []).append(key)
    pos = {}
    for col, keys in columns.items():
        for row, key in enumerate(keys):
            pos[key] = (float(col), (len(keys) - 1) / 2.0 - row)
    acts = sorted({n["activation"] for n in spec["nodes"]})
    cmap = plt.get_cmap("tab10" if len(acts) <= 10 else "tab20")
    colour = {a: cmap(i % cmap.N) for i, a in enumerate(acts)}
    weights = [abs(c["weight"]) for c in spec["connections"]] or [1.0]
    wmax = max(max(weights), 1e-9)

    width = max(4.0, 1.6 * (len(columns) + 1))
    height = max(3.0, 0.9 * max(len(v) for v in columns.values()) + 1.5)
    fig, ax = plt.subplots(figsize=(width, height))
    for c in spec["connections"]:
        if c["in"] not in pos or c["out"] not in pos or (not c["enabled"] and not show_disabled):
            continue
        (x0, y0), (x1, y1) = pos[c["in"]], pos[c["out"]]
        if c["enabled"]:
            style = {"color": "tab:blue" if c["weight"] >= 0 else "tab:red", "linestyle": "-"}
            lw = 0.5 + 3.5 * abs(c["weight"]) / wmax
        else:
            style = {"color": "0.6", "linestyle": "--"}
            lw = 1.0
        if c["in"] == c["out"]:
            ax.add_patch(
                matplotlib.patches.Circle(
                    (x0, y0 + 0.22),
                    0.18,
                    fill=False,
                    lw=lw,
                    ls=style["linestyle"],
                    ec=style["color"],
                    zorder=1,
                )
            )
            continue
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "lw": lw,
                "color": style["color"],
                "linestyle": style["linestyle"],
                "shrinkA": 12,
                "shrinkB": 12,
                "connectionstyle": "arc3,rad=0.25" if x1 <= x0 else "arc3,rad=0.0",
            },
            zorder=1,
        )
    node_act = {n["key"]: n["activation"] for n in spec["nodes"]}
    for key, (x, y) in pos.items():
        if key < num_in:
            face, shape = "0.85", "s"
            label = input_names[key] if input_names and key < len(input_names) else f"in{key}"
        else:
            face, shape = colour[node_act[key]], "o"
            out_idx = key - num_in
            if out_idx < num_out:
                label = (
                    output_names[out_idx] if output_names and out_idx < len(output_names) else f"out{out_idx}"
                )
            else:
                label = str(key)
        ax.scatter([x], [y], s=600, c=[face], marker=shape, edgecolors="black", zorder=2)
        ax.text(x, y, label, ha="center", va="center", fontsize=7, zorder=3)
    handles = [
        Line2D([], [], marker="o", ls="", color=colour[a], markeredgecolor="black", label=a) for a in acts
    ]
    handles += [
        Line2D([], [], color="tab:blue", label="w > 0"),
        Line2D([], [], color="tab:red", label="w < 0"),
        Line2D([], [], color="0.6", ls="--", label="disabled"),
    ]
    ax.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.02),
        ncol=min(6, len(handles)),
        fontsize=7,
        frameon=False,
    )
    ax.set_title(
        title
        or f"{len(spec['nodes'])} nodes, {sum(c['enabled'] for c in spec['connections'])} enabled connections"
    )
    ax.set_xlim(-0.6, max(columns) + 0.6)
    ys = [p[1] for p in pos.values()]
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    return path


def species_stats(ids: torch.Tensor, sizes: torch.Tensor) -> dict[str, float]:
    """Metrics entries ``species/<id>`` -> member count (what ``plot_species`` reads)."""
    return {f"{SPECIES_PREFIX}{i}": float(n) for i, n in zip(ids.tolist(), sizes.tolist(), strict=True)}


def species_history(
    metrics: Iterable[dict[str, Any]] | str | Path,
) -> tuple[list[int], dict[int, list[int]]]:
    """Generations and each species' size per generation (0 where it did not exist) from
    metrics lines or a ``metrics.jsonl`` file."""
    if isinstance(metrics, (str, Path)):
        lines = [json.loads(t) for t in Path(metrics).read_text().splitlines() if t.strip()]
    else:
        lines = list(metrics)
    lines = [m for m in lines if any(k.startswith(SPECIES_PREFIX) for k in m)]
    gens = [int(m["generation"]) for m in lines]
    sizes: dict[int, list[int]] = {}
    for g, m in enumerate(lines):
        for key, n in m.items():
            if key.startswith(SPECIES_PREFIX):
                sizes.setdefault(int(key[len(SPECIES_PREFIX) :]), [0] * len(lines))[g] = int(n)
    return gens, dict(sorted(sizes.items()))


def plot_species(
    metrics: Iterable[dict[str, Any]] | str | Path, path: str | Path, *, title: str = "Speciation"
) -> Path:
    """Stacked species sizes per generation (see ``species_history`` for ``metrics``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens, sizes = species_history(metrics)
    fig, ax = plt.subplots(figsize=(7, 4))
    if sizes:
        ax.stackplot(gens, list(sizes.values()))
    ax.set_xlabel("generation")
    ax.set_ylabel("size per species")
    ax.set_title(title)
    ax.margins(x=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "SPECIES_PREFIX",
    "draw_genome",
    "load_genome_json",
    "plot_species",
    "save_genome_json",
    "species_history",
    "species_stats",
]
