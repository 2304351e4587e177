"""The ``config.toml`` of a run started from Python, when its objects came from registered names.

``evolve(..., run_dir=...)`` writes it so that ``neuroevo resume``, ``best`` and ``report`` work on
the folder as on a CLI run. It is written only when the config rebuilds the very objects given:
the task, network and strategy are built again from the keys, the way the CLI builds them
(``neuroevo.config.build``: one ``run.seed`` for task and strategy), and compared with the
originals, state and attributes bit for bit. Anything a config cannot say (a custom centre or
``init``, a task seeded differently from the strategy, a Python callable, a float64 strategy)
makes them differ, and then no config is written; ``run.log`` says why and ``neuroevo resume``
names what is missing.
"""

from __future__ import annotations

from typing import Any

import torch

from neuroevo.nn.networks import NETWORKS, NetworkEntry
from neuroevo.runtime.executor import LocalExecutor
from neuroevo.strategies import STRATEGIES
from neuroevo.tasks import TASKS


def describe_run(
    strategy: Any, phenotype: Any, task: Any, run_keys: dict[str, Any]
) -> tuple[dict | None, str]:
    """The config tables for ``(strategy, phenotype, task)`` plus ``run_keys``, or None and why not."""
    seed = int(getattr(strategy, "seed", 0))
    device = str(getattr(strategy, "device", "cpu"))
    try:
        task_name, task_keys = _registered(task, TASKS, "task")
        strategy_name, strategy_keys = _registered(strategy, STRATEGIES, "strategy")
        network_type, entry, network_keys = _network(phenotype)
        if getattr(task, "seed", seed) != seed:
            return None, f"the task's seed {task.seed} differs from the strategy's {seed} (a config has one)"
        rebuilt_task = type(task)(**task_keys, seed=seed, device=device)
        rebuilt_net = entry.build(
            entry.Params.model_validate(network_keys),
            rebuilt_task.in_features,
            rebuilt_task.out_features,
            rebuilt_task.default_output_activation,
            dimension=getattr(rebuilt_task, "dimension", 0),
            device=device,
        )
        rebuilt = type(strategy).from_params(strategy.params, phenotype=rebuilt_net, seed=seed, device=device)
    except _NotDescribable as why:
        return None, str(why)
    except Exception as exc:  # a constructor that needs what a config cannot give
        return None, f"rebuilding from registered names failed ({type(exc).__name__}: {exc})"
    for what, original, copy in (("task", task, rebuilt_task), ("network", phenotype, rebuilt_net)):
        if not _same(_attributes(original), _attributes(copy)):
            return None, f"the {what} differs from one built from its config keys"
    if not _same(strategy.state_dict(), rebuilt.state_dict()) or not _same(
        _attributes(strategy), _attributes(rebuilt)
    ):
        return None, "the strategy differs from one built from its config keys (a custom centre or init?)"
    run = {**run_keys, "seed": seed, "device": device}
    return {
        "run": _drop_none(run),
        "task": {"name": task_name, **_drop_none(task_keys)},
        "network": {"type": network_type, **_drop_none(network_keys)},
        "strategy": {"name": strategy_name, **_drop_none(strategy_keys)},
    }, ""


def run_keys_of(executor: Any, **keys: Any) -> dict[str, Any]:
    """``[run]`` keys from ``evolve``'s arguments and its executor (only the local executor's budget)."""
    if isinstance(executor, LocalExecutor) and executor.max_memory_gb:
        keys["max_memory_gb"] = float(executor.max_memory_gb)
    if keys.get("time_budget_s") is not None:
        keys["time_budget_s"] = float(keys["time_budget_s"])
    return keys


class _NotDescribable(Exception):
    """An object that has no registered name or no config keys."""


def _registered(obj: Any, registry: Any, section: str) -> tuple[str, dict[str, Any]]:
    name = getattr(type(obj), "name", "")
    if not name or name not in registry or registry.get(name) is not type(obj):
        raise _NotDescribable(f"the {section} {type(obj).__name__} is not a registered {section}")
    params = getattr(obj, "params", None)
    if params is None:
        raise _NotDescribable(f"the {section} {name!r} keeps no params")
    return registry.canonical(name), params.model_dump(mode="json")


def _network(phenotype: Any) -> tuple[str, NetworkEntry, dict[str, Any]]:
    for name, entry in NETWORKS.items():
        keys = entry.config_of(phenotype) if entry.config_of is not None else None
        if keys is not None:
            return name, entry, keys
    name = type(phenotype).__name__
    raise _NotDescribable(f"the network {name} has no config keys (NetworkEntry.config_of)")


_PLAIN = (int, float, str, bool, type(None), list, tuple, dict, torch.Tensor, torch.dtype, torch.device)


def _attributes(obj: Any) -> dict[str, Any]:
    """The plain values and tensors an object holds (what two equal objects must share)."""
    return {k: v for k, v in vars(obj).items() if isinstance(v, _PLAIN) and not k.startswith("__")}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(a.cpu(), b.cpu()))
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:
        return True  # both NaN
    return type(a) is type(b) and a == b


def _drop_none(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tree.items() if v is not None}
