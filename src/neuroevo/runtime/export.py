"""Load the best network of a run without the run, and export it.

``best/network.json`` holds the phenotype spec (rebuilt by the network type's registry
entry, ``neuroevo.nn.phenotype_from_spec``), the input and output sizes, the fitness,
generation and validation metrics, and the task's ``io`` steps (``neuroevo.nn.io``);
``best/params.safetensors`` the flat params and named per-layer tensors. Phenotypes whose
members are not flat vectors (NEAT) add a ``member`` entry (the ``MemberSpecs`` hook).

The export contract: every export takes what the environment or data set gives (raw
observations, raw features) and returns what it expects (an action, class logits, a
prediction), because the task's preprocessing and output mapping are part of it:

- ``.pt2``: a ``torch.export`` program of ``x[B, in] -> y[B, ...]``, batch size dynamic;
- ``.safetensors``: the same module's ``state_dict`` (io buffers included), with the
  network spec and the io spec as JSON metadata;
- ``load_best_module(run)``: that module in Python.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save

from neuroevo.core.contracts import MemberSpecs
from neuroevo.core.errors import ConfigError
from neuroevo.nn import phenotype_from_spec
from neuroevo.nn.io import with_io
from neuroevo.runtime.rundir import load_best
from neuroevo.runtime.storage import atomic_write

EXPORT_SUFFIXES = (".pt2", ".safetensors")


def load_best_module(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best network of a run folder (or its best/ folder) as a plain module, and its JSON.

    The module includes the task's preprocessing and output mapping (see the module doc).
    A ``.pt2`` export loads back with ``torch.export.load(path).module()``.
    """
    spec, tensors = load_best(path)
    phenotype = phenotype_from_spec(spec["network"])
    genome_file = _best_folder(path) / "genome.json"
    if "member" in spec and isinstance(phenotype, MemberSpecs):
        member = phenotype.member_from_spec(spec["member"])
    elif genome_file.is_file():  # a seed chain: rebuild the weights from it alone
        from neuroevo.strategies import reconstruct

        member = reconstruct(json.loads(genome_file.read_text()))
    elif "params" in tensors:
        member = tensors["params"]
    else:
        raise ConfigError(f"{path}: best/params.safetensors has no 'params' tensor")
    module = with_io(phenotype.to_module(member), spec.get("io"))
    module.eval()
    return module, spec


def _best_folder(path: str | Path) -> Path:
    path = Path(path)
    return path / "best" if (path / "best").is_dir() else path


def describe_best(path: str | Path) -> str:
    """What ``neuroevo best RUN`` prints: fitness, validation, the io contract and the module."""
    module, spec = load_best_module(path)
    lines = [f"best fitness {spec['fitness']:.6g} (generation {spec['generation']})"]
    for key, value in (spec.get("validation") or {}).items():
        lines.append(f"  {key}: {value:.6g}")
    describe = (spec.get("io") or {}).get("describe") or {}
    for side in ("input", "output"):
        if side in describe:
            lines.append(f"  {side}: {describe[side]}")
    lines.append(str(module))
    return "\n".join(lines)


def export_best(path: str | Path, target: str | Path) -> None:
    """Write the best network as ``.safetensors`` weights or a ``.pt2`` torch.export program."""
    target = Path(target)
    suffix = target.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        hint = " (torch.export.load warns on .pt: programs are .pt2)" if suffix == ".pt" else ""
        raise ConfigError(
            f"--export {target}: unknown file type {suffix!r}{hint}; allowed: {', '.join(EXPORT_SUFFIXES)}"
        )
    if target.exists() and target.is_dir():
        raise ConfigError(f"--export {target}: is a folder; allowed: a file path")
    spec, tensors = load_best(path)
    if suffix == ".safetensors":
        try:
            module, spec = load_best_module(path)
            weights = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        except ConfigError:  # a network that cannot be rebuilt still has its weights
            weights = {k: v for k, v in tensors.items() if k != "params"} or dict(tensors)
        metadata = {"neuroevo": json.dumps(spec["network"]), "io": json.dumps(spec.get("io") or {})}
        atomic_write(target, save(weights, metadata=metadata))
        return
    module, spec = load_best_module(path)
    in_features = int(spec.get("in_features") or 0)
    if in_features < 1:
        raise ConfigError(
            f"--export {target}: the network's input size is not recorded (in_features = 0); "
            "allowed: --export weights.safetensors, or give ModuleAdapter its in_features"
        )
    example = torch.zeros(2, in_features)
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    atomic_write(target, buffer.getvalue())
