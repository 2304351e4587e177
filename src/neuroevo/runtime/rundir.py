"""A run on disk: ``config.toml``, ``metrics.jsonl``, ``checkpoints/``, ``best/``, ``report/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from neuroevo.core import random as nrandom
from neuroevo.core.contracts import MemberSpecs, NamedTensors
from neuroevo.core.errors import ConfigError
from neuroevo.runtime.storage import atomic_write, atomic_write_text, load_state, save_state

CKPT_RE = re.compile(r"^ckpt-(\d{6,})\.json$")
# fields of a metrics line that measure wall-clock time (the rest are deterministic)
TIMING_FIELDS = ("seconds", "elapsed", "evals_per_s", "steps_per_s")


class RunDir:
    """Paths and safe file operations of one run folder."""

    def __init__(self, path: str | Path, *, has_config: bool = False):
        """``has_config``: the caller (the CLI) wrote ``config.toml``; a Python run describes itself."""
        self.path = Path(path)
        self.config = self.path / "config.toml"
        #: the config the checkpoints were made with (a user may edit config.toml before a resume)
        self.reference_config = self.path / "checkpoints" / "config.toml"
        self.metrics = self.path / "metrics.jsonl"
        self.checkpoints = self.path / "checkpoints"
        self.best = self.path / "best"
        self.report = self.path / "report"
        #: True once the CLI wrote ``config.toml``; otherwise ``evolve`` describes a Python run itself
        self.config_written = has_config

    # -- creation and checks ------------------------------------------------------------------
    def create(self, config_text: str, *, overwrite: bool = False) -> None:
        """Make the folders and write the resolved config; refuses to reuse a run unless ``overwrite``."""
        self.check_can_create(overwrite=overwrite)
        if overwrite and self.is_run():
            self.clear()
        self._make_folders()
        self.write_config(config_text)
        self.metrics.touch()

    def check_can_create(self, *, overwrite: bool = False) -> None:
        """One-line ConfigErrors, before any work, for a folder that holds a run or cannot be written."""
        if self.is_run() and not overwrite:
            raise ConfigError(
                f"--out {self.path}: a run already exists there; allowed: a new folder, "
                f"`neuroevo resume {self.path}`, or --overwrite"
            )
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path}: exists and is not a folder")
        existing = self.path
        while not existing.exists():
            existing = existing.parent
        try:  # a real probe: permission bits say nothing for root or for a read-only mount
            fd, probe = tempfile.mkstemp(prefix=".neuroevo-probe-", dir=existing)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(f"--out {self.path}: cannot write in {existing} ({exc.strerror})") from None

    def write_config(self, config_text: str) -> None:
        """The resolved config, as ``config.toml`` and as the reference a resume compares edits with."""
        atomic_write_text(self.config, config_text)
        atomic_write_text(self.reference_config, config_text)
        self.config_written = True

    def forget_config(self) -> None:
        """Remove a ``config.toml`` left by an earlier run (it would describe another run)."""
        self.config.unlink(missing_ok=True)
        self.reference_config.unlink(missing_ok=True)

    def finished(self, generations: int | None, target: float | None, budget: float | None) -> str:
        """Why the newest checkpoint already meets a stop condition ('' when it does not)."""
        found = self.latest_checkpoint()
        if found is None:
            return ""
        generation, state = found
        best = state["strategy"].get("best")
        if generations is not None and generation >= generations:
            return f"already at generation {generation} of {generations} (run.generations)"
        if target is not None and best is not None and float(best["fitness"]) >= target:
            return (
                f"best fitness {float(best['fitness']):.6g} already reached {target:g} (run.target_fitness)"
            )
        if budget is not None and float(state["runtime"]["elapsed"]) >= budget:
            return f"already ran {float(state['runtime']['elapsed']):.1f} s of {budget:g} (run.time_budget_s)"
        return ""

    def prepare(self, *, overwrite: bool = False) -> None:
        """Folders for a run started from Python; refuses a folder with checkpoints unless ``overwrite``.

        ``create`` (the CLI) has written ``config.toml`` just before; a Python run keeps one
        that is there only when it starts a fresh folder.
        """
        if self.checkpoint_generations():
            if not overwrite:
                raise ConfigError(
                    f"{self.path} already holds checkpoints; allowed: resume=True, overwrite=True "
                    "or a new folder"
                )
            self.clear(keep_config=True)
        self._make_folders()
        if self.metrics.exists() and self.metrics.stat().st_size:
            self.truncate_metrics(0)
        self.truncate_records({})  # a run killed before its first checkpoint left some: regenerated
        self.metrics.touch()

    def clear(self, *, keep_config: bool = False) -> None:
        """Remove what a previous run wrote here (metrics, checkpoints, best/, report/), so a new run
        starts from an empty folder; other files of the user's are left alone."""
        self.metrics.unlink(missing_ok=True)
        for name in ("run.log", "pbt.jsonl"):
            (self.path / name).unlink(missing_ok=True)
        if not keep_config:
            self.config.unlink(missing_ok=True)
        for folder in (self.checkpoints, self.best, self.report, self.path / "tensorboard"):
            if folder.is_dir():
                shutil.rmtree(folder)

    def _make_folders(self) -> None:
        for folder in (self.path, self.checkpoints, self.best, self.report):
            folder.mkdir(parents=True, exist_ok=True)

    def clean_temporary_files(self) -> list[Path]:
        """Delete temporary files a kill left behind in ``best/`` and ``checkpoints/``; returns them."""
        stale = [
            item
            for folder in (self.best, self.checkpoints, self.path)
            if folder.is_dir()
            for item in folder.glob(".*.tmp")
            if item.is_file()
        ]
        for item in stale:
            item.unlink(missing_ok=True)
        return stale

    def is_run(self) -> bool:
        return self.config.is_file() and self.checkpoints.is_dir()

    def require_run(self) -> None:
        """A one-line ConfigError when the folder does not exist or is not a neuroevo run."""
        if not self.path.exists():
            raise ConfigError(f"run folder {self.path} does not exist")
        if not self.is_run() and self.checkpoint_generations() and not self.config.is_file():
            raise ConfigError(
                f"{self.path} was started from Python with objects that have no config (no config.toml); "
                f"allowed: evolve(..., run_dir={str(self.path)!r}, resume=True) from Python"
            )
        if not self.is_run():
            raise ConfigError(
                f"{self.path} is not a neuroevo run (no config.toml and checkpoints/); "
                f"allowed: a folder made by `neuroevo run`"
            )

    # -- metrics ------------------------------------------------------------------------------
    def append_metrics(self, line: dict[str, Any]) -> None:
        with self.metrics.open("a") as handle:
            handle.write(json.dumps(line) + "\n")
            handle.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        out = []
        for raw in self.metrics.read_text().splitlines():
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                break  # a torn last line from a kill: everything after it is regenerated
        return out

    def truncate_metrics(self, generation: int) -> list[dict[str, Any]]:
        """Keep lines of generations < ``generation`` (those a checkpoint covers); returns them."""
        kept = [m for m in self.read_metrics() if m.get("generation", -1) < generation]
        atomic_write_text(self.metrics, "".join(json.dumps(m) + "\n" for m in kept))
        return kept

    # -- records ------------------------------------------------------------------------------
    def records_files(self) -> list[Path]:
        """Records files (``WritesRecords``): the ``*.jsonl`` in the run folder (but metrics.jsonl)
        and in ``report/``."""
        found = [p for p in self.path.glob("*.jsonl") if p.name != self.metrics.name]
        found += list(self.report.glob("*.jsonl")) if self.report.is_dir() else []
        return sorted(p for p in found if p.is_file())

    def sync_records(self, path: Path) -> int:
        """fsync a records file (durable before the checkpoint that counts it); returns its size."""
        with path.open("ab") as handle:
            os.fsync(handle.fileno())
            return handle.tell()

    def truncate_records(self, sizes: dict[str, int]) -> None:
        """Cut every records file back to its size at a checkpoint (``sizes``: path relative to the
        run folder -> bytes); one the checkpoint does not know is removed. As ``truncate_metrics``:
        what a kill left after the checkpoint is regenerated by the resumed run, byte for byte."""
        for path in self.records_files():
            size = sizes.get(path.relative_to(self.path).as_posix())
            if size is None:
                path.unlink()
            elif path.stat().st_size > size:
                with path.open("r+b") as handle:
                    handle.truncate(size)
                    os.fsync(handle.fileno())

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint_stem(self, generation: int) -> Path:
        return self.checkpoints / f"ckpt-{generation:06d}"

    def write_checkpoint(self, generation: int, state: dict[str, Any], keep: int = 3) -> None:
        """Atomically write the checkpoint for ``generation`` and drop all but the newest ``keep``."""
        with self.metrics.open("a") as handle:  # metrics up to here are durable before the checkpoint is
            os.fsync(handle.fileno())
        strategy = state.get("strategy")  # the generator its noise was drawn with (core.random.GENERATORS)
        drawn = strategy.get("noise", "mt19937") if isinstance(strategy, dict) else "mt19937"
        extra = {"generation": generation, "noise": nrandom.GENERATORS.get(drawn, nrandom.NOISE_VERSION)}
        save_state(self.checkpoint_stem(generation), state, extra)
        for old in self.checkpoint_generations()[:-keep] if keep > 0 else []:
            for suffix in (".json", ".safetensors"):
                self.checkpoint_stem(old).with_suffix(suffix).unlink(missing_ok=True)

    def checkpoint_generations(self) -> list[int]:
        if not self.checkpoints.is_dir():
            return []
        gens = [int(m.group(1)) for p in self.checkpoints.iterdir() if (m := CKPT_RE.match(p.name))]
        return sorted(gens)

    def latest_checkpoint(self) -> tuple[int, dict[str, Any]] | None:
        """The newest complete checkpoint (its JSON and tensor file agree), or None.

        Raises ``ConfigError`` when it was drawn by another noise generator (``NOISE_VERSION``).
        """
        for generation in reversed(self.checkpoint_generations()):
            stem = self.checkpoint_stem(generation)
            try:
                state, meta = load_state(stem)
            except (ValueError, OSError, json.JSONDecodeError):
                continue
            where = f"{stem.with_suffix('.json')}"
            nrandom.check_noise_version(meta.get("noise"), where, tuple(nrandom.GENERATORS.values()))
            return generation, state
        return None

    # -- best network -------------------------------------------------------------------------
    def write_best(self, phenotype: Any, best: Any, extra: dict[str, Any], genome: Any = None) -> None:
        """``best/params.safetensors`` (flat params + named layers) and ``best/network.json`` (spec).

        A seed-chain strategy also gives its ``genome`` (JSON), written to ``best/genome.json``:
        the weights can be rebuilt from it alone (``neuroevo best --export`` does).
        """
        if genome is not None:
            atomic_write_text(self.best / "genome.json", json.dumps(genome))
        tensors: dict[str, torch.Tensor] = {}
        if isinstance(best.params, torch.Tensor):
            tensors["params"] = best.params.detach().to("cpu").clone()
        if isinstance(phenotype, NamedTensors):
            named = phenotype.named_tensors(best.params)
            tensors.update({k: v.detach().to("cpu").clone() for k, v in named.items()})
        if phenotype is None:  # a plain vector optimised by a user function
            network = {"type": "vector", "dimension": int(best.params.numel())}
            sizes = {"in_features": 0, "out_features": 0}
        else:
            network = phenotype.spec()
            sizes = {"in_features": int(phenotype.in_features), "out_features": int(phenotype.out_features)}
        spec = {"network": network, **sizes, "fitness": best.fitness, "generation": best.generation, **extra}
        if isinstance(phenotype, MemberSpecs):
            spec["member"] = phenotype.member_spec(best.params)
        atomic_write(self.best / "params.safetensors", save(tensors))
        atomic_write_text(self.best / "network.json", json.dumps(spec, indent=1))


def load_best(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``best/`` (or a run folder) -> (network.json dict, tensors); no run needed."""
    path = Path(path)
    if (path / "best").is_dir():
        path = path / "best"
    if not (path / "network.json").is_file():
        raise ConfigError(f"{path} holds no best network (no network.json); run `neuroevo run` first")
    params = path / "params.safetensors"
    tensors = (
        load_file(str(params)) if params.is_file() else {}
    )  # a seed-chain best may carry only genome.json
    return json.loads((path / "network.json").read_text()), tensors
