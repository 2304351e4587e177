"""A real Ray cluster on 127.0.0.1 for the tests: a head and extra nodes, each ``ray start
--block`` in a session of its own, so every process it starts can be found (same session id)
and killed by process id, even when a test fails. Never ``ray stop``: that would kill every
Ray process on the machine, other users' included."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_port_base(span: int = 200) -> int:
    """The start of ``span`` free ports below the kernel's ephemeral range, so a worker-port range
    never overlaps a component port drawn by ``free_port`` (those come from the ephemeral range)."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20000, low - span)
        try:
            for port in (base, base + span // 2, base + span - 1):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free worker-port range")


def session_pids(sid: int) -> list[int]:
    """Every process whose session id is ``sid`` (the ``ray start`` of one node and its children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6 of /proc/PID/stat: the session id
            pids.append(int(entry.name))
    return pids


class Node:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log
        self.pid = proc.pid

    def pids(self) -> list[int]:
        return session_pids(self.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM the node's processes, then SIGKILL whatever is left."""
        self.kill(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.kill(signal.SIGKILL)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


class LocalCluster:
    """``head(num_cpus)`` then ``add_node(num_cpus)``; ``address`` for ``RayExecutor``."""

    def __init__(self, pythonpath: str):
        self.tmp = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))  # short: Ray's socket paths
        self.env = {**os.environ, "PYTHONPATH": pythonpath, "RAY_AUTH_MODE": "disabled"}
        self.env.pop("RAY_ADDRESS", None)
        self.nodes: list[Node] = []
        self.address = ""

    def _start(self, args: list[str], name: str) -> Node:
        log = self.tmp / f"{name}.log"
        ports = [
            "--node-manager-port", str(free_port()),
            "--object-manager-port", str(free_port()),
            "--metrics-export-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port()),
            "--dashboard-agent-grpc-port", str(free_port()),
            "--dashboard-agent-listen-port", str(free_port()),
        ]  # fmt: skip
        base = worker_port_base()
        cmd = [RAY, "start", "--block", "--disable-usage-stats", "--node-ip-address", "127.0.0.1",
               "--object-store-memory", str(80 * 2**20), "--min-worker-port", str(base),
               "--max-worker-port", str(base + 200), *ports, *args]  # fmt: skip
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        node = Node(proc, log)
        self.nodes.append(node)
        return node

    def head(self, num_cpus: int) -> Node:
        port = free_port()
        self.address = f"127.0.0.1:{port}"
        node = self._start(
            ["--head", "--port", str(port), "--num-cpus", str(num_cpus), "--include-dashboard", "false",
             "--temp-dir", str(self.tmp / "ray")],
            "head",
        )  # fmt: skip
        self.wait_for_cpus(num_cpus)
        return node

    def add_node(self, num_cpus: int) -> Node:
        before = self.cpus()
        node = self._start(["--address", self.address, "--num-cpus", str(num_cpus)], f"node{len(self.nodes)}")
        self.wait_for_cpus(before + num_cpus)
        return node

    def cpus(self) -> float:
        host, port = self.address.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return 0.0
        out = subprocess.run(
            [sys.executable, "-c", _CPUS, self.address],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            return float(out.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return 0.0

    def wait_for_cpus(self, cpus: float, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(n.proc.poll() is not None for n in self.nodes):
                break
            if self.cpus() >= cpus:
                return
            time.sleep(0.5)
        logs = "\n".join(n.log.read_text()[-2000:] for n in self.nodes)
        raise RuntimeError(f"the local Ray cluster did not reach {cpus} CPUs:\n{logs}")

    def shutdown(self) -> None:
        for node in reversed(self.nodes):
            node.stop()
        self.nodes = []
        shutil.rmtree(self.tmp, ignore_errors=True)


_CPUS = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False)
print(ray.cluster_resources().get("CPU", 0))
"""


# -- tasks the workers import (this folder is on the cluster's PYTHONPATH) ---------------------------
from neuroevo.tasks.control.task import ControlTask  # noqa: E402


def kill_worker_once(marker: str, driver: int) -> None:
    """SIGKILL this process if it is a worker (not ``driver``) and the first to create ``marker``."""
    if os.getpid() == driver:
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


class KillOnce(ControlTask):
    """CartPole whose worker process SIGKILLs itself while evaluating generation ``kill_at``.

    Only one worker does, once: the first to create ``marker`` (an exclusive create). The
    driver never does (it only merges), so the run must re-run that shard elsewhere.
    """

    def __init__(self, marker: str, kill_at: int, **kwargs):
        super().__init__(**kwargs)
        self.marker, self.kill_at, self.driver = marker, kill_at, os.getpid()

    def evaluate_members(self, phenotype, population, generation=0, *, stream=0):
        if generation == self.kill_at:
            kill_worker_once(self.marker, self.driver)
        return super().evaluate_members(phenotype, population, generation, stream=stream)
