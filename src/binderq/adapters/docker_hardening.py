"""How a server's containers are locked down on the Docker engine: the host config every
notebook and sidecar gets (non-root user, no capabilities, no new privileges, limits, named
volumes only) and whether the engine can cap the writable layer. Changes when what a
container may do does; what to run as is decided in domain/hardening.py."""

from __future__ import annotations

import logging
from typing import Any

import docker
import docker.errors

from binderq.adapters.docker_engine import short
from binderq.domain.errors import LaunchFailed
from binderq.domain.hardening import home_tmpfs_options, is_named_volume, run_as
from binderq.domain.spec import ContainerSpec

log = logging.getLogger(__name__)

# A non-root notebook needs no capability at all (checked: Notebook 6 and its kernels run).
CAP_DROP = ["ALL"]
SECURITY_OPT = ["no-new-privileges"]

# Storage drivers whose containers accept --storage-opt size= (overlay2 only on xfs with
# the pquota mount option, which `docker info` does not show: tried, and remembered).
_SIZED_DRIVERS = {"devicemapper", "btrfs", "zfs", "windowsfilter"}


def hardened_host_config(api: Any, spec: ContainerSpec, *, network: str,
                         ports: dict[str, tuple[str, None]],
                         disk: str) -> dict[str, Any]:
    """The host config of one server container; LaunchFailed for a mount that is not a
    named volume."""
    for source in spec.volumes:
        if not is_named_volume(source):
            raise LaunchFailed(f"container {spec.name} may mount named volumes only, not "
                               f"{source!r}")
    image = api.inspect_image(spec.image)
    config = image.get("Config") or {}
    account = run_as(config.get("User") or "", config.get("WorkingDir") or "", spec.uid)
    tmpfs = ({account.home: home_tmpfs_options(spec.uid, spec.mem_limit)}
             if account.home else None)
    host_config = api.create_host_config(
        mem_limit=spec.mem_limit,
        memswap_limit=spec.mem_limit,  # no swap beyond the memory limit
        nano_cpus=spec.nano_cpus,
        pids_limit=spec.pids_limit,
        port_bindings=ports,
        binds=spec.volumes or None,
        tmpfs=tmpfs,
        network_mode=network,
        cap_drop=CAP_DROP,
        security_opt=SECURITY_OPT,
        privileged=False,
        init=True,
        storage_opt={"size": disk} if disk else None,
    )
    return {"host_config": host_config, "user": account.user,
            "working_dir": account.workdir, "environment": {**spec.env, **account.env}}


class DiskLimit:
    """Whether this engine caps a container's writable layer; learnt once per process."""

    def __init__(self, size: str) -> None:
        self.size = size
        self._supported: bool | None = None if size else False

    @property
    def supported(self) -> bool | None:
        """Whether the engine caps the writable layer (None: not learnt yet)."""
        return self._supported

    def applies(self, client: docker.DockerClient) -> str:
        """The size to ask for, or "" when the engine cannot limit it."""
        if self._supported is None:
            info = client.info()
            driver = info.get("Driver", "")
            backing = dict(info.get("DriverStatus") or []).get("Backing Filesystem", "")
            self._supported = driver in _SIZED_DRIVERS or (
                driver == "overlay2" and backing == "xfs")
            if not self._supported:
                self._unsupported(f"{driver} on {backing or 'an unknown file system'}")
        return self.size if self._supported else ""

    def refused(self, error: docker.errors.APIError) -> bool:
        """Whether the engine refused the size limit itself (then it is dropped for good)."""
        if self._supported and "storage-opt" in short(error):
            self._supported = False
            self._unsupported(short(error))
            return True
        return False

    @staticmethod
    def _unsupported(why: str) -> None:
        log.warning("the Docker engine cannot limit a container's writable layer (%s); "
                    "BINDERQ_SERVER_DISK is not applied (docs/security.md)", why)
