"""Runtime: the evolve loop, executors, run folders and checkpoints, logs and reports."""

from neuroevo.runtime.evolve import EvolutionResult, evolve
from neuroevo.runtime.executor import Executor, LocalExecutor
from neuroevo.runtime.logging import read_metrics
from neuroevo.runtime.rundir import TIMING_FIELDS, RunDir, load_best

__all__ = [
    "TIMING_FIELDS",
    "EvolutionResult",
    "Executor",
    "LocalExecutor",
    "RunDir",
    "evolve",
    "load_best",
    "read_metrics",
]
