"""A second, real Docker engine on this machine and a real image registry, for the tests of
many hosts (HOST.md: "A second Docker engine on the same machine", "A real image registry").

The engine has its own socket, data root, exec root, pid file, bridge (named br-bq..., so
deploy/firewall.sh's `br-+` jump covers it and the server networks it makes) and address
pool; it runs with --iptables=false --ip-forward=false --ip-masq=false like the first. Both
are started on demand and torn down completely: dockerd stopped by its pid, its network
namespaces unmounted, its bridge and data root deleted, the registry's storage deleted.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker

from binderq.processes import free_port, start_registry, stop_process, wait_until

# Far from the first engine's pools (172.17-31.x): no route of one engine shadows the other's.
BRIDGE_ADDRESS = "10.213.{n}.1/24"
ADDRESS_POOL = "base=10.214.0.0/16,size=27"


@dataclass
class Engine:
    """A dockerd of our own: where it listens and what it keeps."""

    root: Path
    bridge: str
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, timeout=30)

    def start(self) -> None:
        """Start (or start again) the engine on its data root; wait until it answers."""
        log = open(self.root / "dockerd.log", "ab")  # noqa: SIM115 (the child's)
        with log:
            self.process = subprocess.Popen(
                ["dockerd", "--data-root", str(self.root / "data"),
                 "--exec-root", str(self.root / "exec"),
                 "--pidfile", str(self.root / "docker.pid"), "-H", self.url,
                 "--storage-driver=overlay2", "--iptables=false", "--ip-forward=false",
                 "--ip-masq=false", "--bridge", self.bridge,
                 "--default-address-pool", ADDRESS_POOL],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self.answers, timeout=60, what=f"the second dockerd at {self.url}")
        assert self.process.poll() is None, (self.root / "dockerd.log").read_text()[-2000:]

    def answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            return True  # stop waiting: the assertion after says why
        try:
            return bool(self.client().ping())
        except Exception:
            return False

    def freeze(self) -> None:
        """The engine stops answering (SIGSTOP to dockerd), as a hung or unreachable host
        does; its containers run on. Not stop() and start(): a second dockerd started again
        on its data root deletes the first engine's docker0 bridge (tried: HOST.md warns)."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """The engine answers again (SIGCONT)."""
        self.process.send_signal(signal.SIGCONT)
        wait_until(self.answers, timeout=60, what=f"the second dockerd at {self.url} again")

    def stop(self) -> None:
        """Stop dockerd by its pid, as an engine that goes away (its containers stop)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen one must hear the SIGTERM
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None


@contextlib.contextmanager
def second_engine() -> Iterator[Engine]:
    """A second dockerd, gone completely afterwards."""
    root = Path(tempfile.mkdtemp(prefix="bq-d2-", dir="/tmp"))  # short: a socket path
    bridge = f"br-bq{secrets.token_hex(3)}"
    subnet = BRIDGE_ADDRESS.format(n=int(bridge[-2:], 16))
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    engine = Engine(root, bridge)
    try:
        subprocess.run(["ip", "addr", "add", subnet, "dev", bridge], check=True)
        subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
        engine.start()
        yield engine
    finally:
        engine.stop()
        _unmount_under(root)
        subprocess.run(["ip", "link", "del", bridge], check=False, capture_output=True)
        _delete_pool_bridges()
        shutil.rmtree(root, ignore_errors=True)


def _delete_pool_bridges() -> None:
    """Delete the bridges of the server networks the engine made from its address pool: a
    dockerd that stops leaves them (a host lost with its servers' networks still there)."""
    pool = ADDRESS_POOL.split(",")[0].removeprefix("base=").split(".")[:2]
    listing = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True,
                             text=True, check=True).stdout
    for line in listing.splitlines():
        interface, address = line.split()[1], line.split()[3]
        if address.split(".")[:2] == pool and interface.startswith("br-"):
            subprocess.run(["ip", "link", "del", interface], check=False, capture_output=True)


def _unmount_under(root: Path) -> None:
    """Unmount what dockerd left mounted under root (network namespaces, layers), deepest
    first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(root))), key=len,
                        reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextlib.contextmanager
def registry(logs_dir: Path) -> Iterator[str]:
    """Debian's docker-registry on a free loopback port ("127.0.0.1:PORT"), its storage
    deleted afterwards."""
    storage = Path(tempfile.mkdtemp(prefix="bq-registry-"))
    port = free_port()
    process = start_registry(port, storage=storage, config_dir=storage.parent,
                             log_file=logs_dir / "registry.log")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process)
        shutil.rmtree(storage, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            os.remove(storage.parent / f"registry-{port}.yml")
