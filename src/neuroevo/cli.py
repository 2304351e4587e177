"""The ``neuroevo`` command: run, resume, list, best.

Bad input (config, arguments, run folders) prints one line ``error: ...`` and exits 2
before anything is written. A fitness function that raises prints one line naming the
generation and exits 1; the run's last checkpoint is intact and ``neuroevo resume``
continues from it.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Annotated, Any

import typer

from neuroevo.core.errors import ConfigError, FitnessEvaluationError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Evolve populations of neural networks without backpropagation.",
)


def _echo(message: str) -> None:
    typer.echo(message)


def _start(config: Any, built: Any, run_path: Path, *, resume: bool, quiet: bool) -> None:
    from neuroevo.runtime import RunDir, evolve

    run = RunDir(run_path)
    settings = config.run
    result = evolve(
        built.strategy,
        built.phenotype,
        built.task,
        generations=settings.generations,
        target_fitness=settings.target_fitness,
        time_budget=settings.time_budget_s,
        run_dir=run,
        checkpoint_every=settings.checkpoint_every,
        keep_checkpoints=settings.keep_checkpoints,
        validate_every=settings.validate_every,
        resume=resume,
        progress=settings.progress and not quiet,
    )
    best = "-" if result.best is None else f"{result.best.fitness:.6g}"
    extra = "  ".join(f"{k} {v:.4g}" for k, v in result.validation.items())
    _echo(
        f"stopped ({result.stop_reason}) after {result.generations} generations, "
        f"{result.evaluations} evaluations; best fitness {best}  {extra}".rstrip()
    )
    _echo(f"run folder: {run.path}  (metrics.jsonl, checkpoints/, best/, report/)")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="TOML config file")],
    out: Annotated[Path | None, typer.Option(help="run folder (default runs/<run.name>)")] = None,
    seed: Annotated[int | None, typer.Option(help="override run.seed")] = None,
    generations: Annotated[int | None, typer.Option(help="override run.generations")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing run in --out")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Start a run from a config: metrics, checkpoints, best network and plots go to the run folder."""
    from neuroevo.config import build, load_config
    from neuroevo.runtime import RunDir

    if generations is not None and generations < 1:
        raise ConfigError(f"--generations = {generations}; allowed: >= 1")
    if seed is not None and seed < 0:
        raise ConfigError(f"--seed = {seed}; allowed: >= 0")
    cfg = load_config(config, {"run": {"seed": seed, "generations": generations}})
    run_path = out or Path("runs") / cfg.run.name
    built = build(cfg)  # everything is checked before the run folder is touched
    RunDir(run_path).create(cfg.to_toml(), overwrite=overwrite)
    _start(cfg, built, run_path, resume=False, quiet=quiet)


@app.command()
def resume(
    run_dir: Annotated[Path, typer.Argument(help="a run folder made by `neuroevo run`")],
    generations: Annotated[int | None, typer.Option(help="extend the run to this many generations")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Continue a run from its newest complete checkpoint (bit-identical to an uninterrupted run)."""
    from neuroevo.config import build, validate_config
    from neuroevo.runtime import RunDir

    run = RunDir(run_dir)
    run.require_run()
    data = tomllib.loads(run.config.read_text())
    if generations is not None:
        if generations < 1:
            raise ConfigError(f"--generations = {generations}; allowed: >= 1")
        data["run"]["generations"] = generations
    cfg = validate_config(data)
    built = build(cfg)
    if generations is not None:
        from neuroevo.runtime.storage import atomic_write_text

        atomic_write_text(run.config, cfg.to_toml())
    _start(cfg, built, run.path, resume=True, quiet=quiet)


@app.command(name="list")
def list_builtins() -> None:
    """What is built in: strategies, tasks, network types, activations, initialisers."""
    from neuroevo.nn import ACTIVATIONS, INITIALIZERS, NETWORKS
    from neuroevo.strategies import STRATEGIES
    from neuroevo.tasks import TASKS

    def first_line(obj: Any) -> str:
        doc = (obj.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""

    for title, registry in (("strategies", STRATEGIES), ("tasks", TASKS)):
        _echo(f"{title}:")
        for name, cls in registry.items():
            aliases = registry.aliases_of(name)
            alias = f" (also {', '.join(aliases)})" if aliases else ""
            _echo(f"  {name:<18}{first_line(cls)}{alias}")
    _echo("network types:")
    for name in NETWORKS.names():
        _echo(f"  {name}")
    for title, registry in (("activations", ACTIVATIONS), ("initialisers", INITIALIZERS)):
        _echo(f"{title}:")
        for name, fn in registry.items():
            aliases = registry.aliases_of(name)
            alias = f"  (also {', '.join(aliases)})" if aliases else ""
            _echo(f"  {name:<16}{first_line(fn)}{alias}")


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
        print(
            f"error: {exc} (the last checkpoint is intact: `neuroevo resume RUN_DIR` continues)",
            file=sys.stderr,
        )
        return 1
    except Exception as exc:
        # typer's own (vendored click) errors: usage errors carry exit_code 2 and a message
        kind = type(exc).__name__
        if kind == "NoArgsIsHelpError":
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
