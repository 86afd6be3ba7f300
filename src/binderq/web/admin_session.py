"""Who the dashboard's browser is: a signed, HttpOnly cookie scoped to /admin that says
whether the operator logged in (as a salted hash of the operator token, so a new token logs
every browser out) and carries the session's CSRF token. The token itself is never stored
in the cookie, and never in a URL. A script may instead send the operator's Authorization
header, with every request."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from flask import Response, abort, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from binderq.api.context import context
from binderq.domain.tokens import tokens_match

COOKIE = "binderq_admin"
PATH = "/admin"
SALT = "binderq.web.admin-session"
MAX_AGE = 12 * 3600  # seconds a login lasts


@dataclass(frozen=True)
class AdminSession:
    csrf: str
    operator: bool
    by_header: bool = False


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(context().settings.secret_key, salt=SALT)


def _operator_mark() -> str:
    """What the cookie holds for a logged-in operator: an HMAC of the operator token."""
    settings = context().settings
    return hmac.new(settings.secret_key.encode(), b"admin:" + settings.operator_token.encode(),
                    hashlib.sha256).hexdigest()


def current_session() -> AdminSession:
    """This request's session: the operator's header, else the cookie, else a new one."""
    if context().caller().is_operator:
        return AdminSession(csrf="", operator=True, by_header=True)
    try:
        data = _serializer().loads(request.cookies.get(COOKIE, ""), max_age=MAX_AGE)
    except BadSignature:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("csrf"), str):
        return AdminSession(csrf=secrets.token_urlsafe(24), operator=False)
    mark = data.get("operator", "")
    operator = bool(context().settings.operator_token) and isinstance(mark, str) and \
        hmac.compare_digest(mark, _operator_mark())
    return AdminSession(csrf=data["csrf"], operator=operator)


def save(response: Response, session: AdminSession) -> Response:
    """Write the session's cookie (nothing for a script that logs in by header)."""
    if session.by_header:
        return response
    value = _serializer().dumps({"csrf": session.csrf,
                                 "operator": _operator_mark() if session.operator else ""})
    response.set_cookie(COOKIE, value, max_age=MAX_AGE, path=PATH, httponly=True,
                        secure=context().settings.public_url.startswith("https://"),
                        samesite="Strict")
    return response


def log_in(token: str) -> AdminSession | None:
    """A new session (new CSRF token) for the operator's token, else None."""
    if not tokens_match(context().settings.operator_token, token):
        return None
    return AdminSession(csrf=secrets.token_urlsafe(24), operator=True)


def check_csrf(session: AdminSession) -> None:
    """Refuse a form POST whose CSRF token is not the session's (a header login needs none:
    another site's page cannot send the operator's Authorization header)."""
    if session.by_header:
        return
    sent = request.form.get("csrf", "") or request.headers.get("X-CSRF-Token", "")
    if not session.csrf or not hmac.compare_digest(sent.encode(), session.csrf.encode()):
        abort(Response("the form's CSRF token is missing or stale: reload the page",
                       status=403))
