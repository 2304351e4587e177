"""Ask/tell strategies. All maximise. ``STRATEGIES`` maps config names to classes.

A strategy class has ``name``, a pydantic ``Params`` model (its config keys, extra keys
forbidden) and ``from_params(params, phenotype=, seed=)``; register new ones with
``register_strategy``.
"""

from neuroevo.core.registry import Registry
from neuroevo.strategies.base import Strategy, StrategyParams
from neuroevo.strategies.cmaes import CMAES
from neuroevo.strategies.deep_ga import SeedGA, reconstruct
from neuroevo.strategies.eggroll import EGGROLL
from neuroevo.strategies.ga import GA
from neuroevo.strategies.neat import NEAT, NEATParams
from neuroevo.strategies.novelty import NOVELTY_PRESETS, Novelty, novelty_preset
from neuroevo.strategies.openes import OpenES
from neuroevo.strategies.optim import Optimizer, scheduled_lr
from neuroevo.strategies.pgpe import PGPE
from neuroevo.strategies.sep_cmaes import SepCMAES
from neuroevo.strategies.snes import SNES


def _plugin_strategy(name: str, obj: object) -> type[Strategy]:
    if not (isinstance(obj, type) and issubclass(obj, Strategy)):
        raise TypeError(f"expected a Strategy subclass, got {obj!r}")
    return obj


#: config name -> strategy class; plugins: entry-point group ``neuroevo.strategies``
STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "neuroevo.strategies", _plugin_strategy)


def register_strategy(cls: type[Strategy], *, aliases: tuple[str, ...] = ()) -> type[Strategy]:
    """Make ``cls`` available under ``cls.name`` in configs and ``neuroevo list``."""
    return STRATEGIES.register(cls.name, cls, aliases=aliases)


register_strategy(GA, aliases=("deep_ga",))
register_strategy(NEAT)
register_strategy(OpenES, aliases=("openai_es", "es"))
register_strategy(SeedGA, aliases=("deep_ga_seeds",))
register_strategy(SNES)
register_strategy(PGPE)
register_strategy(CMAES, aliases=("cma_es",))
register_strategy(SepCMAES, aliases=("sep_cma_es",))
register_strategy(EGGROLL)
# novelty search wraps any flat-vector strategy above; the presets fix a base and their paper's defaults
register_strategy(Novelty)
NoveltyGA, NoveltyRewardGA, NoveltyES, NoveltyRewardES = (
    register_strategy(novelty_preset(preset, STRATEGIES)) for preset in NOVELTY_PRESETS
)

__all__ = [
    "NEAT",
    "NEATParams",
    "CMAES",
    "EGGROLL",
    "PGPE",
    "SNES",
    "SepCMAES",
    "GA",
    "Novelty",
    "NoveltyES",
    "NoveltyGA",
    "NoveltyRewardES",
    "NoveltyRewardGA",
    "SeedGA",
    "reconstruct",
    "STRATEGIES",
    "OpenES",
    "Optimizer",
    "Strategy",
    "StrategyParams",
    "register_strategy",
    "scheduled_lr",
]
