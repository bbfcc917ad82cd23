"""A real two-node Ray cluster on this machine, for the Ray plugin's tests.

``ray start --head`` plus a second ``ray start --address`` node process with a
custom resource ``special``, so two raylets exist. Every port is a free one and
the cluster keeps its files in its own temp dir; each ``ray start`` runs in a
session of its own, and :meth:`RayCluster.stop` ends exactly those process
groups and the worker processes of this cluster's raylets (never a machine-wide
``ray stop``, which would end other people's clusters too).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from pyworkflow.testing.servers import free_port, wait_for

HERE = Path(__file__).parent
#: what every Ray process of the tests gets: no auth token file, no usage stats
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
#: the smallest object store Ray accepts (the tests pass small values)
OBJECT_STORE_BYTES = 80 * 1024 * 1024


def distinct_ports(count: int) -> list[int]:
    """``count`` free loopback ports, all different (held open together while chosen)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def ray_command() -> list[str]:
    """``ray`` of this interpreter: the cluster's worker processes run the tests' Python."""
    return [sys.executable, "-m", "ray.scripts.scripts"]


class RayCluster:
    """Two Ray nodes (1 CPU each; the second also has ``{"special": 1}``)."""

    def __init__(self, temp_dir: Path | None = None) -> None:
        self.temp_dir = temp_dir or Path(tempfile.mkdtemp(prefix="pwray-"))
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.sessions: list[int] = []  # process group ids of the ray start sessions
        self.start_seconds = 0.0
        self.nodes: dict[str, str] = {}

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYWORKFLOW_")}
        env.update(RAY_ENV)
        env["RAY_TMPDIR"] = str(self.temp_dir)
        # the workflows the tests start, importable by the Ray worker processes
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
        return env

    def _ports(self, head: bool) -> list[str]:
        """Ports Ray would otherwise take fixed defaults for (two nodes on one host)."""
        names = [
            "node-manager-port",
            "object-manager-port",
            "metrics-export-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
        ]
        if head:
            names.append("dashboard-port")
        ports = [p for p in distinct_ports(len(names) + 1) if p != self.port]
        return [f"--{name}={port}" for name, port in zip(names, ports, strict=False)]

    def _ray_start(self, args: list[str], log: Path, *, head: bool) -> None:
        common = [
            "--num-cpus=1",
            "--disable-usage-stats",
            f"--object-store-memory={OBJECT_STORE_BYTES}",
            *self._ports(head),
        ]
        with open(log, "w") as sink:
            proc = subprocess.Popen(
                [*ray_command(), "start", *args, *common],
                env=self.env(),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its daemons keep this process group
            )
        self.sessions.append(proc.pid)
        if proc.wait(timeout=120) != 0:
            raise AssertionError(f"ray start failed: {log.read_text()[-3000:]}")

    def start(self) -> None:
        began = time.monotonic()
        self._ray_start(
            [
                "--head",
                f"--port={self.port}",
                "--node-ip-address=127.0.0.1",
                "--include-dashboard=false",
                f"--temp-dir={self.temp_dir}",
            ],
            self.temp_dir / "head.log",
            head=True,
        )
        self._ray_start(
            [
                f"--address={self.address}",
                "--node-ip-address=127.0.0.1",
                f"--resources={json.dumps({'special': 1})}",
            ],
            self.temp_dir / "node2.log",
            head=False,
        )
        wait_for(lambda: len(self.raylets()) == 2, 60, "two raylets")
        self.start_seconds = time.monotonic() - began
        self.nodes = node_ids(self)

    # ----- processes -----

    def _processes(self) -> list[psutil.Process]:
        """Every process of this cluster's ``ray start`` sessions."""
        found = []
        for proc in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(proc.pid) in self.sessions:
                    found.append(proc)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    def raylets(self) -> list[psutil.Process]:
        found = []
        for proc in self._processes():
            try:
                if Path(proc.exe()).name == "raylet":
                    found.append(proc)
            except psutil.Error:
                continue
        return found

    def worker_processes(self) -> list[psutil.Process]:
        """The Ray worker processes (task runners) the raylets started, not their agents."""
        found = []
        for raylet in self.raylets():
            try:
                children = raylet.children()
            except psutil.Error:
                continue
            for child in children:
                try:
                    title = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                if "Agent" not in title:
                    found.append(child)
        return found

    def stop(self) -> None:
        """End this cluster's processes (SIGTERM, then SIGKILL), and its worker processes."""
        workers = self.worker_processes()
        for sig, grace in ((signal.SIGTERM, 2.0), (signal.SIGKILL, 10.0)):
            for pgid in self.sessions:
                try:
                    os.killpg(pgid, sig)
                except ProcessLookupError:
                    pass
            for proc in workers:
                try:
                    proc.send_signal(sig)
                except psutil.Error:
                    pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and (
                self._processes() or any(p.is_running() for p in workers)
            ):
                time.sleep(0.1)


NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
alive = [n for n in ray.nodes() if n["Alive"]]
print(json.dumps([{"id": n["NodeID"], "resources": n["Resources"]} for n in alive]))
"""


def node_ids(cluster: RayCluster) -> dict[str, str]:
    """``{"head": node id, "special": node id}``, asked of the cluster by a separate driver."""
    out = subprocess.run(
        [sys.executable, "-c", NODES_SCRIPT, cluster.address],
        env=cluster.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    nodes = json.loads(out.stdout.strip().splitlines()[-1])
    special = [n["id"] for n in nodes if "special" in n["resources"]]
    plain = [n["id"] for n in nodes if "special" not in n["resources"]]
    assert len(special) == 1 and len(plain) == 1, nodes
    return {"head": plain[0], "special": special[0]}


def disconnect_from_ray() -> None:
    """End this process's own Ray connection (the in-process executor's ``ray.init``).

    A driver left connected to a stopped cluster would log reconnection errors
    and, after Ray's GCS timeout, end the process: later test modules with it.
    """
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
