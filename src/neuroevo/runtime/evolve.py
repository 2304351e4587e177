"""The evolve loop: ask, evaluate, tell, log, checkpoint; stop on generations, target or time.

Every generation appends one line to ``metrics.jsonl`` (when a run folder is given):
generation, best/mean/std of this generation's fitness, best_ever, evaluations, steps,
nan_count, the strategy's stats (sigma, lr, ...), the task's metrics, validation metrics
of the best member, and wall-clock fields (seconds, elapsed, evals_per_s, steps_per_s).
Checkpoints are written every ``checkpoint_every`` generations and at exit; ``resume``
continues from the newest complete one and reproduces the uninterrupted run exactly
(all fields but the wall-clock ones), ``best/`` included.

The loop itself is a page; each concern has its own small piece: ``_Ledger`` (the
counters a checkpoint carries), ``_StopRule``, ``_evaluate``/``_reevaluate``,
``_Recorder`` (metrics, ``best/``, checkpoints, report) and ``_Progress``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuroevo.core import memory
from neuroevo.core.contracts import (
    ExportsIO,
    HasGenome,
    Reevaluating,
    RegeneratesMembers,
    WritesRecords,
    WritesReport,
)
from neuroevo.core.errors import FitnessEvaluationError
from neuroevo.core.types import Best, Fitness
from neuroevo.runtime.executor import Executor, LocalExecutor, ReportsStats, TakesMemberRecipes
from neuroevo.runtime.rundir import RunDir

Callback = Callable[[dict[str, Any], Any], Any]


@dataclass
class EvolutionResult:
    """What ``evolve`` returns: the best member, how far it got, why it stopped, the metrics.

    ``validation`` is the best member's validation, as written to ``best/network.json``.
    """

    best: Best | None
    generations: int
    evaluations: int
    stop_reason: str
    metrics: list[dict[str, Any]] = field(default_factory=list)
    run_dir: Path | None = None
    validation: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    elapsed: float = 0.0


@dataclass
class _Ledger:
    """The runtime's own state, carried by every checkpoint so a resume continues exactly."""

    evaluations: int = 0
    steps: int = 0
    elapsed: float = 0.0
    validation: dict[str, float] = field(default_factory=dict)  # of the current best, for metrics
    best_key: list[float] | None = None  # (fitness, generation) of the best member validated and written
    best_validation: dict[str, float] = field(default_factory=dict)  # that member's validation
    #: bytes of each records file (``WritesRecords``; path relative to the run folder) at this
    #: checkpoint; None in checkpoints older than this field (their records files are left alone)
    records: dict[str, int] | None = field(default_factory=dict)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _Ledger:
        ledger = cls(**{k: v for k, v in state.items() if k in cls.__dataclass_fields__})
        ledger.evaluations, ledger.steps = int(ledger.evaluations), int(ledger.steps)
        ledger.elapsed = float(ledger.elapsed)
        if "records" not in state:  # a checkpoint from before records were counted
            ledger.records = None
        return ledger


