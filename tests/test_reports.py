from pathlib import Path

from neuroevo.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_neat_run_writes_species_plot_and_genome_drawings(tmp_path):
    run = tmp_path / "xor_neat"
    assert main(["run", str(ROOT / "examples/xor_neat.toml"), "--out", str(run), "--quiet"]) == 0
    report = run / "report"
    for name in ("fitness.png", "species.png", "best_genome.png", "best_genome.svg"):
        assert (report / name).stat().st_size > 1000, name
    assert "<svg" in (report / "best_genome.svg").read_text()[:500]
    assert main(["best", str(run), "--export", str(tmp_path / "neat.safetensors")]) == 0
