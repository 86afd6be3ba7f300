"""Fair shares: what one client may hold at once, and the refusals that name the limit. Pure.

A client is the key of domain/access.Caller.client: a hashed token, else the address as
trusted proxies report it. The operator is exempt from every per-client limit (its launches
and builds are still recorded as its own, and still count against a staging's and the
service's limits). The rates (launches per minute, build requests per hour) are api/limits.py's;
the counts here (servers at once, builds in progress) live in Redis with the admission that
the global limits already make, in one step.
"""

from __future__ import annotations

from dataclasses import dataclass

from binderq.domain.access import Caller
from binderq.domain.errors import QuotaExceeded
from binderq.domain.models import ServerStatus

# The servers a client holds: while one is stopping it holds nothing the client can use, so
# its slot is free again (the service's own limit counts it until it is gone). A launch waiting
# in the queue holds its client's slot already, so one client cannot fill the queue.
CLIENT_SERVER_STATUSES = (ServerStatus.QUEUED, ServerStatus.PENDING, ServerStatus.STARTING,
                          ServerStatus.READY)
# Seconds a refused client is told to wait: a server frees its slot when stopped or culled,
# a build when it finishes.
SERVERS_RETRY_AFTER = 30
BUILDS_RETRY_AFTER = 60


@dataclass(frozen=True)
class ClientShare:
    """Whom a launch or build is for (the record keeps it) and what that client may hold:
    0 is no limit (the operator's, and that of work nobody asked for, such as a pool's)."""

    client: str = ""
    max_servers: int = 0
    max_builds: int = 0


NO_SHARE = ClientShare()


def share_of(caller: Caller, *, max_servers: int, max_builds: int) -> ClientShare:
    """The caller's share: the operator is exempt; everyone else has the configured one."""
    if caller.is_operator:
        return ClientShare(caller.client)
    return ClientShare(caller.client, max_servers=max_servers, max_builds=max_builds)


def client_servers_quota(limit: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        resource="Server", field="client_max_servers", limit=limit, used=used,
        retry_after=SERVERS_RETRY_AFTER,
        message=f"too many servers at once for one client: you run {used} of the {limit} "
                "allowed (BINDERQ_CLIENT_MAX_SERVERS); stop one (DELETE /api/servers/{id}) "
                "or wait until one is culled")


def staging_servers_quota(staging: str, limit: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        resource="Staging", field="max_servers", limit=limit, used=used, retry_after=10,
        message=f"staging {staging!r} runs {used} of its {limit} servers (its max_servers); "
                "try again later")


def client_builds_quota(limit: int, used: int) -> QuotaExceeded:
    return QuotaExceeded(
        resource="Build", field="client_max_builds", limit=limit, used=used,
        retry_after=BUILDS_RETRY_AFTER,
        message=f"too many builds in progress for one client: {used} of the {limit} "
                "allowed (BINDERQ_CLIENT_MAX_BUILDS); wait until one finishes")