@dataclass
class _StopRule:
    """When to stop: a total generation count, a target fitness, a time budget, or a callback."""

    generations: int | None
    target_fitness: float | None
    time_budget: float | None
    callbacks: Sequence[Callback] = ()

    def __post_init__(self) -> None:
        if self.generations is None and self.target_fitness is None and self.time_budget is None:
            raise ValueError("evolve() needs a stop condition: generations, target_fitness or time_budget")

    def before(self, generation: int, elapsed: float) -> str:
        """The reason to stop before running ``generation`` ('' to go on)."""
        if self.generations is not None and generation >= self.generations:
            return "generations"
        if self.time_budget is not None and elapsed >= self.time_budget:
            return "time_budget"
        return ""

    def after(self, line: dict[str, Any], strategy: Any) -> str:
        """The reason to stop after a generation whose metrics are ``line`` ('' to go on)."""
        if any(cb(line, strategy) for cb in self.callbacks):
            return "callback"
        best = strategy.best
        if self.target_fitness is not None and best is not None and best.fitness >= self.target_fitness:
            return "target_fitness"
        return ""


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
    overwrite: bool = False,
    progress: bool = False,
    tensorboard: bool = False,
) -> EvolutionResult:
    """Evolve until ``generations`` (total, counted from 0), ``target_fitness`` or ``time_budget`` s.

    ``callbacks`` are called as ``cb(metrics_line, strategy)`` after each generation; a
    truthy return stops the run. With ``run_dir`` the run is logged and checkpointed there;
    ``resume=True`` continues from the newest checkpoint in ``run_dir``, ``overwrite=True``
    starts over in a folder that already holds a run. A new best member is validated when
    it is written to ``best/``; otherwise the best is validated every ``validate_every``
    generations. A fitness evaluation that raises stops the run with
    ``FitnessEvaluationError`` naming the generation (and the last checkpoint, if any).
    With ``run_dir``, ``run.log`` records resume events, warnings and the stop reason,
    ``report/report.html`` is written at the end, and ``tensorboard=True`` writes the metrics
    as TensorBoard scalars too (``neuroevo.runtime.logging``).
    """
    stop = _StopRule(generations, target_fitness, time_budget, callbacks)
    memory.keep_freed_memory()  # process-wide malloc tuning, once (memory.configure / env switch it off)
    executor = executor or LocalExecutor()
    run = run_dir if isinstance(run_dir, RunDir) or run_dir is None else RunDir(run_dir)
    recorder = _Recorder(run, keep_checkpoints, tensorboard)
    ledger, metrics = recorder.start(strategy, task, resume=resume, overwrite=overwrite)
    if run is not None and not resume and not run.config_written:
        from neuroevo.runtime.describe import run_keys_of

        keys = run_keys_of(
            executor,
            name=run.path.name,
            generations=generations,
            target_fitness=target_fitness,
            time_budget_s=time_budget,
            checkpoint_every=checkpoint_every or 10,
            keep_checkpoints=keep_checkpoints,
            validate_every=validate_every,
            progress=progress,
            tensorboard=tensorboard,
        )
        recorder.describe(strategy, phenotype, task, keys)
    clock = _Clock(ledger.elapsed)
    bar = _Progress(generations, strategy.generation) if progress else _NoProgress()
    stop_reason = ""
    held = _HeldInterrupt()
    try:
        while not (stop_reason := stop.before(strategy.generation, clock.elapsed())):
            line = _generation(strategy, phenotype, task, executor, ledger, clock, validate_every, held)
            metrics.append(line)
            recorder.record(line, strategy, phenotype, task, ledger)
            bar.update(line)
            if checkpoint_every and strategy.generation % checkpoint_every == 0:
                recorder.checkpoint(strategy, task, ledger, clock)
            held.release()  # a Ctrl-C that came since tell() is raised here
            if stop_reason := stop.after(line, strategy):
                break
    except KeyboardInterrupt:
        stop_reason = "interrupted"
    except FitnessEvaluationError as exc:
        exc.last_checkpoint = recorder.last_checkpoint
        recorder.close(f"stop reason: failed ({exc})")
        raise
    except Exception as exc:  # anything else (a strategy, a worker): run.log says so, then it propagates
        recorder.close(f"stop reason: error ({type(exc).__name__}: {exc})")
        raise
    finally:
        held.release(raise_pending=False)
        bar.close(stop_reason)
    recorder.finish(strategy, task, ledger, clock, metrics, stop_reason)
    return EvolutionResult(
        best=strategy.best,
        generations=strategy.generation,
        evaluations=ledger.evaluations,
        stop_reason=stop_reason,
        metrics=metrics,
        run_dir=None if run is None else run.path,
        validation=dict(ledger.best_validation),
        steps=ledger.steps,
        elapsed=clock.elapsed(),
    )


class _HeldInterrupt:
    """Holds Ctrl-C from a generation's ``tell`` until its metrics line and checkpoint are written.

    An interrupt in between would leave a strategy one generation ahead of ``metrics.jsonl`` (or
    half updated), and the checkpoint written on the way out would not match the metrics. Held
    only in the main thread and while Python's default SIGINT handler is installed.
    """

    def __init__(self) -> None:
        self.pending = False
        self.previous: Any = None

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
                self.previous = signal.signal(signal.SIGINT, self._hold)

    def _hold(self, signum: int, frame: Any) -> None:
        self.pending = True

    def release(self, raise_pending: bool = True) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
        if self.pending:
            self.pending = False
            if raise_pending:
                raise KeyboardInterrupt


