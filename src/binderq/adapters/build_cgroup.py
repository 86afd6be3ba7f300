"""A pids limit for `docker build` steps: the classic builder's API takes memory and CPU
limits but no pids limit, so each build's step containers run under a cgroup of their own
(`cgroup_parent`) whose pids.max is the limit. Changes when how the engine places containers
in cgroups does (its cgroup driver and version)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")

# Seconds to wait for the engine to remove a build's last step cgroup before giving up (a
# later build's sweep takes what is left).
RELEASE_WAIT = 5.0
PREFIX = "binderq-build-"
# A build cgroup older than a build may live, plus this, belongs to no build any more.
DEFAULT_LIFETIME = 3600.0
SWEEP_MARGIN = 300.0


class BuildPids:
    """Makes a pids cgroup per build on an engine on this machine with the cgroupfs driver
    (cgroup v1 or v2); elsewhere builds run without one and this says so once."""

    def __init__(self, limit: int, docker_host: str = "") -> None:
        self.limit = limit
        self._local = not docker_host or docker_host.startswith("unix://")
        self._hierarchy: Path | None = None
        self._learnt = limit <= 0

    @contextlib.contextmanager
    def parent(self, client: docker.DockerClient, *,
               lifetime: float = DEFAULT_LIFETIME) -> Iterator[str | None]:
        """The cgroup_parent a build's steps run under (None: no limit here), removed after.
        lifetime: the longest a build may take; older build cgroups left by builds whose
        worker died (or whose last step the engine removed slowly) are swept first."""
        hierarchy = self._pids_hierarchy(client)
        if hierarchy is None:
            yield None
            return
        sweep_build_cgroups(older_than=lifetime + SWEEP_MARGIN)
        name = f"{PREFIX}{secrets.token_hex(6)}"
        try:
            (hierarchy / name).mkdir()
            (hierarchy / name / "pids.max").write_text(str(self.limit))
        except OSError as error:
            self._unsupported(f"cannot make the cgroup {hierarchy / name}: {error}")
            self._hierarchy = None
            yield None
            return
        try:
            yield f"/{name}"
        finally:
            # Off the build's path: the engine removes the last step's cgroup a moment
            # after the build has answered, and the build need not wait for that.
            threading.Thread(target=_release, args=(name,), daemon=True,
                             name=f"release-{name}").start()

    def _pids_hierarchy(self, client: docker.DockerClient) -> Path | None:
        if not self._learnt:
            self._learnt = True
            info = client.info()
            driver, version = info.get("CgroupDriver", ""), str(info.get("CgroupVersion", "1"))
            if not self._local:
                self._unsupported("the engine is not on this machine")
            elif driver != "cgroupfs":
                self._unsupported(f"the engine's cgroup driver is {driver}, not cgroupfs")
            elif version == "2":
                self._hierarchy = CGROUP_ROOT
            else:
                self._hierarchy = CGROUP_ROOT / "pids"
        return self._hierarchy

    @staticmethod
    def _unsupported(why: str) -> None:
        log.warning("build steps run without a pids limit: %s (BINDERQ_BUILD_PIDS; see "
                    "docs/security.md)", why)


def _release(name: str) -> None:
    """Remove the build's cgroup in every hierarchy the engine made it in (cgroup v1 makes
    one per controller), once its step containers are gone."""
    deadline = time.monotonic() + RELEASE_WAIT
    for path in sorted(CGROUP_ROOT.glob(f"*/{name}")) + [CGROUP_ROOT / name]:
        while path.exists():
            try:
                path.rmdir()
            except OSError as error:
                if time.monotonic() > deadline:
                    log.warning("build cgroup %s is left: %s", path, error)
                    break
                time.sleep(0.1)


def sweep_build_cgroups(*, older_than: float) -> int:
    """Remove the build cgroups last changed more than older_than seconds ago, in every
    hierarchy; one still in use (a step's container in it) cannot be removed and stays.
    How many went."""
    now, removed = time.time(), 0
    for path in [*CGROUP_ROOT.glob(f"*/{PREFIX}*"), *CGROUP_ROOT.glob(f"{PREFIX}*")]:
        try:
            if now - path.stat().st_mtime >= older_than:
                path.rmdir()
                removed += 1
        except OSError:  # in use, or gone meanwhile
            continue
    return removed
