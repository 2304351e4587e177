"""Load the best network of a run without the run, and export it.

``best/network.json`` holds the phenotype spec (``neuroevo.nn.phenotype_from_spec``), the
fitness, generation and validation metrics; ``best/params.safetensors`` the flat params and
named per-layer tensors. Phenotypes whose members are not flat vectors (NEAT) add a
``member`` entry that ``phenotype.member_from_spec`` turns back into a member.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from neuroevo.core.errors import ConfigError
from neuroevo.nn import phenotype_from_spec
from neuroevo.runtime.rundir import load_best
from neuroevo.runtime.storage import atomic_write


def load_best_module(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The best network of a run folder (or its best/ folder) as a plain module, and its JSON.

    A ``.pt`` export loads back with ``torch.export.load(path).module()``.
    """
    spec, tensors = load_best(path)
    phenotype = phenotype_from_spec(spec["network"])
    genome_file = _best_folder(path) / "genome.json"
    if "member" in spec and hasattr(phenotype, "member_from_spec"):
        member = phenotype.member_from_spec(spec["member"])
    elif genome_file.is_file():  # a seed chain: rebuild the weights from it alone
        from neuroevo.strategies import reconstruct

        member = reconstruct(json.loads(genome_file.read_text()))
    elif "params" in tensors:
        member = tensors["params"]
    else:
        raise ConfigError(f"{path}: best/params.safetensors has no 'params' tensor")
    module = phenotype.to_module(member)
    module.eval()
    return module, spec


def _best_folder(path: str | Path) -> Path:
    path = Path(path)
    return path / "best" if (path / "best").is_dir() else path


def describe_best(path: str | Path) -> str:
    module, spec = load_best_module(path)
    lines = [f"best fitness {spec['fitness']:.6g} (generation {spec['generation']})"]
    for key, value in (spec.get("validation") or {}).items():
        lines.append(f"  {key}: {value:.6g}")
    lines.append(str(module))
    return "\n".join(lines)


def export_best(path: str | Path, target: str | Path) -> None:
    """Write the best network as ``.safetensors`` weights or a ``.pt``/``.pt2`` torch.export program."""
    target = Path(target)
    module, spec = load_best_module(path)
    suffix = target.suffix.lower()
    if suffix == ".safetensors":
        tensors = {k: v.detach().contiguous() for k, v in module.state_dict().items()}
        save_file(tensors, str(target), metadata={"neuroevo": json.dumps(spec["network"])})
        return
    if suffix in (".pt", ".pt2"):
        in_features = _in_features(spec["network"])
        example = torch.zeros(2, in_features)
        batch = torch.export.Dim("batch", min=1)
        program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        atomic_write(target, buffer.getvalue())
        return
    raise ConfigError(f"--export {target}: unknown file type {suffix!r}; allowed: .pt, .pt2, .safetensors")


def _in_features(network: dict[str, Any]) -> int:
    if "layer_sizes" in network:
        return int(network["layer_sizes"][0])
    for key in ("in_features", "num_inputs", "inputs"):
        if key in network:
            return int(network[key])
    raise ConfigError("cannot tell the network's input size from best/network.json")
