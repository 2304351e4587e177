"""The ``neuroevo`` command: run, resume, report, list, best, play.

Exit codes: 0 done; 1 a failed run (a fitness function that raised: one line naming the
generation, and the checkpoint ``neuroevo resume`` continues from, when one exists); 2 bad
input (config, arguments, run folders: one line ``error: ...`` before anything is
written); 130 interrupted (Ctrl-C writes a checkpoint first and says how to resume).
``--help`` and ``--version`` do not import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from neuroevo.core.errors import ConfigError, FitnessEvaluationError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Evolve populations of neural networks without backpropagation.",
)


RAY_HELP = "evaluate on Ray: auto, a head's host:port, or local (sets run.executor = ray)"


class Interrupted(Exception):
    """Ctrl-C stopped a run after its checkpoint was written (exit code 130)."""


def _version(value: bool) -> None:
    if value:
        from neuroevo import __version__

        _echo(f"neuroevo {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version and exit")
    ] = False,
) -> None:
    """Evolve populations of neural networks without backpropagation."""


def _echo(message: str) -> None:
    typer.echo(message)


def _executor(settings: Any, built: Any) -> Any:
    """``run.executor``: a ``LocalExecutor`` with the run's memory budget, or a ``RayExecutor`` with
    its actors started (a one-line ConfigError, exit 2, if it cannot connect or place them)."""
    if settings.executor != "ray":
        from neuroevo.runtime.executor import LocalExecutor

        return LocalExecutor(max_memory_gb=settings.max_memory_gb)
    from neuroevo.runtime.ray_executor import RayExecutor

    address = None if settings.ray_address == "local" else settings.ray_address
    executor = RayExecutor(
        address,
        settings.workers,
        num_gpus_per_actor=settings.gpus_per_worker,
        threads_per_actor=settings.threads or 1,
    )
    try:
        executor.start(built.task, built.phenotype)
    except BaseException:
        executor.close()
        raise
    return executor


def _ray_overrides(ray: str | None, workers: int | None, local: bool = False) -> dict[str, Any]:
    """``--ray ADDRESS`` / ``--workers N`` / ``--local`` as ``[run]`` overrides."""
    _check_positive("--workers", workers, 1)
    if local and ray is not None:
        raise ConfigError("--local and --ray both given; allowed: one of them")
    out: dict[str, Any] = {"workers": workers}
    if ray is not None:
        out.update(executor="ray", ray_address=ray)
    if local:
        out["executor"] = "local"
    return out


def _start(config: Any, built: Any, run_path: Path, *, resume: bool, quiet: bool, executor: Any) -> None:
    from neuroevo.runtime import RunDir, evolve

    run = RunDir(run_path, has_config=True)  # run and resume wrote config.toml before
    settings = config.run
    try:
        result = evolve(
            built.strategy,
            built.phenotype,
            built.task,
            generations=settings.generations,
            target_fitness=settings.target_fitness,
            time_budget=settings.time_budget_s,
            executor=executor,
            run_dir=run,
            checkpoint_every=settings.checkpoint_every,
            keep_checkpoints=settings.keep_checkpoints,
            validate_every=settings.validate_every,
            resume=resume,
            progress=settings.progress and not quiet,
            tensorboard=settings.tensorboard,
        )
    finally:
        if executor is not None:
            executor.close()
    from rich.console import Console

    from neuroevo.runtime.logging import summary_table

    Console(width=120).print(summary_table(result))
    if settings.executor == "ray" and result.metrics:
        last = result.metrics[-1]
        _echo(
            f"ray: {settings.workers} workers, {last.get('bytes_out', 0) / 1e3:.1f} kB out and "
            f"{last.get('bytes_in', 0) / 1e3:.1f} kB in per generation, "
            f"{int(last.get('worker_failures', 0))} worker failures"
        )
    _echo(f"run folder: {run.path}  (config.toml, metrics.jsonl, run.log, checkpoints/, best/, report/)")
    _echo(f"report: {run.report / 'report.html'}")
    if result.stop_reason == "interrupted":
        raise Interrupted(
            f"interrupted at generation {result.generations}; checkpoint written. "
            f"Continue with `neuroevo resume {run.path}`"
        )


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="TOML config file")],
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/<run.name>)")] = None,
    seed: Annotated[int | None, typer.Option(help="override run.seed")] = None,
    generations: Annotated[int | None, typer.Option(help="override run.generations")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run in --out")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    seeds: Annotated[
        str | None,
        typer.Option(help="run these seeds one after the other into OUT/seed-N: '0-4' or '0,3,7'"),
    ] = None,
    ray: Annotated[str | None, typer.Option(help=RAY_HELP)] = None,
    workers: Annotated[int | None, typer.Option(help="Ray actors (override run.workers)")] = None,
) -> None:
    """Start a run from a config: metrics, checkpoints, best network and plots go to the run folder.

    With --seeds, one run per seed goes to OUT/seed-<seed>, and OUT/report.html compares them
    (mean with a 95 % confidence band, a table per seed).
    """
    from neuroevo.config import build, load_config
    from neuroevo.runtime import RunDir

    _check_positive("--generations", generations, 1)
    _check_positive("--seed", seed, 0)
    ray_keys = _ray_overrides(ray, workers)
    if seeds is not None:
        if seed is not None:
            raise ConfigError("--seed and --seeds: give one of them")
        _run_seeds(
            config, out, _parse_seeds(seeds), generations, overwrite=overwrite, quiet=quiet, run_keys=ray_keys
        )
        return
    run_keys = {"seed": seed, "generations": generations, **ray_keys}
    cfg = load_config(config, {"run": run_keys})
    run = RunDir(out or Path("runs") / cfg.run.name)
    run.check_can_create(overwrite=overwrite)
    built = build(cfg)  # everything is checked before the run folder is touched
    executor = _executor(cfg.run, built)  # a Ray cluster that cannot serve the run, too
    run.create(cfg.to_toml(), overwrite=overwrite)
    _start(cfg, built, run.path, resume=False, quiet=quiet, executor=executor)


def _parse_seeds(text: str) -> list[int]:
    """'0-4' -> [0, 1, 2, 3, 4]; '0,3,7' -> [0, 3, 7]; ranges and lists mix ('0-2,9')."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if first < 0 or last < first:
                raise ValueError
            seeds += [s for s in range(first, last + 1) if s not in seeds]
    except ValueError:
        raise ConfigError(f"--seeds = {text!r}; allowed: seeds >= 0 as 'A-B' (A <= B) or 'A,B,C'") from None
    return seeds


