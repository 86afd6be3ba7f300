"""git, for builds: resolve a ref to a commit, fetch one commit shallowly. Every URL and ref
is checked first (binderq.domain.repos); git runs with only the allowed protocols, follows no
redirect, and connects to the very address that was checked (no second DNS lookup)."""

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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from binderq.domain.errors import FieldError, InvalidInput, RepositoryError
from binderq.domain.repos import address_problem, check_ref, check_repo

COMMIT = re.compile(r"^[0-9a-f]{40}$")
SIZE_CHECK_EVERY = 0.2  # seconds between looks at how much a fetch has written
Resolver = Callable[[str], list[str]]


def _addresses(host: str) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in socket.getaddrinfo(host, None)))


DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418}
# Checked out byte for byte as committed: no filter, no line-ending or encoding conversion,
# no $Id$ expansion, so the files written are the blob sizes that were checked (ident or
# working-tree-encoding would multiply them). $GIT_DIR/info/attributes outranks the
# repository's own .gitattributes.
NO_CONVERSION = "* -text -ident -filter -working-tree-encoding\n"
MiB = 1024**2


@dataclass(frozen=True)
class Pinned:
    """How git reaches a checked repository: the URL to give it and the settings that make
    it connect to the checked addresses only."""

    url: str
    config: tuple[str, ...] = ()


def pinned(url: str, addresses: list[str]) -> Pinned:
    """url, pinned to addresses (those its host name resolved to, all checked): curl, for
    http(s), is told the addresses (http.curloptResolve), so it never looks the name up
    again; for git://, which git connects to itself, the URL names the first address."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), parts.hostname
    if not addresses or not host or scheme not in DEFAULT_PORTS or _is_address(host):
        return Pinned(url)
    port = parts.port or DEFAULT_PORTS[scheme]
    literals = [f"[{a}]" if ":" in a else a for a in addresses]
    if scheme == "git":
        return Pinned(parts._replace(netloc=f"{literals[0]}:{port}").geturl())
    return Pinned(url, ("-c", f"http.curloptResolve={host}:{port}:{','.join(literals)}"))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


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
        remote = self._check(repo, ref)
        if COMMIT.match(ref):
            return ref
        listing = self._git(*remote.config, "ls-remote", "--", remote.url, ref, f"{ref}^{{}}")
        refs = {name: sha for sha, name in (line.split("\t", 1)
                                            for line in listing.splitlines() if "\t" in line)}
        for name in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
            if name in refs:
                return refs[name]
        raise RepositoryError(f"no branch or tag {ref!r} in {repo}", field="ref")

    def fetch(self, repo: str, commit: str, dest: Path) -> Path:
        """Check out one commit of repo into dest, shallowly; dest must not exist. The
        fetched objects are bounded as they arrive, the files they make before any is
        written."""
        remote = self._check(repo, commit)
        if not COMMIT.match(commit):
            raise RepositoryError(f"{commit!r} is not a commit id")
        dest.mkdir(parents=True)
        self._git("init", "--quiet", str(dest))
        (dest / ".git" / "info").mkdir(exist_ok=True)
        (dest / ".git" / "info" / "attributes").write_text(NO_CONVERSION)
        self._git(*remote.config, "-C", str(dest), "fetch", "--quiet", "--depth", "1", "--",
                  remote.url, commit, bound=dest)
        self._check_files_size(dest)
        self._git("-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "--quiet",
                  "FETCH_HEAD")
        self._check_checkout(dest)
        return dest

    def _check(self, repo: str, ref: str) -> Pinned:
        check_repo(repo, allow_local=self.allow_local)
        check_ref(ref)
        host = urlsplit(repo).hostname if "://" in repo else None
        if not host or urlsplit(repo).scheme == "file" or _is_address(host):
            return Pinned(repo)  # an address in the URL was checked with it
        return pinned(repo, self._check_host(host))

    def _check_host(self, host: str) -> list[str]:
        """What the name resolves to, each address checked: not this machine, not a
        private network, nothing but globally routable addresses."""
        try:
            addresses = self._resolve_host(host)
        except OSError as error:
            raise RepositoryError(f"cannot resolve {host}: {error}", field="repo") from error
        if not addresses:
            raise RepositoryError(f"cannot resolve {host}: no address", field="repo")
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%")[0]),
                                      allow_loopback=self.allow_local)
            if problem:
                raise InvalidInput("Build", errors=[FieldError(
                    "repo", "invalid", f"{host} resolves to {address}: {problem}")])
        return addresses

    def _check_files_size(self, dest: Path) -> None:
        """Refuse, before checkout, a commit whose files add up to more than the limit (a
        small pack can hold a huge, highly compressible file)."""
        listing = self._git("-C", str(dest), "ls-tree", "-r", "-l", "-z", "--full-tree",
                            "FETCH_HEAD")
        size = sum(int(fields[3]) for fields in (entry.split("\t", 1)[0].split()
                                                 for entry in listing.split("\0") if entry)
                   if fields[1] == "blob")
        if size > self.max_bytes:
            raise RepositoryError(f"the repository's files are {_mib(size)} MiB, over the "
                                  f"{_mib(self.max_bytes)} MiB limit")

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
                raise RepositoryError(f"git {_verb(args)} took longer than {self.timeout:g} s")
            if bound is not None and _folder_bytes(bound) > self.max_bytes:
                raise RepositoryError(self._too_large())

    def _too_large(self) -> str:
        return f"the repository is larger than the limit of {_mib(self.max_bytes)} MiB"

    def _config(self) -> list[str]:
        allowed = ["https", "git", *(["file", "http"] if self.allow_local else [])]
        config = ["protocol.allow=never", *(f"protocol.{p}.allow=always" for p in allowed),
                  "transfer.fsckObjects=true", "core.symlinks=true",
                  "http.followRedirects=false"]
        return [item for setting in config for item in ("-c", setting)]


def _verb(args: tuple[str, ...]) -> str:
    return next(arg for arg in args if not arg.startswith("-") and "/" not in arg
                and "=" not in arg)


def _mib(size: int) -> str:
    return f"{round(size / MiB, 1):g}"


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