class _Clock:
    """Elapsed run time, counting the time before a resume."""

    def __init__(self, before: float):
        self.before = before
        self.start = time.perf_counter()

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start


def _generation(
    strategy: Any,
    phenotype: Any,
    task: Any,
    executor: Executor,
    ledger: _Ledger,
    clock: _Clock,
    validate_every: int,
    held: _HeldInterrupt | None = None,
) -> dict[str, Any]:
    """One generation: ask, evaluate, tell, re-evaluate, validate; returns its metrics line.

    From ``tell`` on, a Ctrl-C is ``held`` until the caller has written the line (and checkpoint).
    """
    t0 = time.perf_counter()
    generation = strategy.generation
    population = strategy.ask()
    if isinstance(executor, TakesMemberRecipes) and isinstance(strategy, RegeneratesMembers):
        executor.note_recipe(population, strategy.member_recipe())  # keys on the wire, not rows
    fitness = _evaluate(executor, task, phenotype, population, generation)
    if held is not None:
        held.start()
    stats = dict(strategy.tell(fitness) or {})
    reeval_stats, reeval_count = _reevaluate(strategy, executor, task, phenotype, generation)
    stats.update(reeval_stats)
    n_members = int(fitness.values.numel())
    ledger.evaluations += n_members + reeval_count
    ledger.steps += int(fitness.steps)
    _validate_best(strategy.best, phenotype, task, ledger, generation, validate_every)
    gen_best, gen_mean, gen_std = _finite_stats(fitness.values)
    seconds = time.perf_counter() - t0
    best = strategy.best
    return {
        "generation": generation,
        "best": gen_best,
        "mean": gen_mean,
        "std": gen_std,
        "best_ever": None if best is None else best.fitness,
        "evaluations": ledger.evaluations,
        "steps": ledger.steps,
        "nan_count": strategy.last_nan_count,
        **{k: float(v) for k, v in stats.items()},
        **{k: float(v) for k, v in fitness.metrics.items()},
        **(executor.generation_stats() if isinstance(executor, ReportsStats) else {}),
        **{k: float(v) for k, v in ledger.validation.items()},
        "seconds": seconds,
        "elapsed": clock.elapsed(),
        "evals_per_s": n_members / seconds if seconds > 0 else 0.0,
        "steps_per_s": fitness.steps / seconds if seconds > 0 else 0.0,
    }


def _validate_best(
    best: Best | None, phenotype: Any, task: Any, ledger: _Ledger, generation: int, validate_every: int
) -> None:
    """Validate a new best member at once; otherwise the best every ``validate_every`` generations."""
    if best is None:
        return
    key = [best.fitness, best.generation]
    if key != ledger.best_key:
        ledger.validation = task.validate(phenotype, best.params)
        ledger.best_validation = dict(ledger.validation)
        ledger.best_key = key
    elif validate_every and generation % validate_every == 0:
        ledger.validation = task.validate(phenotype, best.params)


def _finite_stats(values: torch.Tensor) -> tuple[float, float, float]:
    v = values.detach().to("cpu", torch.float64)
    v = v[torch.isfinite(v)]
    if v.numel() == 0:
        return math.nan, math.nan, math.nan
    return float(v.max()), float(v.mean()), float(v.std(unbiased=False))


def _evaluate(
    executor: Executor, task: Any, phenotype: Any, population: Any, generation: int, stream: int = 0
) -> Fitness:
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
    """Deep GA's elite re-evaluation (the ``Reevaluating`` hook): extra streams for the candidates.

    Returns the strategy's stats and the number of extra member evaluations.
    """
    if not isinstance(strategy, Reevaluating):
        return {}, 0
    wanted = strategy.reevaluation_request()
    if wanted is None:
        return {}, 0
    candidates, streams = wanted
    recipe = getattr(strategy, "reevaluation_recipe", None)
    if isinstance(executor, TakesMemberRecipes) and callable(recipe):
        executor.note_recipe(candidates, recipe())  # the candidates' keys on the wire, every stream
    total, count = None, 0
    for stream in range(1, int(streams) + 1):
        values = _evaluate(executor, task, phenotype, candidates, generation, stream).values.to(torch.float64)
        total = values if total is None else total + values
        count += int(values.numel())
    if total is None:
        return {}, 0
    return dict(strategy.tell_reevaluation(total / int(streams)) or {}), count


