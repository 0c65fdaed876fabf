"""Ray as a cluster: a local Ray head started with ``ray start --head`` (its own ports and temp dir), a ``compress
--executor ray --ray-address`` against it, one Ray worker killed mid-search; the search still finishes every
evaluation. The head is stopped even when the test fails (by its own process, never ``ray stop``, which would stop
every Ray on the machine)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("ray")

BIN = Path(sys.executable).parent
BUDGET = 10


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free now on 127.0.0.1."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return ""


def parent_of(pid: int) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return None


def pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def processes_of(temp_dir: str) -> list[int]:
    """This head's processes (their command lines name its temp dir) and the workers its raylet started."""
    own = {pid for pid in pids() if temp_dir in cmdline(pid)}
    return sorted(own | {pid for pid in pids() if parent_of(pid) in own})


def busy_worker(temp_dir: str) -> int | None:
    """A worker of this head that is running an evaluation now (Ray titles it ``ray::_ray_job`` meanwhile)."""
    raylets = {pid for pid in pids() if temp_dir in cmdline(pid) and "raylet" in cmdline(pid)}
    for pid in pids():
        if parent_of(pid) in raylets and cmdline(pid).startswith("ray::_ray_job"):
            return pid
    return None


@dataclass(frozen=True)
class RayHead:
    address: str
    temp_dir: str
    env: dict[str, str]  # what a driver needs to join: the cluster's own auth token


@pytest.fixture
def ray_head() -> Iterator[RayHead]:
    """A Ray head on 127.0.0.1 with 2 CPUs and its own auth token (not ~/.ray's); stopped afterwards."""
    temp_dir = tempfile.mkdtemp(prefix="rayh", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    gcs, manager, objects, client, agent, agent_grpc, metrics, runtime_env, dashboard = free_ports(9)
    log = open(Path(temp_dir) / "head.log", "w")  # noqa: SIM115 (closed below)
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--num-cpus", "2", "--num-gpus", "0", "--temp-dir", temp_dir, "--include-dashboard", "false",
        "--disable-usage-stats", "--object-store-memory", str(100 * 2**20), "--node-manager-port", str(manager),
        "--object-manager-port", str(objects), "--ray-client-server-port", str(client),
        "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--metrics-export-port", str(metrics), "--runtime-env-agent-port", str(runtime_env),
        "--dashboard-port", str(dashboard), "--worker-port-list", ",".join(map(str, free_ports(8))),
    ]  # fmt: skip
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", gcs), timeout=1):
                break
            assert head.poll() is None, (Path(temp_dir) / "head.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the Ray head did not start within 90 s"
            time.sleep(0.5)
        time.sleep(2)  # the raylet registers after the GCS listens
        yield RayHead(f"127.0.0.1:{gcs}", temp_dir, env)
    finally:
        head.send_signal(signal.SIGTERM)  # ray start --block then stops its own node's processes, and only those
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        for pid in processes_of(temp_dir):  # anything of this head still alive, by pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # ~1-2 minutes: a Ray head, a search of 10 evaluations on 2 Ray workers, a final distillation
def test_a_search_on_a_ray_cluster_survives_a_killed_worker(
    ray_head: RayHead, tiny_teacher: Path, tmp_path: Path
) -> None:
    address, temp_dir = ray_head.address, ray_head.temp_dir
    run = tmp_path / "run"
    env = {**ray_head.env, "ARCHCOMPRESS_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    compress = subprocess.Popen(
        [str(BIN / "archcompress"), "compress", str(tiny_teacher), "--out", str(run), "--executor", "ray",
         "--ray-address", address, "--workers", "2", "--budget", str(BUDGET), "--epochs", "1", "--subset", "300",
         "--final-epochs", "1", "--seed", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    killed = None
    try:
        deadline = time.monotonic() + 240
        while compress.poll() is None and time.monotonic() < deadline:
            if killed is None:
                killed = busy_worker(temp_dir)
                if killed is not None:
                    os.kill(killed, signal.SIGKILL)  # mid-evaluation: Ray must run that task again elsewhere
            time.sleep(0.05)
        _, stderr = compress.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if compress.poll() is None:
            compress.kill()
            compress.wait()
    assert killed is not None, "no Ray worker was seen running an evaluation"
    assert compress.returncode == 0, stderr[-3000:]
    report = json.loads((run / "report.json").read_text())
    assert report["complete"] is True
    search = report["search"]
    assert search["evaluations"] == BUDGET  # every evaluation finished
    assert not any(status.startswith("failed") for status in search["statuses"]), search["statuses"]
    assert search["statuses"].get("ok", 0) >= 1
    assert (run / "student" / "model.pt").is_file()
    assert not Path(f"/proc/{killed}").exists() or "ray::" not in cmdline(killed)  # the worker did die
