"""One self-contained HTML report of one run, many runs, or a folder of seeds.

``neuroevo report RUN [RUN ...] --out report.html`` and every run's ``report/report.html``
come from ``write_report``. Everything is read from the run folders (``metrics.jsonl``,
``config.toml``, ``best/``, ``pbt.jsonl``, ``run.log`` and the pictures the strategy and task
hooks left in ``report/``), so a report can be made again at any time, from any machine.
Pictures are matplotlib figures embedded as base64 PNG: the page needs no network access.

What it shows:

- fitness (best ever, generation mean with a std band) and the validation curve, against
  generations, evaluations and wall time, with the runs overlaid;
- strategy panels chosen from the metric keys present: ES (sigma, lr, grad norm), CMA-ES
  (step size, condition number), GA (mutation power), NEAT (species stack plot, genome
  sizes), novelty search (archive, behaviour space), PBT (schedules and lineage from
  ``pbt.jsonl``);
- the best network drawn (MLP layer graph, NEAT genome);
- environment steps per second and evaluations per second;
- the resolved config, and a table of final figures per run.

A folder whose sub-folders are runs (``neuroevo run --seeds 0-4`` writes ``OUT/seed-0``,
``OUT/seed-1``, ...) is a *group*: its curves are the mean over the runs with a 95 %
confidence band (Student t), and its table has a row per seed.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuroevo.core.errors import ConfigError
from neuroevo.strategies.pbt.strategy import read_events

SEED_DIR_RE = re.compile(r"^seed-(\d+)$")
STOP_RE = re.compile(r"stop reason: (\S+)")

# ES-family, CMA-ES, GA, NEAT and novelty metric keys (what each strategy's ``tell`` returns)
_PANELS: tuple[tuple[str, tuple[tuple[str, str, bool], ...]], ...] = (
    (
        "Evolution strategy",
        (
            ("sigma", "sigma (step size)", True),
            ("sigma_mean", "mean sigma", True),
            ("sigma_max", "max sigma", True),
            ("lr", "learning rate", False),
            ("grad_norm", "gradient norm", True),
            ("condition", "condition number (CMA-ES)", True),
            ("population_size", "population size (CMA-ES IPOP restarts)", False),
        ),
    ),
    (
        "Genetic algorithm",
        (("mutation_power", "mutation power", False), ("chain_length_max", "longest seed chain", False)),
    ),
    (
        "NEAT",
        (
            ("num_species", "species", False),
            ("mean_nodes", "mean hidden+output nodes", False),
            ("mean_connections", "mean connections", False),
            ("compatibility_threshold", "compatibility threshold", False),
        ),
    ),
    (
        "Novelty search",
        (
            ("novelty_mean", "mean novelty", False),
            ("novelty_max", "max novelty", False),
            ("archive_size", "archive size", False),
        ),
    ),
)
_PBT_PICTURES = ("pbt_schedule.png", "pbt_lineage.png", "pbt_curves.png")
_T975 = {1: 12.71, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


@dataclass
class Run:
    """What a run folder holds, read once."""

    name: str
    path: Path
    metrics: list[dict[str, Any]]
    config: str = ""
    best: dict[str, Any] | None = None
    pbt: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = ""

    @classmethod
    def read(cls, path: Path, name: str | None = None) -> Run:
        from neuroevo.runtime.rundir import RunDir

        run = RunDir(path)
        best = run.best / "network.json"
        log = path / "run.log"
        stops = STOP_RE.findall(log.read_text(errors="replace")) if log.is_file() else []
        return cls(
            name=name or path.name,
            path=path,
            metrics=run.read_metrics(),
            config=run.config.read_text() if run.config.is_file() else "",
            best=json.loads(best.read_text()) if best.is_file() else None,
            pbt=read_events(path / "pbt.jsonl"),
            stop_reason=stops[-1] if stops else "",
        )

    @property
    def validation_keys(self) -> list[str]:
        """The best member's validation metrics (those of ``best/network.json``) found in the metrics."""
        keys = list((self.best or {}).get("validation", {}))
        return [k for k in keys if any(k in m for m in self.metrics)]

    def series(self, key: str) -> list[float]:
        return [_number(m.get(key)) for m in self.metrics]

    def final(self) -> dict[str, Any]:
        """The final figures: best fitness, validation, counts, time, mean throughput."""
        last = self.metrics[-1] if self.metrics else {}
        return {
            "best fitness": (self.best or {}).get("fitness", last.get("best_ever")),
            **{k: v for k, v in (self.best or {}).get("validation", {}).items()},
            "generations": len(self.metrics),
            "evaluations": last.get("evaluations"),
            "env steps": last.get("steps"),
            "wall time (s)": last.get("elapsed"),
            "evals/s": _mean(self.series("evals_per_s")),
            "steps/s": _mean(self.series("steps_per_s")),
            "stop reason": self.stop_reason,
        }


