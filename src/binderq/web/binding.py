"""A browser's server for one link: a signed, HttpOnly cookie scoped to the link's path that
holds the server's id and the path it was made for, never its token (the token is derived
again, server-side, from the secret: domain/tokens.server_token). Opening the same link again
while that server runs resumes it."""

from __future__ import annotations

from dataclasses import dataclass

from flask import Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "binderq_server"
SALT = "binderq.web.server-binding"
MAX_AGE = 24 * 3600  # seconds; the server itself is culled long before, and checked on read


@dataclass(frozen=True)
class Binding:
    server_id: str
    path: str


def _serializer(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SALT)


def bind(response: Response, *, secret_key: str, server_id: str, path: str,
         secure: bool) -> None:
    """Bind the browser to server_id for the link at path."""
    value = _serializer(secret_key).dumps({"server": server_id, "path": path})
    response.set_cookie(COOKIE, value, max_age=MAX_AGE, path=path, httponly=True,
                        secure=secure, samesite="Lax")


def unbind(response: Response, *, path: str, secure: bool) -> None:
    response.delete_cookie(COOKIE, path=path, httponly=True, secure=secure, samesite="Lax")


def bound_server(cookie: str | None, *, secret_key: str, path: str) -> Binding | None:
    """The binding a cookie carries for this path, if it is signed by us and made for it."""
    if not cookie:
        return None
    try:
        data = _serializer(secret_key).loads(cookie, max_age=MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("path") != path:
        return None
    server_id = data.get("server")
    return Binding(server_id, path) if isinstance(server_id, str) and server_id else None
