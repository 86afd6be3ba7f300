"""Server tokens are derived, never stored; issued tokens are stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

_SERVER_TOKEN_CONTEXT = b"binderq server token v1:"


def server_token(secret_key: str, server_id: str) -> str:
    """The token that opens one server: HMAC-SHA256 of the secret and the server id."""
    digest = hmac.new(
        secret_key.encode(), _SERVER_TOKEN_CONTEXT + server_id.encode(), hashlib.sha256
    )
    return digest.hexdigest()


def is_server_token(secret_key: str, server_id: str, candidate: str) -> bool:
    """Whether candidate opens server_id, compared in constant time. Any text is a
    candidate: compare_digest refuses non-ASCII strings, so bytes are compared."""
    return hmac.compare_digest(server_token(secret_key, server_id).encode(),
                               candidate.encode("utf-8", "replace"))


def tokens_match(expected: str, candidate: str) -> bool:
    """Constant-time comparison that treats an empty expected token as never matching."""
    return bool(expected) and hmac.compare_digest(expected.encode(),
                                                  candidate.encode("utf-8", "replace"))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token() -> str:
    return secrets.token_hex(32)


def new_server_id() -> str:
    # 12 hex digits: short enough for a url and a container name, 48 bits against collisions.
    return secrets.token_hex(6)


def new_task_id() -> str:
    return str(uuid.uuid4())