def _run_seeds(
    config: Path,
    out: Path | None,
    seeds: list[int],
    generations: int | None,
    *,
    overwrite: bool,
    quiet: bool,
    run_keys: dict[str, Any] | None = None,
) -> None:
    """One run per seed, in OUT/seed-<seed>, one after the other; then OUT/report.html over all of them.

    Every config and folder is checked before the first run starts.
    """
    from neuroevo.config import build, load_config
    from neuroevo.runtime import RunDir
    from neuroevo.runtime.report import write_report

    keys = run_keys or {}
    configs = [load_config(config, {"run": {"seed": s, "generations": generations, **keys}}) for s in seeds]
    parent = out or Path("runs") / configs[0].run.name
    if RunDir(parent).is_run():
        raise ConfigError(f"--out {parent}: holds a single run; allowed: a new folder for --seeds")
    runs = [RunDir(parent / f"seed-{s}") for s in seeds]
    for run in runs:
        run.check_can_create(overwrite=overwrite)
    for cfg, run in zip(configs, runs, strict=True):
        built = build(cfg)
        executor = _executor(cfg.run, built)  # Ray, when --ray or run.executor says so
        run.create(cfg.to_toml(), overwrite=overwrite)
        _echo(f"seed {cfg.run.seed}: {run.path}")
        _start(cfg, built, run.path, resume=False, quiet=quiet, executor=executor)
    report = write_report(
        [parent], parent / "report.html", title=f"neuroevo run {parent.name}: seeds {seeds}"
    )
    _echo(f"report over {len(seeds)} seeds: {report}")


@app.command()
def report(
    runs: Annotated[list[Path], typer.Argument(help="run folders, or folders of runs (from --seeds)")],
    out: Annotated[Path, typer.Option(help="the HTML file to write")] = Path("report.html"),
) -> None:
    """One self-contained HTML report of runs, overlaid; a folder of seeds shows their mean and spread."""
    from neuroevo.runtime.report import write_report

    for path in runs:
        if not path.exists():
            raise ConfigError(f"run folder {path} does not exist")
    _echo(f"wrote {write_report(runs, out)}")


