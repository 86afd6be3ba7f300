"""git, for builds: resolve a ref to a commit, fetch one commit shallowly. Every URL and ref
is checked first (binderq.domain.repos), and git runs with only the allowed protocols."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from binderq.domain.errors import FieldError, InvalidInput, RepositoryError
from binderq.domain.repos import address_problem, check_ref, check_repo

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SIZE_CHECK_EVERY = 0.2  # seconds between looks at how much a fetch has written
Resolver = Callable[[str], list[str]]


def _addresses(host: str) -> list[str]:
    return [info[4][0] for info in socket.getaddrinfo(host, None)]


class GitSource:
    """Resolve and fetch repositories with git, refusing what could attack the host."""

    def __init__(self, *, allow_local: bool, timeout: float = 60.0,
                 max_bytes: int = 500 * 1024**2, resolve_host: Resolver = _addresses) -> None:
        self.allow_local = allow_local
        self.timeout = timeout
        self.max_bytes = max_bytes
        self._resolve_host = resolve_host

    def resolve(self, repo: str, ref: str) -> str:
        """The commit that ref names in repo (a branch, a tag, HEAD, or a commit itself)."""
        self._check(repo, ref)
        if COMMIT.match(ref):
            return ref
        listing = self._git("ls-remote", "--", repo, ref, f"{ref}^{{}}")
        refs = {name: sha for sha, name in (line.split("\t", 1)
                                            for line in listing.splitlines() if "\t" in line)}
        for name in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if name in refs:
                return refs[name]
        raise RepositoryError(f"no branch or tag {ref!r} in {repo}", field="ref")

    def fetch(self, repo: str, commit: str, dest: Path) -> Path:
        """Check out one commit of repo into dest, shallowly; dest must not exist."""
        self._check(repo, commit)
        if not COMMIT.match(commit):
            raise RepositoryError(f"{commit!r} is not a commit id")
        dest.mkdir(parents=True)
        self._git("init", "--quiet", str(dest))
        self._git("-C", str(dest), "fetch", "--quiet", "--depth", "1", "--", repo, commit,
                  bound=dest)
        self._git("-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "--quiet",
                  "FETCH_HEAD")
        self._check_checkout(dest)
        return dest

    def _check(self, repo: str, ref: str) -> None:
        check_repo(repo, allow_local=self.allow_local)
        check_ref(ref)
        host = urlsplit(repo).hostname if "://" in repo else None
        if host and urlsplit(repo).scheme != "file":
            self._check_host(host)

    def _check_host(self, host: str) -> None:
        """What the name resolves to must not be this machine or a private network."""
        try:
            addresses = self._resolve_host(host)
        except OSError as error:
            raise RepositoryError(f"cannot resolve {host}: {error}", field="repo") from error
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%")[0]))
            if problem:
                raise InvalidInput("Build", errors=[FieldError(
                    "repo", "invalid", f"{host} resolves to {address}: {problem}")])

    def _check_checkout(self, dest: Path) -> None:
        root = dest.resolve()
        size = 0
        for path in dest.rglob("*"):
            if ".git" in path.relative_to(dest).parts:
                continue
            if path.is_symlink() and not _inside(path, root):
                raise RepositoryError(f"the symlink {path.relative_to(dest)} points outside "
                                      "the repository")
            if path.is_file() and not path.is_symlink():
                size += path.stat().st_size
            if size > self.max_bytes:
                raise RepositoryError(self._too_large())

    def _git(self, *args: str, bound: Path | None = None) -> str:
        """Run git; with bound, stop it once that folder outgrows the size limit (a fetch of
        a huge repository never fills the disk)."""
        command = ["git", *self._config(), *args]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            process = subprocess.Popen(command, stdout=out, stderr=err, env=_git_env(),
                                       stdin=subprocess.DEVNULL)
            try:
                self._wait(process, args, bound)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(
                errors="replace")
        if process.returncode != 0:
            detail = (stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise RepositoryError(f"git {_verb(args)} failed: {detail}")
        return stdout

    def _wait(self, process: subprocess.Popen, args: tuple[str, ...],
              bound: Path | None) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                process.wait(timeout=SIZE_CHECK_EVERY)
                return
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline:
                raise RepositoryError(f"git {args[0]} took longer than {self.timeout:g} s")
            if bound is not None and _folder_bytes(bound) > self.max_bytes:
                raise RepositoryError(self._too_large())

    def _too_large(self) -> str:
        return f"the repository is larger than the limit of {self.max_bytes // 1024**2} MiB"

    def _config(self) -> list[str]:
        allowed = ["https", "git", *(["file"] if self.allow_local else [])]
        config = ["protocol.allow=never", *(f"protocol.{p}.allow=always" for p in allowed),
                  "transfer.fsckObjects=true", "core.symlinks=true"]
        return [item for setting in config for item in ("-c", setting)]


def _verb(args: tuple[str, ...]) -> str:
    return next(arg for arg in args if not arg.startswith("-") and "/" not in arg)


def _git_env() -> dict[str, str]:
    """No prompts, no ssh, no system or user config: only what binderq says."""
    keep = {key: os.environ[key] for key in ("PATH", "LANG") if key in os.environ}
    return {**keep, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false",
            "GIT_SSH_COMMAND": "/bin/false", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull, "HOME": "/nonexistent"}


def _folder_bytes(folder: Path) -> int:
    """Bytes of the files under folder so far (files may vanish while git works)."""
    total = 0
    for parent, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def _inside(link: Path, root: Path) -> bool:
    try:
        link.resolve().relative_to(root)
        return True
    except ValueError:
        return False
