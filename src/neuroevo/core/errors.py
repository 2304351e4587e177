"""Errors a user sees. Each carries one line that names what is wrong and what is allowed."""


class NeuroevoError(Exception):
    """Base class of every error neuroevo raises on purpose."""


class ConfigError(NeuroevoError, ValueError):
    """Bad input: a config key, value, argument or run directory. The CLI exits with code 2."""


class FitnessEvaluationError(NeuroevoError, RuntimeError):
    """A fitness function raised, or returned NaN under ``on_nan = "error"``; names the generation."""

    def __init__(self, message: str, generation: int | None = None):
        super().__init__(message)
        self.generation = generation
        #: the generation of the run's newest checkpoint when the error stopped it (None: none exists)
        self.last_checkpoint: int | None = None