class _Recorder:
    """Everything a run writes to its folder: metrics lines, ``best/``, checkpoints, the report."""

    def __init__(self, run: RunDir | None, keep_checkpoints: int, tensorboard: bool = False):
        self.run = run
        self.keep = keep_checkpoints
        self.last_checkpoint: int | None = None
        self.written_key: list[float] | None = None
        self.tensorboard = tensorboard
        self.log: Any = None  # run.log's handler while the run goes
        self.board: Any = None  # TensorBoard writer, with tensorboard=True

    def start(self, strategy: Any, task: Any, *, resume: bool, overwrite: bool) -> tuple[_Ledger, list]:
        """Prepare the folder, or load the newest checkpoint when resuming; returns the ledger and metrics."""
        run = self.run
        if not resume:
            if run is not None:
                run.prepare(overwrite=overwrite)
                self._open_logs(0, "started")
            return _Ledger(), []
        if run is None:
            raise ValueError("resume=True needs run_dir")
        run.clean_temporary_files()
        found = run.latest_checkpoint()
        if found is None:
            run.truncate_metrics(0)
            run.truncate_records({})
            self._open_logs(0, "resumed: no complete checkpoint, starting from generation 0")
            return _Ledger(), []
        self.last_checkpoint, state = found
        strategy.load_state_dict(state["strategy"])
        task.load_state_dict(state.get("task", {}))
        ledger = _Ledger.from_state(state["runtime"])
        if ledger.records is not None:  # records written after this checkpoint are regenerated
            run.truncate_records(ledger.records)
        self.written_key = ledger.best_key
        self._open_logs(
            strategy.generation, f"resumed from the checkpoint of generation {strategy.generation}"
        )
        return ledger, run.truncate_metrics(strategy.generation)

    def describe(self, strategy: Any, phenotype: Any, task: Any, run_keys: dict[str, Any]) -> None:
        """A Python run's ``config.toml`` when its objects came from registered names; else run.log says why.

        See ``neuroevo.runtime.describe``: written only when the config rebuilds the same objects.
        """
        import tomli_w

        from neuroevo.runtime import logging as runlog
        from neuroevo.runtime.describe import describe_run

        tables, why = describe_run(strategy, phenotype, task, run_keys)
        if tables is None:
            self.run.forget_config()
            runlog.LOGGER.info("no config.toml: %s; resume from Python with evolve(..., resume=True)", why)
            return
        self.run.write_config(tomli_w.dumps(tables))

    def _open_logs(self, generation: int, event: str) -> None:
        from neuroevo.runtime import logging as runlog

        if self.tensorboard:
            self.board = runlog.TensorBoardLog(self.run.path, start=generation)
        self.log = runlog.open_run_log(self.run.path)
        runlog.LOGGER.info("%s %s", event, self.run.path)

    def close(self, message: str = "") -> None:
        """Log ``message``, then close ``run.log`` and the TensorBoard writer."""
        from neuroevo.runtime import logging as runlog

        if message and self.log is not None:
            runlog.LOGGER.info(message)
        if self.board is not None:
            self.board.close()
        runlog.close_run_log(self.log)
        self.log = self.board = None

    def record(self, line: dict[str, Any], strategy: Any, phenotype: Any, task: Any, ledger: _Ledger) -> None:
        """Append the metrics line; write ``best/`` when the best member changed.

        ``best/`` is a snapshot taken at one instant: the member, its validation and the
        task's input/output steps (``ExportsIO``) as they are now.
        """
        if self.run is None:
            return
        self.run.append_metrics(line)
        if self.board is not None:
            self.board.add(line)
        best = strategy.best
        if best is not None and ledger.best_key is not None and ledger.best_key != self.written_key:
            extra: dict[str, Any] = {"validation": ledger.best_validation}
            if isinstance(task, ExportsIO):
                extra["io"] = task.export_io()
            genome = strategy.best_genome if isinstance(strategy, HasGenome) else None
            self.run.write_best(phenotype, best, extra, genome=genome)
            self.written_key = list(ledger.best_key)

    def checkpoint(self, strategy: Any, task: Any, ledger: _Ledger, clock: _Clock) -> None:
        if self.run is None:
            return
        # per-generation records go to files, not the checkpoint: a task's to report/, a strategy's
        # (PBT's ready events, pbt.jsonl) to the run folder; their sizes go into the checkpoint
        for obj, folder in ((task, self.run.report), (strategy, self.run.path)):
            if isinstance(obj, WritesRecords) and (path := obj.write_records(folder)) is not None:
                size = self.run.sync_records(Path(path))
                if ledger.records is not None:
                    ledger.records[Path(path).resolve().relative_to(self.run.path.resolve()).as_posix()] = (
                        size
                    )
        ledger.elapsed = clock.elapsed()
        state = {"strategy": strategy.state_dict(), "task": task.state_dict(), "runtime": asdict(ledger)}
        self.run.write_checkpoint(strategy.generation, state, keep=self.keep)
        self.last_checkpoint = strategy.generation

    def finish(
        self, strategy: Any, task: Any, ledger: _Ledger, clock: _Clock, metrics: list, stop_reason: str
    ) -> None:
        """The final checkpoint (unless the last generation has one) and the report."""
        if self.run is None:
            return
        from neuroevo.runtime.logging import LOGGER

        LOGGER.info("stop reason: %s at generation %d", stop_reason, strategy.generation)
        try:
            if self.last_checkpoint != strategy.generation:
                self.checkpoint(strategy, task, ledger, clock)
            all_metrics = self.run.read_metrics() or metrics
            if all_metrics:
                from neuroevo.runtime.plots import plot_fitness

                plot_fitness(all_metrics, self.run.report / "fitness.png")
            for obj in (strategy, task):
                if isinstance(obj, WritesReport):
                    obj.write_report(self.run.report)
            self._html_report(stop_reason)
        finally:
            self.close()

    def _html_report(self, stop_reason: str) -> None:
        from neuroevo.runtime.logging import LOGGER
        from neuroevo.runtime.report import write_run_report

        try:
            write_run_report(self.run.path, stop_reason)
        except Exception as exc:  # a report that fails must not lose a finished run: say so in run.log
            LOGGER.warning("report/report.html not written: %s: %s", type(exc).__name__, exc)


