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

What crosses the wire: for OpenES and the seed-chain GA (the ``RegeneratesMembers`` hook) the
recipe once per generation through the object store (OpenES: the centre; Deep GA: the seed
chains as a trie, and its initialiser once per run, ``shared``) and each shard's member range;
the workers rebuild their rows from the counter-based keys. The recipe stays noted while the
same population is evaluated again (Deep GA's elite re-evaluation streams). Every other
population goes as its shard (flat rows, NEAT genome tensors, EGGROLL's low-rank factors).
See docs/scaling.md.

PBT's sequential mode (a task with the ``TrainsMembersApart`` hook: ``PBTSequential``) runs its
members on the actors instead: each actor holds the task's ``MemberProgram`` once (the user's
init/step/evaluate and whatever data they hold, through the object store) and a fixed share of
the members, resident (live modules and optimisers) between ready intervals. The driver keeps
the PBT strategy and the task's saved snapshots (its checkpoint); each interval it sends every
actor its members' jobs (hyperparameters, step counts) and only the snapshots a member must load:
an exploited member's parent snapshot (none when the parent lives on the same actor), or the
snapshot of a member rebuilt on another actor. Each member's new snapshot comes back (the
checkpoint and the exploit sources live on the driver, as Ray Tune's PBT saves every trial at
each perturbation). An actor that dies has its members rebuilt from those snapshots on the
live actors and their interval re-run; the result is the local run's, bit for bit.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class TrainsMembersApart(Protocol):
    """A task whose members train one by one, each a function of its own state (``PBTSequential``).

    ``member_program()`` is what trains one member (no member state); ``begin_interval`` applies
    the exploit copies to ``saved`` (the members' snapshots, the task's state) and returns the
    jobs and ``{member: parent}``; ``end_interval`` takes the outcomes and returns the Fitness;
    ``revision`` changes when ``load_state_dict`` replaces the snapshots.
    """

    saved: list[Any]
    revision: int

    def member_program(self) -> Any: ...

    def begin_interval(self, population: Any, generation: int) -> tuple[list[Any], dict[int, int]]: ...

    def end_interval(self, population: Any, outcomes: Sequence[Any]) -> Fitness: ...


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
        self._shared: tuple[str, Any] = ("", None)  # a recipe's run-long part (Deep GA's initialiser)
        self.members: dict[int, Any] = {}  # PBT sequential: the resident members and their snapshots
        self.saved: dict[int, Any] = {}

    def load(self, task: Any, phenotype: Any) -> int:
        """Hold another task and phenotype (a new run on the same actors); forget the old members."""
        self.task, self.phenotype, self.version = task, phenotype, -1
        self.members, self.saved = {}, {}
        return os.getpid()

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
            shared = getattr(recipe, "shared", None)
            if isinstance(shared, ray.ObjectRef):  # a run-long part, fetched once per actor
                if self._shared[0] != shared.hex():
                    self._shared = (shared.hex(), ray.get(shared))
                recipe = replace(recipe, shared=self._shared[1])
            shard = recipe.rows(shard.start, shard.stop)
        result = evaluate_shard(self.task, self.phenotype, shard, generation, stream)
        return result, time.perf_counter() - t0

    def train(self, jobs: list[Any], drop: list[int] | None) -> tuple[list[Any], float]:
        """PBT sequential: one ready interval of the members in ``jobs`` (``MemberProgram.run``).

        ``drop``: members to forget first (None: all); a job's ``restore``/``copy_from`` snapshot
        is loaded first, all copies at once (exploits are simultaneous); a member not held here
        starts fresh from ``init``.
        """
        from neuroevo.tasks.pbt_sequential import _restore

        t0 = time.perf_counter()
        program = self.task
        for m in list(self.members) if drop is None else drop:
            self.members.pop(m, None)
            self.saved.pop(m, None)
        sources = {j.copy_from: self.saved[j.copy_from] for j in jobs if j.copy_from is not None}
        for job in jobs:
            snapshot = sources[job.copy_from] if job.copy_from is not None else job.restore
            if snapshot is None:
                continue
            state = self.members.get(job.member)
            state = program.fresh(job.member) if state is None else state
            _restore(state, snapshot)
            self.members[job.member], self.saved[job.member] = state, copy.deepcopy(snapshot)
        outcomes = []
        for job in jobs:
            m = job.member
            self.members[m], outcome = program.run(self.members.get(m), self.saved.get(m), job)
            if outcome.snapshot is not None:
                self.saved[m] = outcome.snapshot
            outcomes.append(outcome)
        return outcomes, time.perf_counter() - t0


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
        self._bytes_generation = -1
        self._actors: list[Any] = []
        self._versions: list[int] = []
        self._state_hash: bytes | None = None
        self._state_ref: Any = None
        self._state_version = 0
        self._bound: tuple[int, int] | None = None
        self._started_ray = False
        self._sent_state_bytes = self._state_bytes = 0
        self.pids: list[int] = []
        self._recipe: tuple[Any, Any, int | None] = (None, None, None)
        self._shared_refs: dict[int, tuple[Any, Any]] = {}
        self._home: list[int] = []  # PBT sequential: the actor each member lives on
        self._resident: list[bool] = []  # ... and whether it holds the member's current state
        self._revision = -1
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
        if self._actors and len(self.live()) == self.workers:
            self._reload_actors(task, phenotype)  # a new task on the live actors: no process start
        else:
            if self._actors:
                self._kill_actors()
            self._start_actors(task, phenotype)
        self._bound = (id(task), id(phenotype))
        self._state_hash = None
        self._home, self._resident = [], []
        self._bytes_generation = -1

    def _refs(self, task: Any, phenotype: Any) -> tuple[Any, Any]:
        """The task (a ``TrainsMembersApart`` task: its member program) and phenotype, in the object
        store once per run: data sets included."""
        payload = task.member_program() if isinstance(task, TrainsMembersApart) else task
        return self.ray.put(payload), self.ray.put(phenotype)

    def _reload_actors(self, task: Any, phenotype: Any) -> None:
        task_ref, phenotype_ref = self._refs(task, phenotype)
        pending = [a.load.remote(task_ref, phenotype_ref) for a in self._actors]
        ready, _ = self.ray.wait(pending, num_returns=len(pending), timeout=self.start_timeout)
        try:
            self.ray.get(ready)
        except self._lost_errors():
            ready = []
        if len(ready) < len(pending):  # an actor died meanwhile: start afresh
            self._kill_actors()
            self._start_actors(task, phenotype)
            return
        self._versions = [-1] * self.workers

    def _start_actors(self, task: Any, phenotype: Any) -> None:
        ray = self.ray
        remote = ray.remote(num_cpus=1, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0)(_Worker)
        task_ref, phenotype_ref = self._refs(task, phenotype)
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
        from neuroevo.strategies.pbt.population import HyperparamPopulation

        if isinstance(population, HyperparamPopulation):
            if not isinstance(task, TrainsMembersApart):
                raise ConfigError(
                    f"executor = 'ray' with task {type(task).__name__}: a vectorised PBT task trains its "
                    "stacked members in one process; allowed: executor = 'local', or PBTSequential"
                )
            return self._train_members(task, population, generation)
        self.start(task, phenotype)
        self._ship_state(task)
        size = population_size(population)
        bounds = shard_bounds(size, len(self.live()) or 1)
        noted, recipe, used_at = self._recipe  # kept for the re-evaluation streams of this generation
        fits = recipe is not None and noted is population and len(recipe) == size
        if fits and used_at in (None, generation):
            self._recipe = (noted, recipe, generation)
            shared, shared_bytes = self._shared(recipe)
            if shared is not None:
                recipe = replace(recipe, shared=shared)
            ref = self.ray.put(recipe)  # once per generation: the centre or the seeds; members are keys
            shards: list[Any] = [_Rows(ref, a, b) for a, b in bounds]
            sent = nbytes(recipe) + 16 * len(bounds) + shared_bytes
        else:
            shards = [take(population, a, b) for a, b in bounds]
            sent = sum(nbytes(s) for s in shards)
        self._count(generation, sent + self._sent_state_bytes, 0)
        parts = self._run(shards, generation, stream)
        self._count(generation, 0, sum(nbytes(p.results) for p in parts))
        return merge_shards(task, parts, generation, stream)

    def _count(self, generation: int, out: int, back: int) -> None:
        """Add payload bytes to this generation's counts (every evaluation of it: re-evaluations too)."""
        if generation != self._bytes_generation:
            self._bytes_generation, self.bytes_out, self.bytes_in = generation, 0, 0
        self.bytes_out += out
        self.bytes_in += back

    # -- PBT sequential: members resident on the actors ------------------------------------------------
    def _train_members(self, task: Any, population: Any, generation: int) -> Fitness:
        """One ready interval of a ``TrainsMembersApart`` task's members on the actors (module doc)."""
        self.start(task, None)
        size = len(population)
        live = self.live()
        if not live:
            raise WorkersLostError(f"generation {generation}: no Ray worker is left", generation)
        fresh = self._revision != task.revision or len(self._home) != size
        if fresh:  # contiguous blocks of members per actor; nothing held yet
            bounds = shard_bounds(size, len(live), multiple=1)
            self._home = [live[k] for k, (a, b) in enumerate(bounds) for _ in range(a, b)]
            self._resident = [False] * size
            self._revision = task.revision
        jobs, copies = task.begin_interval(population, generation)
        for job in jobs:
            i = job.member
            if i in copies:
                parent = copies[i]
                if self._resident[parent] and self._home[parent] == self._home[i]:
                    job.copy_from = parent  # the actor holds the parent's snapshot already
                else:
                    job.restore = task.saved[i]  # the parent's snapshot, copied by begin_interval
            elif not self._resident[i]:
                job.restore = task.saved[i]  # None: a fresh member
        drops = {a: None if fresh else [j.member for j in jobs if not self._resident[j.member]] for a in live}
        self._count(generation, sum(nbytes(j.restore) + 8 * len(j.hyperparams) for j in jobs), 0)
        outcomes = self._run_members(task, jobs, drops, generation)
        self._count(generation, 0, sum(nbytes(o.snapshot) + 16 for o in outcomes))
        for o in outcomes:
            self._resident[o.member] = True
        return task.end_interval(population, outcomes)

    def _run_members(self, task: Any, jobs: list[Any], drops: dict[int, Any], generation: int) -> list[Any]:
        """Each actor's jobs in one call; an actor that dies has its members rebuilt elsewhere."""
        ray = self.ray
        lost = self._lost_errors()
        by_actor: dict[int, list[Any]] = {}
        for job in jobs:
            by_actor.setdefault(self._home[job.member], []).append(job)
        pending = {
            self._actors[a].train.remote(batch, drops.get(a, [])): (a, batch) for a, batch in by_actor.items()
        }
        outcomes: list[Any] = []
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            actor, batch = pending.pop(done[0])
            try:
                outcomes.extend(ray.get(done[0])[0])
            except lost:
                live = self._lose(actor, generation)
                moved: dict[int, list[Any]] = {}
                for k, job in enumerate(batch):  # rebuilt from the driver's snapshot at this ready point
                    target = live[k % len(live)]
                    self._home[job.member], self._resident[job.member] = target, False
                    job.copy_from, job.restore = None, task.saved[job.member]
                    moved.setdefault(target, []).append(job)
                for target, part in moved.items():
                    drop = [j.member for j in part]
                    self._count(generation, sum(nbytes(j.restore) for j in part), 0)
                    pending[self._actors[target].train.remote(part, drop)] = (target, part)
            except ray.exceptions.RayTaskError as exc:  # a member's step raised on the worker
                cause = getattr(exc, "cause", None)
                raise (cause if isinstance(cause, Exception) else exc) from None
        return outcomes

    def _lost_errors(self) -> tuple[type[BaseException], ...]:
        errors = self.ray.exceptions
        return (errors.RayActorError, errors.ObjectLostError, errors.NodeDiedError, errors.WorkerCrashedError)

    def note_recipe(self, population: Any, recipe: Any) -> None:
        """The ``TakesMemberRecipes`` hook: the evaluations of ``population`` send ``recipe``."""
        self._recipe = (population, recipe, None)

    def _shared(self, recipe: Any) -> tuple[Any, int]:
        """A recipe's run-long part (``shared``: Deep GA's initialiser) in the object store once;
        its reference and the bytes sent now (its pickle, the first time only)."""
        shared = getattr(recipe, "shared", None)
        if shared is None:
            return None, 0
        kept = self._shared_refs.get(id(shared))
        if kept is not None and kept[0] is shared:
            return kept[1], 0
        self._shared_refs = {id(shared): (shared, self.ray.put(shared))}
        return self._shared_refs[id(shared)][1], len(self.ray.cloudpickle.dumps(shared))

    def generation_stats(self) -> dict[str, float]:
        """Counters for this generation's metrics line: failures so far and the payload bytes."""
        return {
            "worker_failures": float(self.worker_failures),
            "bytes_out": float(self.bytes_out),
            "bytes_in": float(self.bytes_in),
        }

    def _lose(self, actor: int, generation: int) -> list[int]:
        """Count a lost actor and forget it; the live actors, or WorkersLostError when none is left."""
        self.worker_failures += 1
        self._actors[actor] = None
        live = self.live()
        if not live:
            raise WorkersLostError(
                f"generation {generation}: every Ray worker died ({self.worker_failures} failures); "
                "the run stops",
                generation,
            ) from None
        return live

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
        lost = self._lost_errors()
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
                live = self._lose(actor, generation)
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
