"""Safe writes and pickle-free state files.

``atomic_write`` writes to a temporary file in the same folder, fsyncs, renames over the
target and fsyncs the folder, so a reader sees the old file or the new one, never half.
``save_state``/``load_state`` store a nested state dict as safetensors (its tensors) +
JSON (everything else, with ``{"__tensor__": key}`` where a tensor was).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

TENSOR_REF = "__tensor__"


def _file_mode() -> int:
    """0666 less the process umask: what ``open()`` would give (mkstemp alone gives 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (tmp file, fsync, rename, fsync dir)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode())


def split_tensors(tree: Any, tensors: dict[str, torch.Tensor], prefix: str = "") -> Any:
    """Replace every tensor in ``tree`` by a reference, collecting it into ``tensors``."""
    if isinstance(tree, torch.Tensor):
        key = prefix or "value"
        tensors[key] = tree.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        return {TENSOR_REF: key}
    if isinstance(tree, dict):
        return {
            str(k): split_tensors(v, tensors, f"{prefix}.{k}" if prefix else str(k)) for k, v in tree.items()
        }
    if isinstance(tree, (list, tuple)):
        return [split_tensors(v, tensors, f"{prefix}.{i}") for i, v in enumerate(tree)]
    if isinstance(tree, float) and tree != tree:  # NaN is not JSON
        return {"__float__": "nan"}
    if isinstance(tree, float) and tree in (float("inf"), float("-inf")):
        return {"__float__": "inf" if tree > 0 else "-inf"}
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    raise TypeError(
        f"cannot store {type(tree).__name__} at {prefix!r}: state must be tensors and JSON values"
    )


def join_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of ``split_tensors``."""
    if isinstance(tree, dict):
        if set(tree) == {TENSOR_REF}:
            return tensors[tree[TENSOR_REF]]
        if set(tree) == {"__float__"}:
            return float(tree["__float__"])
        return {k: join_tensors(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [join_tensors(v, tensors) for v in tree]
    return tree


def encode_state(state: Any) -> tuple[bytes, dict[str, Any]]:
    """``state`` as (safetensors bytes, JSON tree referencing them)."""
    tensors: dict[str, torch.Tensor] = {}
    tree = split_tensors(state, tensors)
    return st_save(tensors), tree


def save_state(stem: str | Path, state: Any, extra: dict[str, Any] | None = None) -> None:
    """Write ``STEM.safetensors`` then ``STEM.json`` (with the tensor file's sha256), both atomically."""
    stem = Path(stem)
    blob, tree = encode_state(state)
    atomic_write(stem.with_suffix(".safetensors"), blob)
    meta = {"sha256": hashlib.sha256(blob).hexdigest(), "state": tree, **(extra or {})}
    atomic_write_text(stem.with_suffix(".json"), json.dumps(meta, indent=1))


def load_state(stem: str | Path) -> tuple[Any, dict[str, Any]]:
    """Read a state written by ``save_state``; raises ValueError if the pair does not match."""
    stem = Path(stem)
    meta = json.loads(stem.with_suffix(".json").read_text())
    blob = stem.with_suffix(".safetensors").read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta["sha256"]:
        raise ValueError(f"{stem}: tensor file does not match its JSON (interrupted write?)")
    return join_tensors(meta.pop("state"), st_load(blob)), meta
