"""PBT's sequential mode on Ray actors: members that cannot be stacked train where they live.

Members with batch-norm buffers (a drop-in for Ray Tune's PBT on models that are not
vectorised) train on 2 actors; the metrics, ``best/`` and ``pbt.jsonl`` equal the local sequential run's,
bit for bit; only exploited members' snapshots go out to the actors; a run resumed on Ray
from its checkpoint ends the same; a worker SIGKILLed mid-interval on a real 2-node cluster
(``tests/ray_cluster.py``) has its members rebuilt elsewhere (``worker_failures``) and the run
ends the same. The vectorised PBT task stays refused on Ray with one line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

ray = pytest.importorskip("ray")

from neuroevo.core import random as nrandom  # noqa: E402
from neuroevo.core.errors import ConfigError, FitnessEvaluationError  # noqa: E402
from neuroevo.runtime import TIMING_FIELDS, evolve  # noqa: E402
from neuroevo.runtime.ray_executor import RayExecutor, nbytes  # noqa: E402
from neuroevo.runtime.rundir import RunDir  # noqa: E402
from neuroevo.strategies.pbt import PBT  # noqa: E402
from neuroevo.tasks.pbt import PBTSupervised  # noqa: E402
from neuroevo.tasks.pbt_sequential import PBTSequential, set_optimizer_hyperparams  # noqa: E402
from ray_cluster import kill_worker_once  # noqa: E402

TESTS = Path(__file__).resolve().parent
SRC = TESTS.parent / "src"
RAY_FIELDS = {"worker_failures", "bytes_out", "bytes_in"}
SEED, SIZE, BATCH, GENERATIONS = 5, 6, 16, 6
SPACE = {"lr": {"low": 1e-3, "high": 0.5, "log": True}, "momentum": {"low": 0.0, "high": 0.95}}


class Iris:
    """The step and evaluate of every member, holding the data set: it reaches each actor once.

    A member is an MLP with batch normalisation (buffers: ``torch.func`` stacking does not take
    it, nor does ``trainable_module``) and its SGD optimiser; ``fail``: the step of that
    (generation, member) raises; ``kill_at``: the first
    worker process (never the driver) to step in that generation SIGKILLs itself, once.
    """

    def __init__(self, kill_at: int = -1, marker: str = "", fail: tuple[int, int] = (-1, -1)):
        data = PBTSupervised(dataset="iris", seed=SEED).data
        self.x, self.y, self.x_val, self.y_val = data.x_train, data.y_train, data.x_val, data.y_val
        self.kill_at, self.marker, self.driver, self.fail = kill_at, marker, os.getpid(), fail

    def init(self, member: int, generator: torch.Generator) -> dict[str, Any]:
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
            model = torch.nn.Sequential(
                torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
            )
        return {"model": model, "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}

    def data(self, generation: int, step: int, member: int) -> tuple[int, int, torch.Tensor]:
        gen = nrandom.member_generator(SEED, generation * 1000 + step, member, "batch")
        return generation, member, torch.randint(self.x.shape[0], (BATCH,), generator=gen)

    def step(
        self, state: dict[str, Any], hyperparams: dict[str, Any], data: tuple[int, int, torch.Tensor]
    ) -> float:
        generation, member, idx = data
        if (generation, member) == self.fail:
            raise FloatingPointError("diverged")
        if generation == self.kill_at:
            kill_worker_once(self.marker, self.driver)
        set_optimizer_hyperparams(state["optimizer"], hyperparams)
        state["optimizer"].zero_grad()
        loss = F.cross_entropy(state["model"](self.x[idx]), self.y[idx])
        loss.backward()
        state["optimizer"].step()
        return float(loss.detach())

    def evaluate(self, state: dict[str, Any]) -> float:
        model = state["model"].eval()
        with torch.no_grad():
            value = float(-F.cross_entropy(model(self.x_val), self.y_val))
        model.train()
        return value


def _task(kill_at: int = -1, marker: str = "", **kw: Any) -> PBTSequential:
    """``kw``: ``fail`` for ``Iris``, ``member_errors`` for the task."""
    iris = Iris(kill_at, marker, fail=kw.pop("fail", (-1, -1)))
    return PBTSequential(iris.init, iris.step, iris.evaluate, data=iris.data, seed=SEED, **kw)


def _pbt() -> PBT:
    return PBT(SIZE, space=SPACE, ready_every=4, seed=SEED)


def _run(run: Path, executor: Any = None, task: Any = None, generations: int = GENERATIONS, **kw: Any):
    """Strategy and task both fresh unless ``task`` is given; ``kw`` go to ``evolve``."""
    task = task or _task()
    result = evolve(_pbt(), None, task, generations=generations, executor=executor, run_dir=run, **kw)
    return result, task


def _strip(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS and k not in RAY_FIELDS} for m in metrics]


def _files(run: Path) -> dict[str, bytes]:
    names = [p for p in sorted((run / "best").iterdir()) if p.is_file()] + [run / "pbt.jsonl"]
    return {p.name: p.read_bytes() for p in names}


@pytest.fixture(autouse=True)
def _no_plots(monkeypatch: pytest.MonkeyPatch) -> None:
    """The report's plots take seconds per run and are not what these tests compare."""
    monkeypatch.setattr("neuroevo.strategies.pbt.plots.plot_pbt", lambda *args, **kwargs: None)
    monkeypatch.setattr("neuroevo.runtime.plots.plot_fitness", lambda *args, **kwargs: None)


