"""``RayExecutor``: the population evaluated in shards on long-lived Ray actors.

Each actor holds the task and the phenotype once (put into Ray's object store once per run,
so a data set crosses the wire once per node); every generation it gets one contiguous
shard of the population (``executor.shard_bounds``/``take``: flat rows, NEAT genomes, EGGROLL
factors) and the task's state when it changed (the observation statistics), and returns
only the shard's fitness values, descriptors, step count and per-member partial statistics.
The driver joins the shards in shard order and merges them exactly as the local executor
does (``executor.merge_shards``), so a run with the same seed gives the same metrics, bit
for bit, when both use the same torch thread count (actors use ``threads_per_actor``, 1 by
default; the examples set ``run.threads = 1``).

Faults: a shard whose actor died (process killed, node lost) is run again on a live actor;
``worker_failures`` in ``metrics.jsonl`` counts those events (with ``bytes_out``/``bytes_in``,
the payload bytes of this generation in each direction). With no actor left the run stops
with ``WorkersLostError``: one line, and the last checkpoint is what ``neuroevo resume``
continues from. Connecting fails within ``connect_timeout_s`` with a one-line
``ConfigError`` (CLI exit 2): Ray not installed, an address that does not answer, a cluster
without the requested CPUs/GPUs, a Ray version different from the cluster's.

What crosses the wire: for OpenES (the ``RegeneratesMembers`` hook) the centre once per
generation through the object store and each shard's member range; the workers rebuild
their rows from the counter-based keys. Every other population goes as its shard (flat
rows, NEAT genome tensors, EGGROLL's low-rank factors). See docs/scaling.md.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import time
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

import torch

from neuroevo.core import memory
from neuroevo.core.errors import ConfigError, FitnessEvaluationError
from neuroevo.core.types import Fitness
from neuroevo.runtime.executor import (
    ShardResult,
    evaluate_shard,
    merge_shards,
    population_size,
    shard_bounds,
    take,
)


class WorkersLostError(FitnessEvaluationError):
    """Every Ray actor died: the run stops; the last checkpoint is intact."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "executor = 'ray' needs Ray, which is not installed; allowed: pip install 'neuroevo[ray]'"
        ) from None
    return ray