@dataclass
class Group:
    """Runs of one config under several seeds (or any folder of runs): shown as their mean."""

    name: str
    path: Path
    runs: list[Run]

    @property
    def best_run(self) -> Run:
        return max(self.runs, key=lambda r: _number((r.best or {}).get("fitness")))


Item = Run | Group


def is_run_folder(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file()


def load(paths: Iterable[str | Path]) -> list[Item]:
    """Runs and groups for these folders: a run folder is a run, a folder of runs a group."""
    items: list[Item] = []
    for raw in paths:
        path = Path(raw)
        if is_run_folder(path):
            items.append(Run.read(path))
            continue
        children = sorted(
            (p for p in path.iterdir() if p.is_dir() and is_run_folder(p)) if path.is_dir() else [],
            key=_seed_order,
        )
        if not children:
            raise ConfigError(
                f"{path}: not a run folder (no metrics.jsonl) nor a folder of runs; "
                "allowed: a folder made by `neuroevo run` or `neuroevo run --seeds`"
            )
        items.append(Group(path.name or str(path), path, [Run.read(p) for p in children]))
    return items


def _seed_order(path: Path) -> tuple[int, str]:
    match = SEED_DIR_RE.match(path.name)
    return (int(match.group(1)) if match else 1 << 30, path.name)


def write_report(paths: Sequence[str | Path], out: str | Path, *, title: str | None = None) -> Path:
    """Write the HTML report of ``paths`` (run folders or folders of runs) to ``out``."""
    items = load(paths)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(items, title=title or "neuroevo report: " + ", ".join(i.name for i in items)))
    return out


def write_run_report(run_path: str | Path, stop_reason: str = "") -> Path:
    """``report/report.html`` of one run (what every run writes at its end)."""
    run_path = Path(run_path)
    run = Run.read(run_path)
    if stop_reason:
        run.stop_reason = stop_reason
    out = run_path / "report" / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render([run], title=f"neuroevo run {run.name}"))
    return out


