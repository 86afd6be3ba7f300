"""Who owns a binderq instance on a Docker engine (and a data directory): a lease that the
kernel releases when its holder dies, so a crashed `binderq up` never blocks the next one.

The lease is an flock(2) on a file; the file records the holder (pid, start time, ports) so
that a refused start can say who holds it. The file is never deleted: deleting a locked
file would let a second holder lock a new file of the same name.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class LeaseHeld(RuntimeError):
    """Another live process holds the lease; the message names it."""


@dataclass
class Lease:
    """An flock on path, held from acquire() until release() or this process's death."""

    path: Path
    what: str  # names the thing leased in messages: "instance 'binderq' on this Docker engine"
    _fd: int | None = None

    def acquire(self, **holder: Any) -> Lease:
        """Take the lease and record holder (pid and start time are added); LeaseHeld if a
        live process has it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: in a shared /tmp, a symlink planted at the name must not be followed.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LeaseHeld(f"{self.what} is owned by {describe_holder(read_holder(self.path))}"
                            ) from None
        self._fd = fd
        self.record(pid=os.getpid(), **holder)
        return self

    def record(self, **holder: Any) -> None:
        """Add to what the lease file says about its holder (e.g. ports, once known)."""
        if self._fd is None:
            raise RuntimeError("record() on a lease that is not held")
        text = json.dumps({**read_holder(self.path), **holder}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, text, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def instance_lease(engine_id: str, instance: str, lock_dir: str | None = None) -> Lease:
    """The lease of instance on the engine with engine_id (docker info's ID), in
    $XDG_RUNTIME_DIR (else the temporary directory): one file per engine and instance."""
    directory = Path(lock_dir or os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    name = f"binderq-{_safe(engine_id)}-{_safe(instance)}.lock"
    return Lease(directory / name, f"instance {instance!r} on this Docker engine")


def data_dir_lease(data_dir: Path) -> Lease:
    """The lease of a data directory: one Redis may write it at a time."""
    return Lease(data_dir / "lock", f"data directory {data_dir}")


def read_holder(path: Path) -> dict[str, Any]:
    """What the lease file says about its (last) holder; {} if nothing readable."""
    try:
        found = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def describe_holder(holder: dict[str, Any]) -> str:
    """'binderq up pid 1234 (ports 8000/8001) started at ...', from what is known."""
    text = f"binderq up pid {holder.get('pid', '?')}"
    if holder.get("ports"):
        text += f" (ports {'/'.join(str(port) for port in holder['ports'])})"
    if holder.get("started_at"):
        text += f" started at {holder['started_at']}"
    return text


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)
