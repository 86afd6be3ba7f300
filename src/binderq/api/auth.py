"""Who is calling this request: the token it presents, looked up. The rules of who may do
what are domain/access.py's, the same for every door."""

from __future__ import annotations

from flask import request

from binderq.adapters.redis_store import RedisStore
from binderq.domain.access import Caller
from binderq.domain.tokens import hash_token, tokens_match
from binderq.settings import Settings


def presented_token(*, in_query: bool = False) -> str:
    """The token of `Authorization: token X` (or `Bearer X`); with in_query, else that of
    `?token=X` (for a door an EventSource calls: it cannot send headers); empty when there
    is none. Any text is returned: one that is not a token is bad credentials, not an
    error."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    if in_query:
        return request.args.get("token", "").strip()
    return ""


# The doors that also take `?token=`: Thebe's EventSource cannot send headers.
QUERY_TOKEN_DOORS = frozenset({"binderhub.BuildAndLaunch"})


def identify(settings: Settings, store: RedisStore) -> Caller:
    """The caller of this request. Server tokens are checked per server, not here."""
    in_query = request.endpoint in QUERY_TOKEN_DOORS
    token, address = presented_token(in_query=in_query), request.remote_addr or ""
    if not token:
        return Caller(address=address)
    if tokens_match(settings.operator_token, token):
        return Caller(token=token, is_operator=True, address=address)
    record = store.tokens.get(hash_token(token))
    return Caller(token=token, scopes=frozenset(record["scopes"]) if record else frozenset(),
                  address=address)
