"""neuroevo: evolve populations of neural networks without backpropagation.

The layers (imports flow top to bottom only): ``cli``/``config`` -> ``runtime`` ->
``tasks`` -> ``strategies`` -> ``nn`` -> ``core``. See ``docs/design.md``.
"""

from neuroevo.core.errors import ConfigError, FitnessEvaluationError, NeuroevoError

__version__ = "0.1.0"

__all__ = ["Best", "ConfigError", "Fitness", "FitnessEvaluationError", "NeuroevoError", "__version__"]


def __getattr__(name: str):  # lazy top-level conveniences, so `import neuroevo` stays light
    if name in {"Best", "Fitness"}:
        import neuroevo.core.types as _types

        return getattr(_types, name)
    if name in {"evolve", "EvolutionResult"}:
        from neuroevo.runtime import evolve as _evolve_module

        return getattr(_evolve_module, name)
    if name in {"PopulationMLP", "ModuleAdapter"}:
        import neuroevo.nn as _nn

        return getattr(_nn, name)
    if name in {"GA", "OpenES"}:
        import neuroevo.strategies as _strategies

        return getattr(_strategies, name)
    if name in {"FunctionTask", "SupervisedTask"}:
        import neuroevo.tasks as _tasks

        return getattr(_tasks, name)
    raise AttributeError(f"module 'neuroevo' has no attribute {name!r}")
