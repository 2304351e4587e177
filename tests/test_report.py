"""The HTML report, --seeds, run.log, read_metrics, TensorBoard and the end-of-run summary."""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import pytest
from PIL import Image

from neuroevo.cli import main
from neuroevo.runtime import read_metrics
from neuroevo.runtime.report import _mean_ci, write_run_report

ROOT = Path(__file__).resolve().parents[1]
IMG_RE = re.compile(r"<img alt='([^']*)' src='data:image/png;base64,([A-Za-z0-9+/=]+)'>")


def sections(page: str) -> dict[str, str]:
    """Section id -> its HTML."""
    return dict(re.findall(r"<section id='([^']+)'>(.*?)</section>", page, flags=re.S))


def images(fragment: str) -> list[tuple[str, Image.Image]]:
    out = []
    for alt, data in IMG_RE.findall(fragment):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        out.append((alt, image))
    return out


def short(tmp_path: Path, example: str, generations: int = 3, extra: str = "") -> Path:
    config = (ROOT / "examples" / f"{example}.toml").read_text().replace("[run]", f"[run]\n{extra}", 1)
    path = tmp_path / f"{example}.toml"
    path.write_text(config)
    out = tmp_path / example
    assert main(["run", str(path), "--out", str(out), "--quiet", "--generations", str(generations)]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("report")
    return {name: short(tmp, name) for name in ("xor_neat", "cartpole_es")}


def test_every_run_writes_a_self_contained_report(runs):
    for name, run in runs.items():
        page = (run / "report" / "report.html").read_text()
        assert not re.search(r"(src|href)=['\"]?(https?:)?//", page), "the page must need no network"
        parts = sections(page)
        for section in ("final-figures", "fitness", "validation", "throughput", "best-network", "config"):
            assert section in parts, (name, section)
        for alt, image in images(page):
            assert image.width > 200 and image.height > 100, (name, alt)
            low, high = image.convert("L").getextrema()
            assert high - low > 100, f"{name}: {alt} is blank"
        # the final table holds the run's real figures
        metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        best = json.loads((run / "best" / "network.json").read_text())
        assert f"{best['fitness']:.6g}" in parts["final-figures"]
        assert f">{metrics[-1]['evaluations']}<" in parts["final-figures"]
        assert "generations" in parts["final-figures"]  # the stop reason
        assert "[strategy]" in parts["config"]


def test_strategy_panels_follow_the_metric_keys(runs):
    neat = sections((runs["xor_neat"] / "report" / "report.html").read_text())
    es = sections((runs["cartpole_es"] / "report" / "report.html").read_text())
    assert "neat-species" in neat and "neat" in neat and "evolution-strategy" not in neat
    assert re.search(
        r"best genome of xor_neat: \d+ nodes \(\d+ hidden\), \d+ enabled connections", neat["neat-species"]
    )
    assert "NEAT genome" in neat["best-network"] and len(images(neat["best-network"])) == 1
    assert "evolution-strategy" in es and "neat" not in es
    assert "MLP 4 x 32 x 2" in es["best-network"] and len(images(es["best-network"])) == 1


def test_report_overlays_runs_and_refuses_a_folder_that_is_not_a_run(runs, tmp_path):
    out = tmp_path / "cmp.html"
    assert main(["report", str(runs["xor_neat"]), str(runs["cartpole_es"]), "--out", str(out)]) == 0
    parts = sections(out.read_text())
    table = parts["final-figures"]
    assert table.count("<tr>") == 3 and "xor_neat" in table and "cartpole_es" in table
    assert "neat-species" in parts and "evolution-strategy" in parts  # the panels of both
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "x.html")]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_mean_and_confidence_band():
    mean, half = _mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 / math.sqrt(3))
    assert _mean_ci([5.0]) == (5.0, 0.0)
    assert _mean_ci([1.0, math.nan, 3.0])[0] == 2.0