# -- the page -----------------------------------------------------------------------------------
_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
table { border-collapse: collapse; font-size: .9em; }
td, th { padding: .25em .7em; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5em 0; }
pre { background: #f6f6f6; padding: .8em; overflow-x: auto; font-size: .85em; }
details summary { cursor: pointer; font-weight: 600; margin: .4em 0; }
.wide { overflow-x: auto; }
"""


def render(items: Sequence[Item], *, title: str) -> str:
    """The whole page as one HTML string (images inline)."""
    plt = _pyplot()
    sections: list[str] = [_section("Final figures", _final_tables(items))]
    runs = _all_runs(items)
    if any(r.metrics for r in runs):
        sections.append(_section("Fitness", _img(_fitness_figure(plt, items), "fitness curves")))
        if any(r.validation_keys for r in runs):
            sections.append(_section("Validation", _img(_validation_figure(plt, items), "validation")))
        for panel, keys in _PANELS:
            present = [k for k in keys if any(k[0] in m for r in runs for m in r.metrics)]
            if present:
                sections.append(_section(panel, _img(_series_figure(plt, items, present), panel)))
        species = _species_html(plt, items)
        if species:
            sections.append(_section("NEAT species", species))
        sections.append(_section("Throughput", _img(_throughput_figure(plt, items), "throughput")))
    pbt = _pbt_html(plt, items)
    if pbt:
        sections.append(_section("Population based training", pbt))
    behaviour = _hook_images(items, ("maze_positions.png",), "behaviour space")
    if behaviour:
        sections.append(_section("Behaviour space", behaviour))
    network = _network_html(plt, items)
    if network:
        sections.append(_section("Best network", network))
    sections.append(_section("Config", _configs(items)))
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n" + "\n".join(sections) + "\n</body></html>\n"
    )


def _section(title: str, body: str) -> str:
    anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"<section id='{anchor}'><h2>{html.escape(title)}</h2>\n{body}\n</section>"


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _all_runs(items: Sequence[Item]) -> list[Run]:
    return [r for item in items for r in (item.runs if isinstance(item, Group) else [item])]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>\n" for row in rows)  # one <tr> per row
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"<td class='num'>{'-' if math.isnan(value) else f'{value:.6g}'}</td>"
    if isinstance(value, int):
        return f"<td class='num'>{value}</td>"
    return f"<td>{html.escape('-' if value in (None, '') else str(value))}</td>"


def _final_tables(items: Sequence[Item]) -> str:
    runs = [i for i in items if isinstance(i, Run)]
    parts = []
    if runs:
        parts.append(_figures_table("run", [(r.name, r.final()) for r in runs]))
    for group in (i for i in items if isinstance(i, Group)):
        rows = [(r.name, r.final()) for r in group.runs]
        summary = _mean_row([f for _, f in rows])
        parts.append(f"<h3>{html.escape(group.name)}: {len(group.runs)} runs</h3>")
        parts.append(_figures_table("run", [*rows, ("mean ± 95% CI", summary)]))
    return "\n".join(parts)


def _figures_table(first: str, rows: list[tuple[str, dict[str, Any]]]) -> str:
    keys: list[str] = []
    for _, figures in rows:
        keys += [k for k in figures if k not in keys]
    return _table([first, *keys], [[name, *(figures.get(k) for k in keys)] for name, figures in rows])


def _mean_row(figures: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in figures[0] if figures else []:
        values = [_number(f.get(key)) for f in figures]
        values = [v for v in values if not math.isnan(v)]
        if not values or key == "stop reason":
            out[key] = None
            continue
        mean, half = _mean_ci(values)
        out[key] = f"{mean:.6g} ± {half:.3g}" if len(values) > 1 else f"{mean:.6g}"
    return out


def _configs(items: Sequence[Item]) -> str:
    parts = []
    for item in items:
        run = item.runs[0] if isinstance(item, Group) else item
        label = f"{item.name} (config of {run.name})" if isinstance(item, Group) else item.name
        text = run.config or "(no config.toml: a run started from Python)"
        parts.append(
            f"<details open><summary>{html.escape(label)}</summary><pre>{html.escape(text)}</pre></details>"
        )
    return "\n".join(parts)


# -- figures ------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(plt: Any, fig: Any, **margins: float) -> bytes:
    """The figure as PNG bytes. Fixed margins: ``tight_layout`` would draw every figure twice."""
    buffer = io.BytesIO()
    rows = fig.axes[0].get_subplotspec().get_gridspec().nrows if fig.axes else 1
    height = fig.get_figheight()
    spacing = {"left": 0.07, "right": 0.98, "wspace": 0.3, "hspace": 0.55}
    spacing.update(bottom=0.5 / height + 0.04 / rows, top=1 - 0.35 / height)
    fig.subplots_adjust(**{**spacing, **margins})
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


_AXES = (("generation", "generation"), ("evaluations", "evaluations"), ("elapsed", "wall time (s)"))


def _curve(item: Item, key: str, x_key: str) -> tuple[list[float], list[float], list[float]]:
    """x, y and the half width of a band: a run's own values (no band), or a group's mean and 95 % CI."""
    if isinstance(item, Run):
        return item.series(x_key), item.series(key), []
    length = min(len(r.metrics) for r in item.runs)
    xs, ys, half = [], [], []
    for g in range(length):
        xs.append(_mean([_number(r.metrics[g].get(x_key)) for r in item.runs]))
        mean, h = _mean_ci([_number(r.metrics[g].get(key)) for r in item.runs])
        ys.append(mean)
        half.append(h)
    return xs, ys, half


def _fitness_figure(plt: Any, items: Sequence[Item]) -> bytes:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for n, item in enumerate(items):
        colour = f"C{n % 10}"
        for ax, (x_key, _) in zip(axes, _AXES, strict=True):
            xs, best, half = _curve(item, "best_ever", x_key)
            if half:  # a group: mean of the best-so-far with its confidence band, the seeds faint
                ax.fill_between(xs, _minus(best, half), _plus(best, half), color=colour, alpha=0.2)
                for run in item.runs:
                    ax.plot(run.series(x_key), run.series("best_ever"), color=colour, alpha=0.25, lw=0.8)
                ax.plot(xs, best, color=colour, label=f"{item.name}: best ever, mean ± 95% CI")
            else:
                _, mean, _ = _curve(item, "mean", x_key)
                _, std, _ = _curve(item, "std", x_key)
                ax.fill_between(xs, _minus(mean, std), _plus(mean, std), color=colour, alpha=0.15)
                ax.plot(xs, mean, color=colour, lw=0.9, ls=":", label=f"{item.name}: mean ± std")
                ax.plot(xs, best, color=colour, label=f"{item.name}: best ever")
    for ax, (_, label) in zip(axes, _AXES, strict=True):
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fitness")
    axes[0].legend(fontsize=7, loc="lower right")
    return _png(plt, fig)


def _validation_figure(plt: Any, items: Sequence[Item]) -> bytes:
    keys: list[str] = []
    for run in _all_runs(items):
        keys += [k for k in run.validation_keys if k not in keys]
    keys = keys[:4]
    fig, axes = plt.subplots(len(keys), 3, figsize=(13, 3 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        for col, (x_key, label) in enumerate(_AXES):
            ax = axes[row][col]
            for n, item in enumerate(items):
                xs, ys, half = _curve(item, key, x_key)
                _line(ax, xs, ys, half, f"C{n % 10}", item.name)
            ax.set_xlabel(label)
            ax.set_ylabel(key)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    return _png(plt, fig)


def _series_figure(plt: Any, items: Sequence[Item], keys: list[tuple[str, str, bool]]) -> bytes:
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    for i, (key, label, log) in enumerate(keys):
        ax = axes[i // cols][i % cols]
        for n, item in enumerate(items):
            xs, ys, half = _curve(item, key, "generation")
            _line(ax, xs, ys, half, f"C{n % 10}", item.name)
        if log and all(v > 0 for item in items for v in _curve(item, key, "generation")[1] if v == v):
            ax.set_yscale("log")
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    for j in range(len(keys), rows * cols):
        axes[j // cols][j % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    return _png(plt, fig)


def _throughput_figure(plt: Any, items: Sequence[Item]) -> bytes:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    for ax, key, label in zip(
        axes, ("steps_per_s", "evals_per_s"), ("env steps / s", "evaluations / s"), strict=True
    ):
        for n, item in enumerate(items):
            xs, ys, half = _curve(item, key, "generation")
            if len(ys) > 20:  # per-generation timings are noisy: the raw values faint, a running median
                ax.plot(xs, ys, color=f"C{n % 10}", alpha=0.25, lw=0.7)
                ys, half = _running_median(ys, max(3, len(ys) // 20)), []
            _line(ax, xs, ys, half, f"C{n % 10}", item.name)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    return _png(plt, fig)


def _line(ax: Any, xs: list[float], ys: list[float], half: list[float], colour: str, label: str) -> None:
    if half:
        ax.fill_between(xs, _minus(ys, half), _plus(ys, half), color=colour, alpha=0.2)
    ax.plot(xs, ys, color=colour, label=label)


def _species_html(plt: Any, items: Sequence[Item]) -> str:
    """A stack plot of species sizes per NEAT run, and the best genome's size."""
    from neuroevo.nn.neat.draw import species_history

    parts = []
    for run in _all_runs(items):
        gens, sizes = species_history(run.metrics)
        if not sizes:
            continue
        fig, ax = plt.subplots(figsize=(7, 3.4))
        ax.stackplot(gens, list(sizes.values()))
        ax.set(xlabel="generation", ylabel="members per species", title=f"{run.name}: species")
        ax.margins(x=0)
        parts.append(_img(_png(plt, fig), f"{run.name} species"))
        member = (run.best or {}).get("member") or {}
        if "nodes" in member:
            enabled = sum(1 for c in member.get("connections", []) if c.get("enabled", True))
            hidden = len(member["nodes"]) - int(member.get("num_outputs", 0))
            parts.append(
                f"<p>best genome of {html.escape(run.name)}: {len(member['nodes'])} nodes "
                f"({hidden} hidden), {enabled} enabled connections</p>"
            )
    return "\n".join(parts)


def _hook_images(items: Sequence[Item], names: tuple[str, ...], alt: str) -> str:
    """Pictures a strategy or task hook wrote to ``report/`` (``WritesReport``), embedded."""
    parts = []
    for run in _all_runs(items):
        for name in names:
            path = run.path / "report" / name
            if path.is_file() and path.stat().st_size:
                parts.append(f"<p>{html.escape(run.name)}</p>" + _img(path.read_bytes(), f"{run.name} {alt}"))
    return "\n".join(parts)


def _pbt_html(plt: Any, items: Sequence[Item]) -> str:
    """Hyperparameter schedules and the lineage: the PBT strategy's own pictures (``pbt_*.png`` in
    ``report/``) when it drew them, else drawn here from ``pbt.jsonl`` (one ready event per line:
    member, step, parent, ``old`` and ``new`` hyperparameter values)."""
    parts = []
    for run in _all_runs(items):
        drawn = _hook_images([run], _PBT_PICTURES, "PBT")
        if drawn:
            parts.append(drawn)
            continue
        if not run.pbt:
            continue
        names = sorted({k for e in run.pbt for k in (e.get("new") or {}) if isinstance(e.get("new"), dict)})
        fig, axes = plt.subplots(1, len(names) + 1, figsize=(4.4 * (len(names) + 1), 3.4), squeeze=False)
        members = sorted({e.get("member") for e in run.pbt}, key=str)
        for ax, name in zip(axes[0], names, strict=False):
            for n, member in enumerate(members):
                events = [e for e in run.pbt if e.get("member") == member and name in (e.get("new") or {})]
                steps = [e.get("step", 0) for e in events]
                ax.step(steps, [_number(e["new"][name]) for e in events], where="post", color=f"C{n % 10}")
            ax.set(title=name, xlabel="step")
            ax.grid(alpha=0.3)
        lineage = axes[0][-1]
        order = {m: i for i, m in enumerate(members)}
        following: dict[int, Any] = {}  # each event -> the step of the same member's next ready event
        last: dict[Any, int] = {}
        for k, e in enumerate(run.pbt):
            if e.get("member") in last:
                following[last[e.get("member")]] = e.get("step", 0)
            last[e.get("member")] = k
        for k, e in enumerate(run.pbt):  # after a ready event the member goes on from its parent's state
            step, parent, member = e.get("step", 0), e.get("parent", e.get("member")), e.get("member")
            if k in following and parent in order and member in order:
                copied = parent != member
                lineage.plot(
                    [step, following[k]],
                    [order[parent], order[member]],
                    color="C3" if copied else "0.7",
                    lw=1.4 if copied else 0.8,
                    zorder=2 if copied else 1,
                )
        lineage.set(title="lineage (red: copied a better member)", xlabel="step", ylabel="member")
        lineage.set_yticks(range(len(members)), [str(m) for m in members])
        parts.append(_img(_png(plt, fig), f"{run.name} PBT"))
    return "\n".join(parts)


def _network_html(plt: Any, items: Sequence[Item]) -> str:
    parts = []
    for item in items:
        run = item.best_run if isinstance(item, Group) else item
        network = (run.best or {}).get("network", {})
        label = f"{item.name}" + (
            f" (best of {len(item.runs)}: {run.name})" if isinstance(item, Group) else ""
        )
        if (run.path / "report" / "best_genome.png").is_file():
            png = (run.path / "report" / "best_genome.png").read_bytes()
            parts.append(f"<p>{html.escape(label)}: NEAT genome</p>" + _img(png, f"{run.name} genome"))
        elif network.get("type") == "mlp" and (run.path / "best" / "params.safetensors").is_file():
            png = _mlp_figure(plt, run, network)
            if png:
                sizes = " x ".join(str(s) for s in network.get("layer_sizes", []))
                parts.append(f"<p>{html.escape(label)}: MLP {sizes}</p>" + _img(png, f"{run.name} network"))
        elif network:
            parts.append(
                f"<p>{html.escape(label)}: network type {html.escape(str(network.get('type')))} "
                "(no drawing for this type)</p>"
            )
    return "\n".join(parts)


def _mlp_figure(plt: Any, run: Run, network: dict[str, Any], most: int = 24) -> bytes | None:
    """Layers as columns of nodes, edges coloured by sign and shaded by |weight|.

    A layer wider than ``most`` shows its ``most`` nodes with the largest summed |weight|.
    """
    from safetensors.torch import load_file

    tensors = load_file(str(run.path / "best" / "params.safetensors"))
    weights = []
    i = 0
    while f"layers.{i}.weight" in tensors:
        weights.append(tensors[f"layers.{i}.weight"].float())
        i += 1
    if not weights:
        return None
    sizes = [weights[0].shape[1], *(w.shape[0] for w in weights)]
    shown = [list(range(min(s, most))) for s in sizes]
    for layer, w in enumerate(weights):  # keep the strongest hidden nodes of a wide layer
        if 0 < layer + 1 < len(sizes) - 1 and sizes[layer + 1] > most:
            shown[layer + 1] = sorted(w.abs().sum(1).topk(most).indices.tolist())
    fig, ax = plt.subplots(figsize=(min(2.2 * len(sizes) + 2, 12), 4.5))
    ys = [{n: (k - (len(s) - 1) / 2) for k, n in enumerate(s)} for s in shown]
    scale = max(float(w.abs().max()) for w in weights) or 1.0
    for layer, w in enumerate(weights):
        for j, y_out in ys[layer + 1].items():
            for k, y_in in ys[layer].items():
                value = float(w[j, k])
                ax.plot(
                    [layer, layer + 1],
                    [y_in, y_out],
                    color="tab:blue" if value > 0 else "tab:red",
                    alpha=min(1.0, 0.05 + abs(value) / scale),
                    lw=0.3 + 1.5 * abs(value) / scale,
                    zorder=1,
                )
    activations = ["input", *network.get("activations", [])]
    for layer, nodes in enumerate(ys):
        ax.scatter([layer] * len(nodes), list(nodes.values()), s=40, color="k", zorder=2)
        name = activations[layer] if layer < len(activations) else ""
        name = name if isinstance(name, str) else "mixed"
        hidden = f" ({len(nodes)} of {sizes[layer]} shown)" if len(nodes) < sizes[layer] else ""
        ax.annotate(
            f"{sizes[layer]}\n{name}{hidden}",
            (layer, -max(len(s) for s in shown) / 2 - 1.5),
            ha="center",
            fontsize=8,
        )
    ax.set_axis_off()
    span = max(len(nodes) for nodes in shown)
    ax.set_ylim(-span / 2 - 2.5, span / 2 + 0.5)
    ax.set_title("best network (blue +, red -; shade ~ |weight|)", fontsize=10)
    return _png(plt, fig)


# -- numbers ------------------------------------------------------------------------------------
def _number(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.fmean(finite) if finite else math.nan


def _mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half width of its 95 % confidence interval (Student t; 0 for one value)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan
    if len(finite) == 1:
        return finite[0], 0.0
    t = _T975.get(len(finite) - 1, 1.96 + 2.4 / (len(finite) - 1))
    return statistics.fmean(finite), t * statistics.stdev(finite) / math.sqrt(len(finite))


def _running_median(values: list[float], window: int) -> list[float]:
    out = []
    for i in range(len(values)):
        around = [v for v in values[max(0, i - window // 2) : i + window // 2 + 1] if not math.isnan(v)]
        out.append(statistics.median(around) if around else math.nan)
    return out


def _minus(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b, strict=True)]


def _plus(a: list[float], b: list[float]) -> list[float]:
    return [x + y for x, y in zip(a, b, strict=True)]


__all__ = ["Group", "Run", "load", "render", "write_report", "write_run_report"]
