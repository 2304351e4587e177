"""The Ray executor on a real local cluster (127.0.0.1): a head and a second node.

Across both nodes a run gives the local executor's metrics bit for bit (ES, GA, NEAT); a
worker SIGKILLed mid-generation has its shard re-run (``worker_failures`` counts it) and
the run ends the same; a whole node killed mid-run likewise; 16 actors on this 2-core
machine (CPUs overcommitted); connection errors are one line within seconds. Every
process the cluster started is killed by process id when the module ends, pass or fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

ray = pytest.importorskip("ray")

from neuroevo.config import build, validate_config  # noqa: E402
from neuroevo.core.errors import ConfigError  # noqa: E402
from neuroevo.runtime import TIMING_FIELDS, evolve  # noqa: E402
from neuroevo.runtime.ray_executor import RayExecutor, WorkersLostError  # noqa: E402
from ray_cluster import KillOnce, LocalCluster, free_port  # noqa: E402
from test_contracts import _config  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"
RAY_FIELDS = {"worker_failures", "bytes_out", "bytes_in"}


@pytest.fixture(scope="module")
def cluster():
    c = LocalCluster(f"{SRC}:{Path(__file__).parent}")
    try:
        c.head(num_cpus=8)
        c.add_node(num_cpus=8)
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def _strip(metrics: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS and k not in RAY_FIELDS} for m in metrics]


def _data(strategy: str, task: dict[str, Any], population: int) -> dict[str, Any]:
    network = "neat" if strategy == "neat" else "mlp"
    data = _config(strategy, network, task, 4)
    data["strategy"]["population_size"] = population
    return data


def _run(data: dict[str, Any], generations: int, executor: Any = None, task: Any = None, callbacks=()):
    built = build(validate_config(data))
    result = evolve(
        built.strategy,
        built.phenotype,
        task or built.task,
        generations=generations,
        executor=executor,
        callbacks=callbacks,
    )
    return result


CARTPOLE = {"name": "control", "env": "CartPole-v1", "episodes": 2, "eval_episodes": 2}
CASES = {
    "openes-cartpole": ("openes", CARTPOLE, 200),
    "ga-xor": ("ga", {"name": "xor"}, 200),
    "neat-xor": ("neat", {"name": "xor"}, 150),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_nodes_give_the_local_metrics(cluster: LocalCluster, case: str) -> None:
    strategy, task, population = CASES[case]
    data = _data(strategy, task, population)
    local = _run(data, 4)
    with RayExecutor(cluster.address, workers=2) as executor:
        remote = _run(data, 4, executor)
        nodes = {n for n, node in enumerate(cluster.nodes) if set(executor.pids) & set(node.pids())}
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert nodes == {0, 1}  # one actor on each node (SPREAD)
    assert all(m["worker_failures"] == 0 and m["bytes_out"] > 0 and m["bytes_in"] > 0 for m in remote.metrics)


def test_seed_chain_ga_sends_seeds_not_rows(cluster: LocalCluster, monkeypatch) -> None:
    """Deep GA on two nodes: the seed chains (and the initialiser once) go out instead of the rows,
    with the local metrics; the same run sending rows moves far more bytes."""
    from neuroevo.strategies.deep_ga import SeedGA

    data = _data("seed_ga", {"name": "xor"}, 200)
    data["network"]["hidden"] = [64, 64]  # 4,417 weights a member
    data["strategy"].update(reeval_streams=2, elite_candidates=5)
    local = _run(data, 4)
    with RayExecutor(cluster.address, workers=2) as executor:
        seeds = _run(data, 4, executor)
        monkeypatch.setattr(SeedGA, "member_recipe", lambda self: None)
        monkeypatch.setattr(SeedGA, "reevaluation_recipe", lambda self: None)
        rows = _run(data, 4, executor)
    assert _strip(seeds.metrics) == _strip(local.metrics) == _strip(rows.metrics)
    row_bytes = 4 * 4417 * (200 + 2 * 5)  # the population and the candidates of 2 streams, float32
    for s, r in zip(seeds.metrics, rows.metrics, strict=True):
        assert r["bytes_out"] >= row_bytes and s["bytes_out"] < r["bytes_out"] / 50
        assert s["bytes_in"] == r["bytes_in"]
    print("bytes out per generation: seeds", [m["bytes_out"] for m in seeds.metrics], "rows", row_bytes)


def _kill_once_task(tmp_path: Path, kill_at: int) -> KillOnce:
    return KillOnce(str(tmp_path / "killed"), kill_at, env="CartPole-v1", episodes=2, eval_episodes=2)


def test_a_killed_worker_has_its_shard_rerun(cluster: LocalCluster, tmp_path: Path) -> None:
    data = _data("openes", CARTPOLE, 200)
    local = _run(data, 4)
    with RayExecutor(cluster.address, workers=3) as executor:
        remote = _run(data, 4, executor, task=_kill_once_task(tmp_path, kill_at=2))
        assert len(executor.live()) == 2
    assert (tmp_path / "killed").exists()
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert [m["worker_failures"] for m in remote.metrics] == [0, 0, 1, 1]


@pytest.mark.slow
def test_a_killed_node_leaves_the_run_on_the_others(cluster: LocalCluster) -> None:
    extra = cluster.add_node(num_cpus=2)
    data = _data("ga", {"name": "xor"}, 640)
    local = _run(data, 4)
    with RayExecutor(cluster.address, workers=10) as executor:
        killed: list[int] = []

        def kill_node(line: dict[str, Any], strategy: Any) -> bool:
            if line["generation"] == 1:
                on_extra = set(executor.pids) & set(extra.pids())
                assert on_extra, "no actor was placed on the extra node"
                killed.extend(on_extra)
                extra.kill()
            return False

        remote = _run(data, 4, executor, callbacks=[kill_node])
        assert len(executor.live()) == 10 - len(killed)
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert remote.metrics[-1]["worker_failures"] == len(killed) >= 1


@pytest.mark.slow
def test_sixteen_actors_on_two_cores(cluster: LocalCluster, tmp_path: Path) -> None:
    data = _data("openes", CARTPOLE, 16 * 64)
    local = _run(data, 3)
    with RayExecutor(cluster.address, workers=16) as executor:
        remote = _run(data, 3, executor, task=_kill_once_task(tmp_path, kill_at=1))
        assert len(executor.live()) == 15
    assert _strip(remote.metrics) == _strip(local.metrics)
    assert [m["worker_failures"] for m in remote.metrics] == [0, 1, 1]


def _wait_until_dead(actor: Any, timeout: float = 60.0) -> None:
    """``ray.kill`` is asynchronous: on a loaded machine the actor can still run the next task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get(actor.pid.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the actor still answers {timeout} s after ray.kill")


def test_no_worker_left_stops_with_one_line(cluster: LocalCluster) -> None:
    data = _data("ga", {"name": "xor"}, 128)
    with RayExecutor(cluster.address, workers=1) as executor:

        def kill_all(line: dict[str, Any], strategy: Any) -> bool:
            for actor in executor._actors:
                ray.kill(actor)
                _wait_until_dead(actor)  # before generation 1 is sent to it
            return False

        with pytest.raises(WorkersLostError, match="generation 1: every Ray worker died") as info:
            _run(data, 3, executor, callbacks=[kill_all])
    assert "\n" not in str(info.value)


def test_connection_errors_are_one_line_within_seconds(cluster: LocalCluster, monkeypatch) -> None:
    if ray.is_initialized():
        ray.shutdown()
    t0 = time.monotonic()
    with pytest.raises(ConfigError, match="does not answer"):
        RayExecutor(f"127.0.0.1:{free_port()}", workers=1)
    with pytest.raises(ConfigError, match="need 64 CPUs and 0 GPUs; the Ray cluster .* has 16 CPUs"):
        RayExecutor(cluster.address, workers=64)
    with pytest.raises(ConfigError, match="need 2 CPUs and 2 GPUs"):
        RayExecutor(cluster.address, workers=2, num_gpus_per_actor=1)
    assert time.monotonic() - t0 < 30
    ray.shutdown()

    def mismatch(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Version mismatch: The cluster was started with:\n Ray: 2.9.0 ...")

    monkeypatch.setattr(ray, "init", mismatch)
    with pytest.raises(ConfigError, match="another Ray or Python version"):
        RayExecutor(cluster.address, workers=1)


def test_ray_not_installed_is_a_config_error(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'neuroevo\[ray\]'"):
        RayExecutor("auto", workers=1)


def _cli(args: list[str], cluster: LocalCluster, **kwargs: Any) -> subprocess.Popen:
    env = {**cluster.env, "PYTHONPATH": str(SRC)}
    return subprocess.Popen([sys.executable, "-m", "neuroevo", *args], env=env, **kwargs)


def _lines(run: Path) -> list[dict[str, Any]]:
    return _strip([json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()])


@pytest.mark.slow
def test_cli_driver_killed_resumes_on_ray_and_locally(cluster: LocalCluster, tmp_path: Path) -> None:
    """``neuroevo run --ray`` SIGKILLed mid-run; ``resume --ray`` then ``resume --local`` end
    bit-identical to an uninterrupted local run."""
    data = _data("openes", {**CARTPOLE, "episodes": 10}, 256)
    data["run"].update(generations=8, threads=1)
    config = tmp_path / "es.toml"
    config.write_text(tomli_w.dumps(data))
    full, run = tmp_path / "full", tmp_path / "ray"
    assert _cli(["run", str(config), "--out", str(full), "--quiet"], cluster).wait(300) == 0
    driver = _cli(["run", str(config), "--out", str(run), "--quiet", "--ray", cluster.address], cluster)
    deadline = time.monotonic() + 240
    while len(list(run.glob("checkpoints/*.json"))) < 2 and time.monotonic() < deadline:
        assert driver.poll() is None, "the run ended before it could be killed"
        time.sleep(0.05)
    driver.kill()  # SIGKILL
    driver.wait(30)
    assert len(_lines(run)) < 8
    resume = ["resume", str(run), "--quiet"]
    assert _cli([*resume, "--generations", "6", "--ray", cluster.address], cluster).wait(300) == 0
    assert _cli([*resume, "--generations", "8", "--local"], cluster).wait(300) == 0
    assert _lines(run) == _lines(full)


def test_cli_unreachable_cluster_is_exit_2_before_the_run_folder(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    data = _data("ga", {"name": "xor"}, 64)
    config = tmp_path / "ga.toml"
    config.write_text(tomli_w.dumps(data))
    out = tmp_path / "never"
    t0 = time.monotonic()
    proc = _cli(
        ["run", str(config), "--out", str(out), "--ray", f"127.0.0.1:{free_port()}"],
        cluster,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and err.count("\n") == 1 and "does not answer" in err, err
    assert time.monotonic() - t0 < 30
    assert not out.exists()