def test_seeds_run_one_after_the_other_into_a_folder_report_understands(tmp_path, capsys):
    out = tmp_path / "xor"
    args = ["run", str(ROOT / "examples/xor_ga.toml"), "--out", str(out), "--quiet", "--generations", "2"]
    assert main([*args, "--seeds", "0-1,3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "seed-0", "seed-1", "seed-3"]
    for seed in (0, 1, 3):
        assert f"seed = {seed}\n" in (out / f"seed-{seed}" / "config.toml").read_text()
    first = [json.loads(s) for s in (out / "seed-0" / "metrics.jsonl").read_text().splitlines()]
    other = [json.loads(s) for s in (out / "seed-1" / "metrics.jsonl").read_text().splitlines()]
    assert first[-1]["best_ever"] != other[-1]["best_ever"]  # different seeds, different runs
    table = sections((out / "report.html").read_text())["final-figures"]
    assert "3 runs" in table and all(f"seed-{s}" in table for s in (0, 1, 3))
    finals = [
        json.loads((out / f"seed-{s}" / "best" / "network.json").read_text())["fitness"] for s in (0, 1, 3)
    ]
    mean, half = _mean_ci(finals)
    assert f"{mean:.6g} ± {half:.3g}" in table  # the mean row is the mean of the seeds
    capsys.readouterr()
    assert main([*args, "--seeds", "0-1"]) == 2  # the seed folders exist: refused before any run
    assert "a run already exists" in capsys.readouterr().err
    for bad in ("2-1", "a", "-1", ""):
        assert main([*args, "--overwrite", "--seeds", bad]) == 2
    assert main([*args, "--seeds", "0", "--seed", "1"]) == 2


def test_pbt_panel_reads_pbt_jsonl(runs, tmp_path):
    run = runs["cartpole_es"]
    lines = [
        {
            "generation": g,
            "member": m,
            "step": 10 * (g + 1),
            "fitness": float(m + g),
            "parent": (m + 1) % 3 if g % 2 else m,
            "exploited": bool(g % 2),
            "age": 1,
            "old": {"lr": 0.1 * (1 + m + g), "momentum": 0.9},
            "new": {"lr": 0.1 * (2 + m + g), "momentum": 0.8},
        }
        for g in range(4)
        for m in range(3)
    ]
    (run / "pbt.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        page = write_run_report(run).read_text()
    finally:
        (run / "pbt.jsonl").unlink()
    pbt = sections(page)["population-based-training"]
    assert len(images(pbt)) == 1  # schedules of lr and momentum, and the lineage, drawn here
    # a PBT strategy that drew its own pictures (its WritesReport hook) is shown with those instead
    picture = run / "report" / "pbt_lineage.png"
    (run / "pbt.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    Image.new("RGB", (300, 200), "white").save(picture)
    try:
        pbt = sections(write_run_report(run).read_text())["population-based-training"]
    finally:
        picture.unlink()
        (run / "pbt.jsonl").unlink()
    assert [alt for alt, _ in images(pbt)] == ["cartpole_es PBT"] and "<p>cartpole_es</p>" in pbt


def test_run_log_records_start_resume_and_stop_reason(tmp_path):
    run = short(tmp_path, "xor_ga", generations=2)
    log = (run / "run.log").read_text()
    assert "started" in log and "stop reason: generations at generation 2" in log
    assert main(["resume", str(run), "--generations", "4", "--quiet"]) == 0
    log = (run / "run.log").read_text()
    assert "resumed from the checkpoint of generation 2" in log
    assert "stop reason: generations at generation 4" in log.splitlines()[-1]
    assert main(["run", str(tmp_path / "xor_ga.toml"), "--out", str(run), "--quiet", "--overwrite"]) == 0
    assert "resumed" not in (run / "run.log").read_text()  # --overwrite starts a new log


def test_read_metrics_is_metrics_jsonl(runs):
    run = runs["cartpole_es"]
    lines = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert read_metrics(run) == lines
    assert read_metrics(run / "metrics.jsonl") == lines
    pandas = pytest.importorskip("pandas", reason="pandas is optional: read_metrics(as_frame=True) needs it")
    frame = read_metrics(run, as_frame=True)
    assert isinstance(frame, pandas.DataFrame) and list(frame["best_ever"]) == [m["best_ever"] for m in lines]


def test_summary_table_at_the_end_of_a_run(tmp_path, capsys):
    run = short(tmp_path, "xor_ga", generations=2)
    text = capsys.readouterr().out
    best = json.loads((run / "best" / "network.json").read_text())
    for row in ("best fitness", "generations", "evaluations", "env steps", "wall time", "stop reason"):
        assert row in text, row
    assert re.search(rf"best fitness\s+{re.escape(format(best['fitness'], '.6g'))}", text)
    assert re.search(r"stop reason\s+generations", text)
    assert str(run / "report" / "report.html") in text


def test_tensorboard_scalars_are_the_metrics(tmp_path, capsys):
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        config = tmp_path / "tb.toml"
        config.write_text(
            (ROOT / "examples/xor_ga.toml").read_text().replace("[run]", "[run]\ntensorboard = true")
        )
        assert main(["run", str(config), "--out", str(tmp_path / "tb"), "--quiet"]) == 2
        assert "neuroevo[tensorboard]" in capsys.readouterr().err
        assert not (tmp_path / "tb").exists()
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = short(tmp_path, "xor_ga", generations=3, extra="tensorboard = true")
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    lines = read_metrics(run)
    for key in ("best", "mean", "best_ever", "evaluations", "mutation_power", "train_accuracy"):
        scalars = events.Scalars(key)
        assert [s.step for s in scalars] == [m["generation"] for m in lines]
        assert [s.value for s in scalars] == pytest.approx([m[key] for m in lines], rel=1e-6)


def test_run_log_records_warnings_from_python_runs_and_they_still_show(tmp_path):
    import warnings

    import torch

    from neuroevo.runtime import evolve
    from neuroevo.strategies import OpenES
    from neuroevo.tasks import FunctionTask

    def fitness(population: torch.Tensor) -> torch.Tensor:
        warnings.warn("a user's warning", UserWarning, stacklevel=1)
        return -(population**2).sum(-1)

    with pytest.warns(UserWarning, match="a user's warning"):
        evolve(
            OpenES(3, population_size=8, seed=0),
            None,
            FunctionTask(fitness, maximize=True),
            generations=2,
            run_dir=tmp_path,
        )
    log = (tmp_path / "run.log").read_text()
    assert "UserWarning: a user's warning" in log and "stop reason: generations" in log
    assert (tmp_path / "report" / "report.html").is_file()
    assert warnings.showwarning.__name__ != "show_and_log"  # restored after the run


def test_run_log_records_a_failed_fitness_function_and_lets_go_of_the_file(tmp_path):
    import torch

    from neuroevo.core.errors import FitnessEvaluationError
    from neuroevo.runtime import evolve
    from neuroevo.runtime.logging import LOGGER
    from neuroevo.strategies import OpenES
    from neuroevo.tasks import FunctionTask

    def fitness(population: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the simulator crashed")

    before = list(LOGGER.handlers)
    with pytest.raises(FitnessEvaluationError):
        evolve(
            OpenES(3, population_size=8, seed=0),
            None,
            FunctionTask(fitness, maximize=True),
            generations=2,
            run_dir=tmp_path,
        )
    assert LOGGER.handlers == before
    last = (tmp_path / "run.log").read_text().splitlines()[-1]
    assert (
        "stop reason: failed (generation 0: fitness evaluation raised RuntimeError: the simulator crashed)"
        in last
    )


def test_novelty_panels_show_the_archive_and_the_behaviour_space(tmp_path):
    run = short(tmp_path, "maze_ns", generations=2)
    parts = sections((run / "report" / "report.html").read_text())
    assert len(images(parts["novelty-search"])) == 1
    assert [alt for alt, _ in images(parts["behaviour-space"])] == ["maze_ns behaviour space"]