def _check_positive(option: str, value: float | None, least: float, strict: bool = False) -> None:
    if value is None:
        return
    if value != value or value < least or (strict and value == least):  # NaN compares unequal to itself
        raise ConfigError(f"{option} = {value}; allowed: {'>' if strict else '>='} {least}")


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="a run folder made by `neuroevo run`")],
    generations: Annotated[int | None, typer.Option(help="extend the run to this many generations")] = None,
    target_fitness: Annotated[
        float | None, typer.Option(help="stop once the best fitness reaches it")
    ] = None,
    time_budget: Annotated[float | None, typer.Option(help="total seconds, counting the time before")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
    ray: Annotated[str | None, typer.Option(help=RAY_HELP)] = None,
    workers: Annotated[int | None, typer.Option(help="Ray actors (override run.workers)")] = None,
    local: Annotated[bool, typer.Option(help="continue in this process (run.executor = local)")] = False,
) -> None:
    """Continue a run from its newest complete checkpoint (bit-identical to an uninterrupted run).

    A resume may change only the stop conditions, checkpointing and where it runs (see
    README, "Resume"); any other edit to RUN/config.toml is refused and nothing changes.
    """
    from neuroevo.config import apply_overrides, build, check_resume, read_toml, validate_config
    from neuroevo.runtime import RunDir

    _check_positive("--generations", generations, 1)
    _check_positive("--time-budget", time_budget, 0, strict=True)
    if target_fitness is not None and target_fitness != target_fitness:
        raise ConfigError("--target-fitness = nan; allowed: a number")
    run = RunDir(run_dir)
    run.require_run()
    overrides = {
        "run": {
            "generations": generations,
            "target_fitness": target_fitness,
            "time_budget_s": time_budget,
            **_ray_overrides(ray, workers, local),
        }
    }
    edited = validate_config(apply_overrides(read_toml(run.config), overrides))
    reference = validate_config(read_toml(run.reference_config)) if run.reference_config.is_file() else None
    if reference is not None:
        check_resume(reference, edited)
    finished = run.finished(edited.run.generations, edited.run.target_fitness, edited.run.time_budget_s)
    if finished:
        _echo(f"{run.path}: {finished}; nothing to do (extend it with --generations or --time-budget)")
        return
    built = build(edited)
    found = run.latest_checkpoint()
    if found is not None:  # one these objects cannot continue (another noise scheme) fails before any write
        built.strategy.load_state_dict(found[1]["strategy"])
        built.task.load_state_dict(found[1].get("task", {}))
    executor = _executor(edited.run, built)
    if reference is None or edited.to_toml() != reference.to_toml():
        run.write_config(edited.to_toml())
    _start(edited, built, run.path, resume=True, quiet=quiet, executor=executor)


@app.command(name="list")
def list_builtins(
    name: Annotated[str | None, typer.Argument(help="a registered name: show its config keys")] = None,
) -> None:
    """What is built in (and what plugins add); with NAME, that entry's keys: type, default, bounds."""
    if name is not None:
        _list_keys(name)
        return
    from neuroevo.nn import ACTIVATIONS, INITIALIZERS, NETWORKS
    from neuroevo.strategies import STRATEGIES
    from neuroevo.tasks import TASKS

    for title, registry in (("strategies", STRATEGIES), ("tasks", TASKS)):
        _echo(f"{title}:")
        for failure in registry.load_plugins():
            _echo(f"  error: {failure}")
        for entry, cls in registry.items():
            aliases = registry.aliases_of(entry)
            alias = f" (also {', '.join(aliases)})" if aliases else ""
            _echo(f"  {entry:<18}{_first_line(cls)}{alias}")
    _echo("network types:")
    for failure in NETWORKS.load_plugins():
        _echo(f"  error: {failure}")
    for entry, network in NETWORKS.items():
        kinds = ", ".join(sorted(network.runs))
        _echo(f"  {entry:<18}{network.description} [runs: {kinds}]")
    for title, registry in (("activations", ACTIVATIONS), ("initialisers", INITIALIZERS)):
        _echo(f"{title}:")
        for failure in registry.load_plugins():
            _echo(f"  error: {failure}")
        for entry, fn in registry.items():
            aliases = registry.aliases_of(entry)
            alias = f"  (also {', '.join(aliases)})" if aliases else ""
            _echo(f"  {entry:<16}{_first_line(fn)}{alias}")
    _echo("`neuroevo list NAME` shows the config keys of one entry.")


