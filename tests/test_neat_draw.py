"""NEAT pictures and genome files: drawings (SVG, PNG), species plot, JSON save/load."""

from __future__ import annotations

import torch

from neuroevo.nn.neat import NEATPhenotype, genome_to_json
from neuroevo.nn.neat.draw import (
    draw_genome,
    load_genome_json,
    plot_species,
    save_genome_json,
    species_history,
)
from neuroevo.strategies.neat import NEAT


def _evolved():
    s = NEAT(
        3,
        2,
        30,
        seed=0,
        node_add_prob=0.8,
        conn_add_prob=0.8,
        enabled_mutate_rate=0.2,
        activation_options=["neat_sigmoid", "tanh", "relu"],
        activation_mutate_rate=0.3,
    )
    phenotype = NEATPhenotype(3, 2)
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    metrics = []
    for generation in range(6):
        pop = s.ask()
        metrics.append({"generation": generation, **s.tell(phenotype.forward(pop, x).sum((1, 2)))})
    return s, phenotype, metrics


def test_draw_genome_svg_png_and_species_plot(tmp_path):
    s, phenotype, metrics = _evolved()
    genome = s.best.params
    svg = draw_genome(genome, tmp_path / "best.svg", input_names=["a", "b", "c"])
    png = draw_genome(phenotype.member_spec(genome), tmp_path / "best.png")
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot = plot_species(metrics, tmp_path / "species.png")
    assert plot.stat().st_size > 1000
    gens, sizes = species_history(metrics)
    assert gens == list(range(6)) and sizes
    assert all(sum(column) == 30 for column in zip(*sizes.values(), strict=True))  # every member counted
    saved = save_genome_json(genome, tmp_path / "best.json")
    assert genome_to_json(load_genome_json(saved)) == genome_to_json(genome)
    assert draw_genome(saved, tmp_path / "from_file.svg").exists()


def test_draw_recurrent_genome(tmp_path):
    s = NEAT(2, 1, 20, seed=1, feed_forward=False, node_add_prob=0.9, conn_add_prob=1.0)
    phenotype = NEATPhenotype(2, 1)
    for _ in range(5):
        pop = s.ask()
        s.tell(phenotype.forward(pop, torch.rand(3, 2)).sum((1, 2)))
    assert draw_genome(s.ask().genome(0), tmp_path / "rec.svg").stat().st_size > 500
