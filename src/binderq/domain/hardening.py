"""How a container is locked down, decided from the image's own USER and the operator's uid:
who it runs as, where its HOME is, and whether a volume source may be mounted. Pure: no
Docker here; the adapters apply what these functions decide."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Where a container whose image has no non-root user gets its own small, writable HOME.
SCRATCH_HOME = "/home/binderq"

# Users an image names when it has no non-root user: Docker runs those as root.
_ROOT_USERS = frozenset({"", "root", "0"})

# A named volume, as Docker spells one; anything else (a path, the Docker socket) is a bind.
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class RunAs:
    """Who a container runs as: never root."""

    user: str  # "uid:gid", numeric, so that a user *named* anything can never be uid 0
    home: str | None = None  # a tmpfs HOME to mount (images with no non-root user)
    workdir: str | None = None  # where to start instead of the image's WORKDIR

    @property
    def env(self) -> dict[str, str]:
        return {"HOME": self.home} if self.home else {}


def image_runs_as_root(image_user: str) -> bool:
    """Whether an image's USER ("", "root", "0", "root:staff", "0:0" ...) is root."""
    return image_user.split(":", 1)[0].strip() in _ROOT_USERS


def run_as(image_user: str, image_workdir: str, uid: int) -> RunAs:
    """Every container runs as uid:uid, whatever the image's USER. An image with a non-root
    user must give it that uid (as mybinder asks: 1000), so that its HOME is its own. An
    image with none gets a tmpfs HOME owned by uid, and starts there when its WORKDIR is
    root's (which uid could not enter) or the file system's top."""
    if uid <= 0:
        raise ValueError("containers never run as root: the uid must be above 0")
    user = f"{uid}:{uid}"
    if not image_runs_as_root(image_user):
        return RunAs(user=user)
    workdir = image_workdir.rstrip("/")
    starts_home = workdir in ("", "/root") or workdir.startswith("/root/")
    return RunAs(user=user, home=SCRATCH_HOME, workdir=SCRATCH_HOME if starts_home else None)


def home_tmpfs_options(uid: int, mem_limit: int) -> str:
    """Mount options of a scratch HOME: owned by uid, executable (pip --user puts scripts
    there), at most half the container's memory (tmpfs counts against it anyway)."""
    size = max(mem_limit // 2, 16 * 1024**2)
    return f"rw,exec,nosuid,nodev,size={size},mode=0700,uid={uid},gid={uid}"


def is_named_volume(source: str) -> bool:
    """Whether a mount source is a Docker named volume: never a host path, never the
    Docker socket (defence in depth: stagings only name volumes)."""
    return bool(_VOLUME_NAME.match(source)) and "docker.sock" not in source