def _first_line(obj: Any) -> str:
    doc = (obj.__doc__ or "").strip().splitlines()
    return doc[0] if doc else ""


def _list_keys(name: str) -> None:
    """The config reference of one registered entry, from its pydantic Params model."""
    from rich.console import Console
    from rich.table import Table

    from neuroevo.config import describe_params, registered_entry

    kind, canonical, item, params = registered_entry(name)
    summary = item.description if kind == "network type" else _first_line(item)
    _echo(f"{kind} {canonical!r}: {summary}")
    if params is None:
        return
    table = Table("key", "type", "default", "bounds", "description", box=None, pad_edge=False)
    for row in describe_params(params):
        table.add_row(row.key, row.type, row.default, row.bounds, row.description)
    Console(width=160).print(table)


@app.command()
def best(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (or its best/ folder)")],
    export: Annotated[
        Path | None, typer.Option(help="module.pt (torch.export program) or weights.safetensors")
    ] = None,
) -> None:
    """Show the best network of a run, or export it as a module or safetensors weights."""
    from neuroevo.runtime.export import describe_best, export_best

    if export is None:
        _echo(describe_best(run_dir))
        return
    export_best(run_dir, export)
    _echo(f"wrote {export}")


@app.command(name="pbt-replay")
def pbt_replay(
    run_dir: Annotated[Path, typer.Argument(help="a finished PBT run folder")],
    seed: Annotated[int | None, typer.Option(help="the fresh model's seed (default: the run's + 1)")] = None,
) -> None:
    """Train a fresh model on the best member's hyperparameter schedule and report its validation."""
    from neuroevo.pbt_replay import describe, replay

    _echo(describe(replay(run_dir, seed=seed)))


@app.command()
def play(
    run_dir: Annotated[Path, typer.Argument(help="a run folder of a control or Gymnasium task")],
    episodes: Annotated[int, typer.Option(help="episodes to run")] = 5,
    gif: Annotated[Path | None, typer.Option(help="write the episodes as an animated GIF")] = None,
    env: Annotated[str | None, typer.Option(help="Gymnasium env id (default: the run's)")] = None,
    seed: Annotated[int, typer.Option(help="seed of the episodes' initial states")] = 0,
) -> None:
    """Run the best policy of a run, print its returns, optionally render a GIF."""
    import statistics

    from neuroevo.runtime.play import play as play_policy

    returns = play_policy(run_dir, episodes=episodes, gif=gif, env_id=env, seed=seed)
    for i, value in enumerate(returns):
        _echo(f"episode {i}: return {value:.2f}")
    spread = statistics.pstdev(returns) if len(returns) > 1 else 0.0
    _echo(f"mean return {statistics.fmean(returns):.2f} ± {spread:.2f} over {len(returns)} episodes")
    if gif is not None:
        _echo(f"wrote {gif}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: one-line errors, exit 2 for bad input, 1 for a failed fitness function."""
    try:
        app(args=argv, standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FitnessEvaluationError as exc:
        where = (
            f" (the checkpoint of generation {exc.last_checkpoint} is intact: `neuroevo resume` continues)"
            if exc.last_checkpoint is not None
            else " (no checkpoint was written yet)"
        )
        print(f"error: {exc}{where}", file=sys.stderr)
        return 1
    except Interrupted as exc:
        print(str(exc), file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # typer's own (vendored click) errors: usage errors carry exit_code 2 and a message
        kind = type(exc).__name__
        if kind == "NoArgsIsHelpError":  # bare `neuroevo` (or a group without its command): the help
            _echo(exc.ctx.get_help() if getattr(exc, "ctx", None) is not None else exc.format_message())
            return 0
        if kind == "Abort":
            print("error: aborted", file=sys.stderr)
            return 130
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            print(f"error: {exc.format_message()}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())


def console() -> None:
    """Console-script wrapper around ``main`` that sets the exit code."""
    sys.exit(main())
