"""User tokens: issued by an operator with scopes, stored only as hashes."""

from __future__ import annotations

import re
from typing import Any

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import NotFound
from binderq.domain.models import isoformat, utcnow
from binderq.domain.tokens import hash_token, new_token

# The public id of a token: a prefix of its hash, enough to name it, useless to log in.
TOKEN_ID_LENGTH = 16
_TOKEN_ID = re.compile(rf"^[0-9a-f]{{{TOKEN_ID_LENGTH}}}$")


def issue_token(scopes: list[str], note: str, *, store: RedisStore) -> dict[str, Any]:
    """A new user token; the token itself is in this answer only."""
    token = new_token()
    digest = hash_token(token)
    record = {"id": digest[:TOKEN_ID_LENGTH], "scopes": sorted(set(scopes)), "note": note,
              "created_at": isoformat(utcnow())}
    store.tokens.save(digest, record)
    return {**record, "token": token}


def revoke_token(token_id: str, *, store: RedisStore) -> None:
    # The id becomes a key pattern: only hex digits, so no glob can match another token.
    if not _TOKEN_ID.match(token_id) or not store.tokens.delete(token_id):
        raise NotFound("Token", token_id)
