"""Which repository URLs and refs binderq will hand to git. Pure: decided before any git
process starts, so a hostile URL or ref never reaches one."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from binderq.domain.errors import FieldError, InvalidInput

MAX_REPO_LENGTH = 2048
MAX_REF_LENGTH = 255
REMOTE_SCHEMES = ("https", "git")
LOCAL_SCHEMES = ("file",)

# What git check-ref-format forbids, plus what only an attack needs: a leading '-' (an
# option), '..' (ranges), '@{' (reflog), control characters and whitespace.
_BAD_REF = re.compile(r"(^-)|(\.\.)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|(/\.)|(\.lock$)|(/$)|(^/)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")


def check_repo(url: str, *, allow_local: bool) -> str:
    """The repository URL if git may fetch it; InvalidInput saying why not otherwise."""
    problem = _repo_problem(url, allow_local=allow_local)
    if problem:
        raise InvalidInput("Build", errors=[FieldError("repo", "invalid", problem)])
    return url


def check_ref(ref: str) -> str:
    """The ref if it is a branch, tag or commit name git may be given; else InvalidInput."""
    if not ref or len(ref) > MAX_REF_LENGTH or _BAD_REF.search(ref):
        raise InvalidInput("Build", errors=[FieldError(
            "ref", "invalid", "a branch, tag or commit name (no leading '-', no '..', "
                              f"no spaces or control characters, at most {MAX_REF_LENGTH})")])
    return ref


def _repo_problem(url: str, *, allow_local: bool) -> str | None:
    if not url or len(url) > MAX_REPO_LENGTH:
        return f"a repository URL of at most {MAX_REPO_LENGTH} characters"
    if "::" in url.split("/", 1)[0]:
        return "git remote helpers (such as ext::) are not allowed"
    if url.startswith("-") or _CONTROL.search(url) or "--upload-pack" in url:
        return "not a repository URL (it looks like a git option)"
    if url.startswith("/"):
        return None if allow_local else "local paths are not allowed"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in LOCAL_SCHEMES:
        return None if allow_local else "file:// repositories are not allowed"
    if scheme not in REMOTE_SCHEMES:
        return f"only {' and '.join(s + '://' for s in REMOTE_SCHEMES)} repositories"
    return _host_problem(parts.hostname or "")


def _host_problem(host: str) -> str | None:
    if not host or host.startswith("-"):
        return "the repository URL names no host"
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(
            ".localhost"):
        return "repositories on this machine are not allowed"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None  # a name: the git adapter checks what it resolves to
    return address_problem(address)


def address_problem(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why git must not connect to address (loopback, link-local, private ...), or None."""
    if address.is_loopback or address.is_unspecified:
        return "repositories on this machine are not allowed"
    if address.is_link_local:
        return "link-local addresses (such as cloud metadata services) are not allowed"
    if address.is_private or address.is_reserved or address.is_multicast:
        return "private and reserved addresses are not allowed"
    return None