class _NoProgress:
    """No progress bar (``progress=False``)."""

    def update(self, line: dict[str, Any]) -> None:
        return None

    def close(self, reason: str = "") -> None:
        return None


class _Progress:
    """A rich progress bar: generation, best, mean, evals/s, elapsed time and ETA."""

    def __init__(self, total: int | None, start: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("gen"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("best {task.fields[best]}  mean {task.fields[mean]}  {task.fields[rate]} evals/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[why]}"),
            transient=False,
        )
        self._task = self._progress.add_task(
            "evolve", total=total, completed=start, best="-", mean="-", rate="-", why=""
        )
        self._started = False
        self._start = start
        self._total = total

    def update(self, line: dict[str, Any]) -> None:
        if not self._started:  # a resumed run that has nothing left to do never shows an empty bar
            self._progress.start()
            self._started = True
        self._progress.update(
            self._task,
            completed=line["generation"] + 1,
            best=f"{line['best_ever']:.4g}" if line["best_ever"] is not None else "-",
            mean=f"{line['mean']:.4g}",
            rate=f"{line['evals_per_s']:.0f}",
        )

    def close(self, reason: str = "") -> None:
        if not self._started:
            return
        task = self._progress.tasks[0]
        if reason and reason != "generations":  # an early stop: the bar ends where the run did
            self._progress.update(self._task, total=task.completed, why=f"stopped: {reason}")
        self._progress.stop()