@pytest.fixture(scope="module")
def executor():
    """3 actors on a private Ray instance on 127.0.0.1 whose workers import this folder (``Iris``);
    the tests below share them (each run loads its task on the same actors)."""
    if ray.is_initialized():
        ray.shutdown()
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = f"{SRC}:{TESTS}"  # the raylet and its workers inherit it
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        ray.init(
            num_cpus=3,
            _node_ip_address="127.0.0.1",
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        with RayExecutor(None, workers=3) as ex:
            yield ex
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def test_members_on_actors_give_the_local_run(executor: RayExecutor, tmp_path: Path) -> None:
    local, local_task = _run(tmp_path / "local")
    remote, _ = _run(tmp_path / "ray", executor)
    assert len(set(executor.pids)) == 3 and os.getpid() not in executor.pids
    # a run stopped after generation 3 and resumed on Ray ends the same
    _run(tmp_path / "part", executor, generations=3, checkpoint_every=2)
    resumed, _ = _run(tmp_path / "part", executor, task=_task(), checkpoint_every=2, resume=True)
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert _strip(RunDir(tmp_path / "part").read_metrics()) == _strip(local.metrics)
    assert _files(tmp_path / "part") == _files(tmp_path / "local")
    # the wire: every member's snapshot comes back; only exploited members' go out
    states = [nbytes(s) for s in local_task.saved]
    hyperparams = 8 * len(SPACE) * SIZE
    exploited = [0, *(int(m["exploited"]) for m in local.metrics[:-1])]  # copies made at the next ask
    assert sum(exploited) >= 2
    for line, copies in zip(remote.metrics, exploited, strict=True):
        assert line["bytes_in"] == sum(states) + 16 * SIZE
        assert hyperparams <= line["bytes_out"] <= hyperparams + copies * max(states)
        assert line["worker_failures"] == 0
    assert remote.metrics[0]["bytes_out"] == hyperparams  # fresh members: nothing to load


def test_vectorised_pbt_stays_refused_on_ray(executor: RayExecutor) -> None:
    from neuroevo.config import validate_config
    from neuroevo.nn.trainable import TrainableMLP

    task, population = PBTSupervised(dataset="iris", seed=SEED), _pbt().ask()
    with pytest.raises(ConfigError) as info:
        executor.evaluate(task, TrainableMLP([4, 8, 3]), population, 0)
    assert "\n" not in str(info.value) and "PBTSequential" in str(info.value)
    data = {
        "run": {"executor": "ray", "generations": 2},
        "task": {"name": "pbt_supervised", "dataset": "iris"},
        "network": {"type": "trainable_mlp", "hidden": [8]},
        "strategy": {"name": "pbt", "population_size": 4, "space": SPACE},
    }
    with pytest.raises(ConfigError, match="run.executor = 'ray': strategy 'pbt'") as info:
        validate_config(data)
    assert "\n" not in str(info.value)


def test_a_failing_member_fails_alone_on_its_actor(executor: RayExecutor, tmp_path: Path) -> None:
    """``member_errors = "nan"``: member 4 raises in generation 2, gets NaN and goes back to its
    saved state on its actor, as it does locally; ``"raise"`` stops the run with the error."""
    local, _ = _run(tmp_path / "local", task=_task(fail=(2, 4), member_errors="nan"))
    remote, _ = _run(tmp_path / "ray", executor, task=_task(fail=(2, 4), member_errors="nan"))
    assert [m["failed_members"] for m in local.metrics] == [0, 0, 1, 0, 0, 0]
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    with pytest.raises(FitnessEvaluationError, match="generation 2: .*FloatingPointError: diverged"):
        _run(tmp_path / "raise", executor, task=_task(fail=(2, 4)))


def test_a_killed_worker_has_its_members_rebuilt(executor: RayExecutor, tmp_path: Path) -> None:
    """(Last on these actors: one of them dies.)"""
    local, _ = _run(tmp_path / "local")
    task = _task(kill_at=2, marker=str(tmp_path / "killed"))
    remote, _ = _run(tmp_path / "ray", executor, task=task)
    assert (tmp_path / "killed").exists() and len(executor.live()) == 2
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert [m["worker_failures"] for m in remote.metrics] == [0, 0, 1, 1, 1, 1]


@pytest.mark.slow
def test_a_killed_worker_on_a_two_node_cluster(tmp_path: Path) -> None:
    from ray_cluster import LocalCluster

    if ray.is_initialized():
        ray.shutdown()
    local, _ = _run(tmp_path / "local")
    cluster = LocalCluster(f"{SRC}:{TESTS}")
    try:
        cluster.head(num_cpus=2)
        cluster.add_node(num_cpus=2)
        task = _task(kill_at=2, marker=str(tmp_path / "killed"))
        with RayExecutor(cluster.address, workers=3) as executor:
            nodes: set[int] = set()

            def placed(line: dict[str, Any], strategy: Any) -> bool:
                if line["generation"] == 0:  # before the kill: the actors span both nodes
                    pids = set(executor.pids)
                    nodes.update(n for n, node in enumerate(cluster.nodes) if pids & set(node.pids()))
                return False

            remote, _ = _run(tmp_path / "ray", executor, task=task, callbacks=[placed])
            assert len(executor.live()) == 2
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert (tmp_path / "killed").exists() and nodes == {0, 1}
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    assert [m["worker_failures"] for m in remote.metrics] == [0, 0, 1, 1, 1, 1]
