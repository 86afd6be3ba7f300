"""Which repository URLs and refs binderq will hand to git, and which addresses git may
connect to. Pure: decided before any git process starts, so a hostile URL or ref never
reaches one."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from binderq.domain.errors import FieldError, InvalidInput

MAX_REPO_LENGTH = 2048
MAX_REF_LENGTH = 255
REMOTE_SCHEMES = ("https", "git")
# With BINDERQ_ALLOW_LOCAL_REPOS: paths, file:// and servers on this machine (tests).
LOCAL_SCHEMES = ("file",)
LOOPBACK_SCHEMES = ("http",)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# What git check-ref-format forbids, plus what only an attack needs: a leading '-' (an
# option), '..' (ranges), '@{' (reflog), control characters and whitespace.
_BAD_REF = re.compile(r"(^-)|(\.\.)|(@\{)|([\x00-\x20\x7f~^:?*\[\\])|(/\.)|(\.lock$)|(/$)|(^/)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\s]")
# A URL's authority as binderq accepts it: a host name or an IP literal, and a port. No
# user name or password (git would send them, and binderq would store, list and label them),
# no percent-encoding or backslashes (where URL parsers disagree about the host), no
# trailing dot (the name git connects to must be the very name whose address was checked).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_AUTHORITY = re.compile(rf"^(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{{1,5}})?$")
# A last label that is a number: 2130706433, 127.1 or 0x7f.1, which resolvers read as an
# address in an unusual form.
_NUMERIC_NAME = re.compile(r"(^|\.)(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


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
    allowed = (*REMOTE_SCHEMES, *(LOOPBACK_SCHEMES if allow_local else ()))
    if scheme not in allowed:
        return f"only {' and '.join(s + '://' for s in REMOTE_SCHEMES)} repositories"
    if "@" in parts.netloc:
        return ("a repository URL may not hold a user name or password: binderq fetches "
                "public repositories only")
    if not _AUTHORITY.match(parts.netloc):
        return "the repository URL's host is not a host name or an IP address"
    try:
        parts.port  # noqa: B018 -- urlsplit checks the port's range as it reads it
    except ValueError:
        return "the repository URL's port is not a port number"
    return host_problem(parts.hostname or "", allow_local=allow_local)


def host_problem(host: str, *, allow_local: bool = False) -> str | None:
    """Why git must not be given a URL naming host, or None (a name is checked again,
    by what it resolves to, before git connects)."""
    name = host.lower()
    if not name or name.startswith("-"):
        return "the repository URL names no host"
    if name in ("localhost", "localhost.localdomain") or name.endswith(".localhost"):
        return None if allow_local else "repositories on this machine are not allowed"
    try:
        address = ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        if _NUMERIC_NAME.search(name):
            return "write the host's IP address in its usual form, or use its name"
        return None  # a name: the git adapter checks what it resolves to
    return address_problem(address, allow_loopback=allow_local)


# Not globally routable, whatever this Python's tables say: NAT64 for local use (RFC 8215),
# the deprecated 6to4 relay anycast, IPv4-compatible and -translated IPv6, Teredo (which
# tunnels to an IPv4 address of its own choosing).
_NEVER = tuple(ipaddress.ip_network(net) for net in (
    "64:ff9b:1::/48", "192.88.99.0/24", "::/96", "::ffff:0:0:0/96", "2001::/32"))
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_problem(address: Address, *, allow_loopback: bool = False) -> str | None:
    """Why git must not connect to address, or None: only globally routable addresses
    pass, and an IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4) is judged by
    the IPv4 address it leads to."""
    inner = embedded_ipv4(address)
    if inner is not None:
        problem = address_problem(inner, allow_loopback=allow_loopback)
        return f"{problem} ({address} leads to {inner})" if problem else None
    if address.is_loopback:
        return None if allow_loopback else "repositories on this machine are not allowed"
    if address.is_unspecified:
        return "repositories on this machine are not allowed"
    if address.is_link_local:
        return "link-local addresses (such as cloud metadata services) are not allowed"
    if address in _SHARED:
        return ("shared address space (100.64.0.0/10, carrier-grade NAT and some clouds' "
                "metadata services) is not allowed")
    if (not address.is_global or address.is_multicast
            or any(address in net for net in _NEVER if net.version == address.version)):
        return "only globally routable addresses are allowed (not private or reserved ones)"
    return None


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to: IPv4-mapped, NAT64 (64:ff9b::/96) or 6to4."""
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour
