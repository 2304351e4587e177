"""The evolve loop: ask, evaluate, tell, log, checkpoint; stop on generations, target or time.

Every generation appends one line to ``metrics.jsonl`` (when a run folder is given):
generation, best/mean/std of this generation's fitness, best_ever, evaluations, steps,
nan_count, the strategy's stats (sigma, lr, ...), the task's metrics, validation metrics
of the best member, and wall-clock fields (seconds, elapsed, evals_per_s, steps_per_s).
Checkpoints are written every ``checkpoint_every`` generations and at exit; ``resume``
continues from the newest complete one and reproduces the uninterrupted run exactly
(all fields but the wall-clock ones).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroevo.core.errors import FitnessEvaluationError
from neuroevo.core.types import Best, Fitness
from neuroevo.runtime.executor import Executor, LocalExecutor
from neuroevo.runtime.rundir import RunDir

Callback = Callable[[dict[str, Any], Any], Any]


@dataclass
class EvolutionResult:
    """What ``evolve`` returns: the best member, how far it got, why it stopped, the metrics."""

    best: Best | None
    generations: int
    evaluations: int
    stop_reason: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    validation: dict[str, float] = field(default_factory=dict)


def _finite_stats(values: torch.Tensor) -> tuple[float, float, float]:
    v = values.detach().to("cpu", torch.float64)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return math.nan, math.nan, math.nan
    return float(v.max()), float(v.mean()), float(v.std(unbiased=False))


def evolve(
    strategy: Any,
    phenotype: Any,
    task: Any,
    *,
    generations: int | None = None,
    target_fitness: float | None = None,
    time_budget: float | None = None,
    callbacks: Sequence[Callback] = (),
    executor: Executor | None = None,
    run_dir: str | Path | RunDir | None = None,
    checkpoint_every: int = 10,
    keep_checkpoints: int = 3,
    validate_every: int = 1,
    resume: bool = False,
    progress: bool = False,
) -> EvolutionResult:
    """Evolve until ``generations`` (total, counted from 0), ``target_fitness`` or ``time_budget`` s.

    ``callbacks`` are called as ``cb(metrics_line, strategy)`` after each generation; a
    truthy return stops the run. With ``run_dir`` the run is logged and checkpointed there;
    with ``resume=True`` it continues from the newest checkpoint in ``run_dir``.
    A fitness evaluation that raises stops the run with ``FitnessEvaluationError`` naming
    the generation; checkpoints already written stay intact.
    """
    if generations is None and target_fitness is None and time_budget is None:
        raise ValueError("evolve() needs a stop condition: generations, target_fitness or time_budget")
    executor = executor or LocalExecutor()
    run = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    evaluations = steps = 0
    elapsed_before = 0.0
    metrics: list[dict[str, Any]] = []
    validation: dict[str, float] = {}
    if run is not None and not resume:
        run.prepare()
    if resume:
        if run is None:
            raise ValueError("resume=True needs run_dir")
        found = run.latest_checkpoint()
        if found is not None:
            _, state = found
            strategy.load_state_dict(state["strategy"])
            task.load_state_dict(state.get("task", {}))
            rt = state["runtime"]
            evaluations, steps = int(rt["evaluations"]), int(rt["steps"])
            elapsed_before = float(rt["elapsed"])
            validation = dict(rt.get("validation", {}))
            metrics = run.truncate_metrics(strategy.generation)
        else:
            run.truncate_metrics(0)

    def checkpoint() -> None:
        if run is None:
            return
        records = getattr(task, "write_records", None)
        if callable(records):  # per-generation records (maze positions) go to report/, not the checkpoint
            records(run.report)
        state = {
            "strategy": strategy.state_dict(),
            "task": task.state_dict(),
            "runtime": {
                "evaluations": evaluations,
                "steps": steps,
                "elapsed": elapsed_before + (time.perf_counter() - start),
                "validation": validation,
            },
        }
        run.write_checkpoint(strategy.generation, state, keep=keep_checkpoints)

    bar = _Progress(generations, strategy.generation) if progress else None
    start = time.perf_counter()
    stop_reason = ""
    last_checkpointed = strategy.generation if resume else -1
    best_written: tuple[float, int] | None = None
    try:
        while True:
            generation = strategy.generation
            if generations is not None and generation >= generations:
                stop_reason = "generations"
                break
            if time_budget is not None and elapsed_before + time.perf_counter() - start >= time_budget:
                stop_reason = "time_budget"
                break
            t0 = time.perf_counter()
            population = strategy.ask()
            fitness = _evaluate(executor, task, phenotype, population, generation)
            stats = dict(strategy.tell(fitness) or {})
            reeval_stats, reeval_count = _reevaluate(strategy, executor, task, phenotype, generation)
            stats.update(reeval_stats)
            n_members = int(fitness.values.numel())
            evaluations += n_members + reeval_count
            steps += int(fitness.steps)
            gen_best, gen_mean, gen_std = _finite_stats(fitness.values)
            best = strategy.best
            if best is not None and validate_every and (generation % validate_every == 0):
                validation = task.validate(phenotype, best.params)
            seconds = time.perf_counter() - t0
            line: dict[str, Any] = {
                "generation": generation,
                "best": gen_best,
                "mean": gen_mean,
                "std": gen_std,
                "best_ever": None if best is None else best.fitness,
                "evaluations": evaluations,
                "steps": steps,
                "nan_count": strategy.last_nan_count,
                **{k: float(v) for k, v in (stats or {}).items()},
                **{k: float(v) for k, v in fitness.metrics.items()},
                **{k: float(v) for k, v in validation.items()},
                "seconds": seconds,
                "elapsed": elapsed_before + time.perf_counter() - start,
                "evals_per_s": n_members / seconds if seconds > 0 else 0.0,
                "steps_per_s": fitness.steps / seconds if seconds > 0 else 0.0,
            }
            metrics.append(line)
            if run is not None:
                run.append_metrics(line)
                if best is not None and best_written != (best.fitness, best.generation):
                    genome = getattr(strategy, "best_genome", None)
                    run.write_best(phenotype, best, {"validation": validation}, genome=genome)
                    best_written = (best.fitness, best.generation)
            if bar is not None:
                bar.update(line)
            if checkpoint_every and strategy.generation % checkpoint_every == 0:
                checkpoint()
                last_checkpointed = strategy.generation
            if any(cb(line, strategy) for cb in callbacks):
                stop_reason = "callback"
                break
            if target_fitness is not None and best is not None and best.fitness >= target_fitness:
                stop_reason = "target_fitness"
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    finally:
        if bar is not None:
            bar.close()
    if last_checkpointed != strategy.generation:
        checkpoint()
    if run is not None:
        _write_report(run, metrics, strategy, task)
    return EvolutionResult(
        best=strategy.best,
        generations=strategy.generation,
        evaluations=evaluations,
        stop_reason=stop_reason,
        metrics=metrics,
        run_dir=None if run is None else run.path,
        validation=validation,
    )


def _evaluate(
    executor: Executor, task: Any, phenotype: Any, population: Any, generation: int, stream: int = 0
):
    try:
        fitness = executor.evaluate(task, phenotype, population, generation, stream=stream)
    except FitnessEvaluationError:
        raise
    except Exception as exc:  # a user's fitness function may raise anything: name it and the generation
        raise FitnessEvaluationError(
            f"generation {generation}: fitness evaluation raised {type(exc).__name__}: {exc}", generation
        ) from exc
    if not isinstance(fitness, Fitness):
        fitness = Fitness(values=torch.as_tensor(fitness))
    return fitness


def _reevaluate(
    strategy: Any, executor: Executor, task: Any, phenotype: Any, generation: int
) -> tuple[dict[str, float], int]:
    """Deep GA's elite re-evaluation: extra evaluation streams for the strategy's candidates.

    Returns the strategy's stats and the number of extra member evaluations.
    """
    request = getattr(strategy, "reevaluation_request", None)
    wanted = request() if callable(request) else None
    if wanted is None:
        return {}, 0
    candidates, streams = wanted
    total, count = None, 0
    for stream in range(1, int(streams) + 1):
        values = _evaluate(executor, task, phenotype, candidates, generation, stream).values.to(torch.float64)
        total = values if total is None else total + values
        count += int(values.numel())
    if total is None:
        return {}, 0
    return dict(strategy.tell_reevaluation(total / int(streams)) or {}), count


def _write_report(run: RunDir, metrics: list[dict[str, Any]], strategy: Any, task: Any) -> None:
    """Fitness curves, plus any report the strategy or task writes (``write_report(folder)``)."""
    all_metrics = run.read_metrics() or metrics
    if all_metrics:
        from neuroevo.runtime.plots import plot_fitness

        plot_fitness(all_metrics, run.report / "fitness.png")
    for obj in (strategy, task):
        writer = getattr(obj, "write_report", None)
        if callable(writer):
            writer(run.report)


class _Progress:
    """A rich progress bar: generation, best, mean, evals/s and ETA."""

    def __init__(self, total: int | None, start: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("gen"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("best {task.fields[best]}  mean {task.fields[mean]}  {task.fields[rate]} evals/s"),
            TimeRemainingColumn(),
            transient=False,
        )
        self._task = self._progress.add_task(
            "evolve", total=total, completed=start, best="-", mean="-", rate="-"
        )
        self._progress.start()

    def update(self, line: dict[str, Any]) -> None:
        self._progress.update(
            self._task,
            completed=line["generation"] + 1,
            best=f"{line['best_ever']:.4g}" if line["best_ever"] is not None else "-",
            mean=f"{line['mean']:.4g}",
            rate=f"{line['evals_per_s']:.0f}",
        )

    def close(self) -> None:
        self._progress.stop()
