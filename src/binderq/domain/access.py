"""Who may do what: the caller's roles and the rules every door applies. Pure: the doors
find out who is calling (api/auth.py); these functions decide, and raise Unauthorized (no
or bad credentials) or Forbidden (a known caller without the right)."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Collection
from dataclasses import dataclass

from binderq.domain.errors import Conflict, Forbidden, Unauthorized
from binderq.domain.tokens import is_server_token

SCOPES = ("launch", "build")
LAUNCH_AUTH_OPEN = "open"


@dataclass(frozen=True)
class Caller:
    """The operator, a user token with scopes, an unknown token, or anyone (no token)."""

    token: str = ""
    is_operator: bool = False
    scopes: frozenset[str] = frozenset()
    # The client's address, as trusted proxies reported it (see api/auth.py).
    address: str = ""

    @property
    def anonymous(self) -> bool:
        return not self.token

    @property
    def client(self) -> str:
        """Who this caller is for ownership and fair shares: its token when it has one
        (hashed, never the token itself), otherwise its address."""
        return client_key(self.token, self.address, is_operator=self.is_operator)

    @property
    def known(self) -> bool:
        """The operator or an issued user token (a server token opens only its server)."""
        return self.is_operator or bool(self.scopes)

    def may(self, scope: str) -> bool:
        return self.is_operator or scope in self.scopes


OPERATOR_CLIENT = "operator"
_ADDRESS_PREFIX = "addr:"
_TOKEN_PREFIX = "token:"


def client_key(token: str, address: str, *, is_operator: bool = False) -> str:
    """"operator", "token:<hash>" or "addr:<address>": the key that owns builds and counts
    against a client's fair share."""
    if is_operator:
        return OPERATOR_CLIENT
    if token:
        return _TOKEN_PREFIX + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:24]
    return _ADDRESS_PREFIX + _network_of(address)


def _network_of(address: str) -> str:
    """An IPv4 address as it is; an IPv6 one as its /64, which one subscriber holds whole
    (so rotating through it makes no new client)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def is_anonymous_client(client: str) -> bool:
    """Whether a client key names an address (a caller without a token)."""
    return client.startswith(_ADDRESS_PREFIX)


def require_operator(caller: Caller, what: str = "This call") -> None:
    if caller.anonymous:
        raise Unauthorized("Requires authentication: an operator token")
    if not caller.known:
        raise Unauthorized("Bad credentials")
    if not caller.is_operator:
        raise Forbidden(f"{what} needs an operator token")


def require_staging_right(caller: Caller) -> None:
    """Staging is the operator's, wherever it is asked: a staging names what every reader
    launches (the operator's public ones included), mounts volumes, runs services and keeps a
    pool. A build request's `staging` is staging too."""
    require_operator(caller, "Staging a build (`staging` in a build request)")


def may_read_build(caller: Caller, readers: Collection[str]) -> bool:
    """The operator reads every build; anyone else only the builds they asked for (readers:
    the clients that asked). The others do not exist for them (404, not 403)."""
    return caller.is_operator or caller.client in readers


def require_cancel_right(caller: Caller, readers: Collection[str]) -> None:
    """The operator cancels any build; a client only one that nobody else asked for too: a
    shared build goes on for the others (Conflict). Assumes may_read_build."""
    if not caller.is_operator and set(readers) - {caller.client}:
        raise Conflict("Build", "other requests wait for this build too, so it goes on; "
                                "only the operator can cancel it")


def require_scope(caller: Caller, scope: str) -> None:
    if caller.anonymous:
        raise Unauthorized(f"Requires authentication: a token with the {scope!r} scope")
    if not caller.known:
        raise Unauthorized("Bad credentials")
    if not caller.may(scope):
        raise Forbidden(f"This token lacks the {scope!r} scope")


def require_known_token(caller: Caller) -> None:
    """A token that was presented must be valid, even where none is needed (as GitHub does)."""
    if not caller.anonymous and not caller.known:
        raise Unauthorized("Bad credentials")


def require_launch_right(caller: Caller, *, public: bool, launch_auth: str) -> None:
    """The one rule for launching, at every door: a public staging launches freely under
    open launch auth (a token, if presented, must be valid); anything else needs the
    launch scope."""
    if public and launch_auth == LAUNCH_AUTH_OPEN:
        require_known_token(caller)
    else:
        require_scope(caller, "launch")


def require_build_right(caller: Caller, *, door_is_open: bool) -> None:
    """Building needs the build scope, except where a door builds for anyone (the BinderHub
    door under open launch auth, as mybinder does)."""
    if door_is_open:
        require_known_token(caller)
    else:
        require_scope(caller, "build")


def require_operator_or_server_token(caller: Caller, secret_key: str, server_id: str) -> None:
    """The operator, or whoever holds the server's own token."""
    if caller.is_operator:
        return
    if caller.anonymous:
        raise Unauthorized("Requires authentication: an operator token or the server's token")
    if not is_server_token(secret_key, server_id, caller.token):
        raise Unauthorized("Bad credentials")