def nbytes(obj: Any) -> int:
    """Payload bytes of tensors inside ``obj`` (tensors, dataclasses, dicts, lists), for the wire count."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v) for v in obj)
    if is_dataclass(obj) and not isinstance(obj, type):
        return sum(nbytes(getattr(obj, f.name)) for f in fields(obj))
    return 0


@dataclass
class _Rows:
    """Members ``start..stop`` of a population sent as its recipe (an object-store reference)."""

    recipe: Any
    start: int
    stop: int


class _Worker:
    """What runs in each actor: the task and phenotype, held for the whole run."""

    def __init__(self, threads: int, task: Any, phenotype: Any):
        if threads > 0:
            torch.set_num_threads(threads)
        memory.keep_freed_memory()  # the malloc tuning evolve() applies in the driver, here too
        self.task, self.phenotype = task, phenotype
        self.version = -1

    def pid(self) -> int:
        return os.getpid()

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def evaluate(
        self, state: Any, version: int, shard: Any, generation: int, stream: int
    ) -> tuple[ShardResult, float]:
        t0 = time.perf_counter()
        if state is not None:
            self.task.load_state_dict(state)
            self.version = version
        if isinstance(shard, _Rows):
            import ray

            recipe = ray.get(shard.recipe) if isinstance(shard.recipe, ray.ObjectRef) else shard.recipe
            shard = recipe.rows(shard.start, shard.stop)
        result = evaluate_shard(self.task, self.phenotype, shard, generation, stream)
        return result, time.perf_counter() - t0


def _probe(address: str, timeout: float) -> None:
    """A TCP connect to ``host:port`` so that an address nobody answers fails in seconds."""
    host, _, port = address.rpartition(":")
    host = host.removeprefix("ray://") or "127.0.0.1"
    if not port.isdigit():
        raise ConfigError(f"ray address = {address!r}; allowed: auto, or host:port of a Ray head")
    try:
        socket.create_connection((host, int(port)), timeout=min(timeout, 5.0)).close()
    except OSError as exc:
        raise ConfigError(f"ray address = {address!r} does not answer ({exc.strerror or exc})") from None


class RayExecutor:
    """Evaluates shards of the population on ``workers`` Ray actors (see module doc).

    ``address``: ``"auto"`` (the cluster this machine belongs to, or ``RAY_ADDRESS``), a head's
    ``host:port``, or None (start a private Ray instance in this process). Each actor asks for
    1 CPU and ``num_gpus_per_actor`` GPUs and runs torch with ``threads_per_actor`` threads.
    """

    def __init__(
        self,
        address: str | None = "auto",
        workers: int = 2,
        *,
        num_gpus_per_actor: float = 0,
        threads_per_actor: int = 1,
        connect_timeout_s: float = 30.0,
        start_timeout_s: float = 180.0,
        runtime_env: dict[str, Any] | None = None,
    ):
        if workers < 1:
            raise ConfigError(f"workers = {workers}; allowed: >= 1")
        if num_gpus_per_actor < 0 or threads_per_actor < 0:
            raise ConfigError(
                f"num_gpus_per_actor = {num_gpus_per_actor}, threads = {threads_per_actor}; >= 0"
            )
        self.ray = _import_ray()
        self.address, self.workers = address, int(workers)
        self.num_gpus, self.threads = float(num_gpus_per_actor), int(threads_per_actor)
        self.timeout, self.start_timeout = float(connect_timeout_s), float(start_timeout_s)
        self.worker_failures = 0
        self.bytes_out = self.bytes_in = 0
        self._actors: list[Any] = []
        self._versions: list[int] = []
        self._state_hash: bytes | None = None
        self._state_ref: Any = None
        self._state_version = 0
        self._bound: tuple[int, int] | None = None
        self._started_ray = False
        self._sent_state_bytes = self._state_bytes = 0
        self.pids: list[int] = []
        self._recipe: tuple[Any, Any] = (None, None)
        self._connect(runtime_env)

    # -- connection and placement ------------------------------------------------------------------
    def _connect(self, runtime_env: dict[str, Any] | None) -> None:
        ray, address = self.ray, self.address
        if address not in (None, "auto") and not address.startswith("ray://"):
            _probe(address, self.timeout)
        if ray.is_initialized():  # this process is connected already (a second executor, a notebook)
            self._check_resources()
            return
        kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
        if runtime_env:
            kwargs["runtime_env"] = runtime_env
        if address is None:
            kwargs["num_cpus"] = max(self.workers, 1)
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"ray address = {address!r}: {_first_line(exc)}") from None
        except Exception as exc:
            text = str(exc)
            if "version mismatch" in text.lower() or "version" in text.lower() and "cluster" in text.lower():
                raise ConfigError(
                    f"ray address = {address!r}: the cluster runs another Ray or Python version than this "
                    f"driver (Ray {ray.__version__}); allowed: the same versions on both ({_first_line(exc)})"
                ) from None
            raise ConfigError(f"ray address = {address!r}: {_first_line(exc)}") from None
        self._started_ray = True
        self._check_resources()

    def _check_resources(self) -> None:
        total = self.ray.cluster_resources()
        cpus, gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        need_gpus = self.num_gpus * self.workers
        if cpus < self.workers or gpus < need_gpus:
            raise ConfigError(
                f"workers = {self.workers} need {self.workers} CPUs and {need_gpus:g} GPUs; the Ray cluster "
                f"at {self.address or 'this process'} has {cpus:g} CPUs and {gpus:g} GPUs"
            )

    def start(self, task: Any, phenotype: Any) -> None:
        """Start the actors with ``task`` and ``phenotype`` now (``evaluate`` does it on first use);
        a ``ConfigError`` if they cannot all start within ``start_timeout_s``."""
        if self._bound == (id(task), id(phenotype)):
            return
        if self._actors:
            self._kill_actors()
        self._start_actors(task, phenotype)
        self._bound = (id(task), id(phenotype))
        self._state_hash = None

    def _start_actors(self, task: Any, phenotype: Any) -> None:
        ray = self.ray
        remote = ray.remote(num_cpus=1, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0)(_Worker)
        task_ref, phenotype_ref = ray.put(task), ray.put(phenotype)  # once per run: data sets included
        self._actors = [
            remote.options(scheduling_strategy="SPREAD").remote(self.threads, task_ref, phenotype_ref)
            for _ in range(self.workers)
        ]
        self._versions = [-1] * self.workers
        pending = [a.pid.remote() for a in self._actors]
        ready, _ = ray.wait(pending, num_returns=len(pending), timeout=self.start_timeout)
        if len(ready) < len(pending):
            self.close()
            raise ConfigError(
                f"workers = {self.workers}: only {len(ready)} Ray actors started within "
                f"{self.start_timeout:g} s (start_timeout_s); the cluster cannot place 1 CPU and "
                f"{self.num_gpus:g} GPUs per actor"
            )
        self.pids = ray.get(pending)  # in actor order

    # -- evaluation -----------------------------------------------------------------------------------
    def evaluate(
        self, task: Any, phenotype: Any, population: Any, generation: int, *, stream: int = 0
    ) -> Fitness:
        self.start(task, phenotype)
        self._ship_state(task)
        size = population_size(population)
        bounds = shard_bounds(size, len(self.live()) or 1)
        noted, recipe = self._recipe
        self._recipe = (None, None)
        if recipe is not None and noted is population and len(recipe) == size:
            ref = self.ray.put(recipe)  # once per generation: the centre; members are keys
            shards: list[Any] = [_Rows(ref, a, b) for a, b in bounds]
            sent = nbytes(recipe) + 16 * len(bounds)
        else:
            shards = [take(population, a, b) for a, b in bounds]
            sent = sum(nbytes(s) for s in shards)
        parts = self._run(shards, generation, stream)
        self.bytes_out = sent + self._sent_state_bytes
        self.bytes_in = sum(nbytes(p.results) for p in parts)
        return merge_shards(task, parts, generation, stream)

    def note_recipe(self, population: Any, recipe: Any) -> None:
        """The ``TakesMemberRecipes`` hook: the next ``evaluate`` of ``population`` sends ``recipe``."""
        self._recipe = (population, recipe)

    def generation_stats(self) -> dict[str, float]:
        """Counters for this generation's metrics line: failures so far and the payload bytes."""
        return {
            "worker_failures": float(self.worker_failures),
            "bytes_out": float(self.bytes_out),
            "bytes_in": float(self.bytes_in),
        }

    def live(self) -> list[int]:
        return [i for i, a in enumerate(self._actors) if a is not None]

    def _ship_state(self, task: Any) -> None:
        """Put the task's state in the object store when it changed (sent to each actor once)."""
        buffer = io.BytesIO()
        state = task.state_dict()
        torch.save(state, buffer)
        digest = hashlib.blake2b(buffer.getvalue(), digest_size=16).digest()
        self._sent_state_bytes = 0
        if digest != self._state_hash:
            self._state_hash = digest
            self._state_ref = self.ray.put(state)
            self._state_version += 1
            self._state_bytes = len(buffer.getvalue())

    def _submit(self, actor: int, shard: Any, generation: int, stream: int) -> Any:
        ref = None
        if self._versions[actor] != self._state_version:
            ref = self._state_ref
            self._versions[actor] = self._state_version
            self._sent_state_bytes += self._state_bytes
        return self._actors[actor].evaluate.remote(ref, self._state_version, shard, generation, stream)

    def _run(self, shards: list[Any], generation: int, stream: int) -> list[ShardResult]:
        ray = self.ray
        errors = ray.exceptions
        lost = (
            errors.RayActorError,
            errors.ObjectLostError,
            errors.NodeDiedError,
            errors.WorkerCrashedError,
        )
        live = self.live()
        if not live:
            raise WorkersLostError(f"generation {generation}: no Ray worker is left", generation)
        pending = {
            self._submit(live[i % len(live)], s, generation, stream): (i, live[i % len(live)])
            for i, s in enumerate(shards)
        }
        results: list[ShardResult | None] = [None] * len(shards)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            ref = done[0]
            index, actor = pending.pop(ref)
            try:
                results[index] = ray.get(ref)[0]
            except lost:
                self.worker_failures += 1
                self._actors[actor] = None
                live = self.live()
                if not live:
                    raise WorkersLostError(
                        f"generation {generation}: every Ray worker died ({self.worker_failures} failures); "
                        "the run stops",
                        generation,
                    ) from None
                busy = {a for _, a in pending.values()}
                target = next((a for a in live if a not in busy), live[index % len(live)])
                pending[self._submit(target, shards[index], generation, stream)] = (index, target)
            except ray.exceptions.RayTaskError as exc:  # the fitness function raised on the worker
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
        return [r for r in results if r is not None]

    # -- shutdown -----------------------------------------------------------------------------------
    def _kill_actors(self) -> None:
        for actor in self._actors:
            if actor is not None:
                try:
                    self.ray.kill(actor)
                except Exception:  # already gone
                    pass
        self._actors = []

    def close(self) -> None:
        """Stop the actors; disconnect from Ray (and stop it, if this executor started a private one)."""
        if self.ray.is_initialized():
            self._kill_actors()
            if self._started_ray:
                self.ray.shutdown()
        self._bound = None

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
