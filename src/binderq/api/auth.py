"""Who is calling: the operator, a user token with scopes, a server's holder, or anyone."""

from __future__ import annotations

from dataclasses import dataclass

from flask import request

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import Forbidden, Unauthorized
from binderq.domain.tokens import hash_token, is_server_token, tokens_match
from binderq.settings import Settings

SCOPES = ("launch", "build")


@dataclass(frozen=True)
class Caller:
    token: str = ""
    is_operator: bool = False
    scopes: frozenset[str] = frozenset()

    @property
    def anonymous(self) -> bool:
        return not self.token

    def may(self, scope: str) -> bool:
        return self.is_operator or scope in self.scopes


def presented_token() -> str:
    """The token of `Authorization: token X` (or `Bearer X`); empty when there is none."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return ""


def identify(settings: Settings, store: RedisStore) -> Caller:
    """The caller of this request. Server tokens are checked per server, not here."""
    token = presented_token()
    if not token:
        return Caller()
    if tokens_match(settings.operator_token, token):
        return Caller(token=token, is_operator=True)
    record = store.tokens.get(hash_token(token))
    return Caller(token=token, scopes=frozenset(record["scopes"]) if record else frozenset())


def require_operator(caller: Caller) -> None:
    if caller.anonymous:
        raise Unauthorized("Requires authentication: an operator token")
    if not caller.is_operator:
        raise Unauthorized("Bad credentials") if not caller.scopes else Forbidden(
            "This call needs an operator token")


def require_scope(caller: Caller, scope: str) -> None:
    if caller.anonymous:
        raise Unauthorized(f"Requires authentication: a token with the {scope!r} scope")
    if not caller.is_operator and not caller.scopes:
        raise Unauthorized("Bad credentials")
    if not caller.may(scope):
        raise Forbidden(f"This token lacks the {scope!r} scope")


def require_known_token(caller: Caller) -> None:
    """A token that was presented must be valid, even where none is needed (as GitHub does)."""
    if not caller.anonymous and not caller.is_operator and not caller.scopes:
        raise Unauthorized("Bad credentials")


def require_operator_or_server_token(caller: Caller, settings: Settings, server_id: str) -> None:
    if caller.is_operator:
        return
    if caller.anonymous:
        raise Unauthorized("Requires authentication: an operator token or the server's token")
    if not is_server_token(settings.secret_key, server_id, caller.token):
        raise Unauthorized("Bad credentials")
