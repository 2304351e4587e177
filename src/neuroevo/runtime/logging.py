"""What a run tells besides its checkpoints: ``run.log``, TensorBoard scalars, the metrics, a summary.

- ``run.log`` in the run folder records what the terminal showed: warnings, resume events,
  worker failures and the stop reason. ``evolve`` attaches a ``logging.FileHandler`` to the
  ``neuroevo`` logger (and to Python's warnings) for the duration of the run; anything under
  ``neuroevo.*`` that logs at INFO or above lands there.
- ``[run] tensorboard = true`` writes the scalars of every ``metrics.jsonl`` line as TensorBoard
  events (``RUN/tensorboard/``) through ``torch.utils.tensorboard``; it needs the optional
  extra ``neuroevo[tensorboard]``.
- ``read_metrics(RUN)`` reads ``metrics.jsonl`` as a list of dicts, or a pandas DataFrame.
- ``summary_table`` is the table ``neuroevo run`` prints at the end.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

from neuroevo.core.errors import ConfigError

RUN_LOG = "run.log"
LOGGER = logging.getLogger("neuroevo")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def open_run_log(folder: str | Path) -> logging.Handler:
    """Send what ``neuroevo.*`` loggers and ``warnings.warn`` say to ``folder/run.log``; the handler.

    Warnings are still shown as before (``warnings.showwarning`` is wrapped, not replaced).
    """
    handler = logging.FileHandler(Path(folder) / RUN_LOG, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.setLevel(logging.INFO)
    if LOGGER.level == logging.NOTSET or LOGGER.level > logging.INFO:
        LOGGER.setLevel(logging.INFO)
    LOGGER.addHandler(handler)
    shown = warnings.showwarning

    def show_and_log(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        shown(message, category, filename, lineno, file, line)
        text = warnings.formatwarning(message, category, filename, lineno, line).strip()
        handler.handle(
            logging.makeLogRecord({"name": "py.warnings", "levelno": 30, "levelname": "WARNING", "msg": text})
        )

    warnings.showwarning = show_and_log
    handler._neuroevo_shown = shown  # type: ignore[attr-defined]
    handler._neuroevo_wrapper = show_and_log  # type: ignore[attr-defined]
    return handler


def close_run_log(handler: logging.Handler | None) -> None:
    if handler is None:
        return
    LOGGER.removeHandler(handler)
    if warnings.showwarning is getattr(handler, "_neuroevo_wrapper", None):
        warnings.showwarning = handler._neuroevo_shown  # type: ignore[attr-defined]
    handler.close()


def require_tensorboard() -> None:
    """A one-line ConfigError naming the extra when ``torch.utils.tensorboard`` cannot be imported."""
    try:
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except ImportError:
        raise ConfigError(
            "run.tensorboard = true: the tensorboard package is not installed; "
            "allowed: pip install 'neuroevo[tensorboard]', or run.tensorboard = false"
        ) from None


class TensorBoardLog:
    """The numeric fields of each metrics line as TensorBoard scalars, step = generation.

    On a resume from generation ``start`` the events of generations >= ``start`` that an
    interrupted run wrote are purged (``purge_step``), so the scalars match ``metrics.jsonl``.
    """

    def __init__(self, folder: str | Path, start: int = 0):
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(Path(folder) / "tensorboard"), purge_step=start or None)

    def add(self, line: dict[str, Any]) -> None:
        step = int(line["generation"])
        for key, value in line.items():
            if key != "generation" and isinstance(value, int | float) and not isinstance(value, bool):
                if math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def read_metrics(run: str | Path, *, as_frame: bool = False) -> Any:
    """The lines of ``RUN/metrics.jsonl`` as a list of dicts, or as a pandas DataFrame with ``as_frame``.

    ``as_frame=True`` needs pandas (``pip install pandas``): a one-line ConfigError otherwise.
    """
    from neuroevo.runtime.rundir import RunDir

    path = Path(run)
    rundir = RunDir(path.parent if path.name == "metrics.jsonl" else path)
    if not rundir.metrics.is_file():
        raise ConfigError(f"{path}: no metrics.jsonl; allowed: a run folder")
    lines = rundir.read_metrics()
    if not as_frame:
        return lines
    try:
        import pandas
    except ImportError:
        raise ConfigError("read_metrics(as_frame=True) needs pandas; allowed: pip install pandas") from None
    return pandas.DataFrame(lines)


def summary_table(result: Any) -> Any:
    """A rich table of a finished run: best fitness, validation, counts, wall time, stop reason.

    (The CLI prints the paths after it, unwrapped, so they can be copied.)
    """
    from rich.table import Table

    table = Table(title="neuroevo run", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    best = "-" if result.best is None else f"{result.best.fitness:.6g}"
    table.add_row("best fitness", best)
    for key, value in result.validation.items():
        table.add_row(f"validation {key}", f"{value:.6g}")
    table.add_row("generations", str(result.generations))
    table.add_row("evaluations", str(result.evaluations))
    table.add_row("env steps", str(result.steps))
    table.add_row("wall time", f"{result.elapsed:.1f} s")
    table.add_row("stop reason", result.stop_reason)
    return table


__all__ = [
    "RUN_LOG",
    "TensorBoardLog",
    "close_run_log",
    "open_run_log",
    "read_metrics",
    "require_tensorboard",
    "summary_table",
]
