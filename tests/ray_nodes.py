"""A multi-node Ray cluster on one machine, built from real ``ray start`` raylets.

The head has 0 CPUs, so all work lands on the worker nodes. A node can run in a private mount
namespace (``unshare -m``) with an empty tmpfs over chosen folders: it sees the rest of the disk
but not those folders, as a second machine would not see the first one's local disk. Each node
is its own process group with its own temp dir, so stopping the cluster never touches another
Ray instance on the machine (``ray stop`` would stop them all).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.servers import free_port

RAY = str(Path(sys.executable).with_name("ray"))


def can_hide_folders() -> bool:
    """Whether this machine lets us make private mount namespaces (root, or user namespaces)."""
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


class LocalCluster:
    """Head + worker nodes; ``address`` is what ``RAY_ADDRESS`` takes."""

    def __init__(self, log_dir: Path, env: dict[str, str]) -> None:
        # Ray's token authentication, with this cluster's own token: nodes and drivers share it
        # whatever ~/.ray/auth_token holds.
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        self.log_dir = log_dir
        self.env = {**os.environ, **env, **auth, "RAY_USAGE_STATS_ENABLED": "0"}
        self.env["RAY_raylet_start_wait_time_s"] = "180"  # a loaded two-core machine is slow
        self.env.pop("RAY_ADDRESS", None)
        # Short: Ray's Unix socket paths must stay under 108 characters.
        self.temp_dir = tempfile.mkdtemp(prefix="sffb-ray-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.processes: list[subprocess.Popen] = []

    def _launch(self, name: str, command: list[str], hidden: tuple[Path, ...] = ()) -> None:
        if hidden:
            mounts = " && ".join(f"mount -t tmpfs tmpfs {shlex.quote(str(p))}" for p in hidden)
            command = ["unshare", "-m", "sh", "-c", f"{mounts} && exec {shlex.join(command)}"]
        with (self.log_dir / f"ray-{name}.log").open("w") as sink:
            process = subprocess.Popen(
                command, env=self.env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.processes.append(process)

    def start(self, nodes: dict[str, tuple[int, tuple[Path, ...]]]) -> LocalCluster:
        """Start the head, then ``nodes``: name -> (CPUs, folders hidden from that node)."""
        common = ["--block", f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        head = [RAY, "start", "--head", f"--port={self.port}", "--num-cpus=0", "--num-gpus=0"]
        head += [
            "--node-name=head", "--include-dashboard=false",
            f"--dashboard-port={free_port()}", f"--ray-client-server-port={free_port()}",
        ]  # fmt: skip
        self._launch("head", head + common)
        self.wait_for_nodes(1)
        for count, (name, (cpus, hidden)) in enumerate(nodes.items(), start=2):
            worker = [RAY, "start", f"--address={self.address}", f"--num-cpus={cpus}"]
            worker += [f"--node-name={name}", "--num-gpus=0"]
            self._launch(name, worker + common, hidden)
            self.wait_for_nodes(count)  # one at a time: on two cores, together they time out
        return self

    def alive_nodes(self) -> list[str]:
        """Names of the alive nodes, asked through ``ray list nodes``-free means: a driver."""
        script = (
            "import ray; ray.init(log_to_driver=False); "
            "print(','.join(sorted(n['NodeName'] for n in ray.nodes() if n['Alive'])))"
        )
        result = subprocess.run(
            [sys.executable, "-c", script],
            env={**self.env, "RAY_ADDRESS": self.address},
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        lines = result.stdout.strip().splitlines()
        return lines[-1].split(",") if result.returncode == 0 and lines else []

    def wait_for_nodes(self, count: int, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.alive_nodes()) < count:
            dead = [p for p in self.processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f.read_text()[-1500:] for f in sorted(self.log_dir.glob("ray-*.log"))
                )
                raise RuntimeError(f"the local Ray cluster did not start:\n{logs}")
            time.sleep(1)

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=5)  # nothing to save: a test cluster's state is thrown away
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        _kill_matching(self.temp_dir)  # workers that left their node's process group
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _kill_matching(text: str) -> None:
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(text in part for part in process.info["cmdline"] or ()):
                process.kill()
