"""The rates of one client: launches per minute and build requests per hour, counted by
Flask-Limiter in the deployment's Redis (so every gunicorn worker and API host shares the
counts), keyed by the caller's client key, and answered 429 with Retry-After in binderq's
error format. The operator is exempt. (What a client holds at once, servers and builds in
progress, is counted with the records: domain/shares.py.)

Every door that launches or asks for a build is listed here by endpoint, so the doors share
one bucket per client: a launch at the tmpnb door counts as one at the JSON API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter, RateLimitExceeded

from binderq.api.context import context
from binderq.api.errors import error_body
from binderq.domain.access import client_key
from binderq.settings import Settings

# The doors, by endpoint and method: each launch, or request for a build, is one hit.
LAUNCH_DOORS: Mapping[str, str] = {
    "servers.StagingServers": "POST",
    "tmpnb.Spawn": "POST",
    "binderhub.BuildAndLaunch": "GET",
}
BUILD_DOORS: Mapping[str, str] = {
    "builds.Builds": "POST",
    "binderhub.BuildAndLaunch": "GET",
}
KEY_PREFIX = "binderq:limits"


@dataclass(frozen=True)
class Rate:
    """One rate a client may not exceed: `setting` (a Settings field) hits per `per`."""

    scope: str
    setting: str
    per: str
    resource: str
    what: str
    doors: Mapping[str, str]

    def message(self, amount: int, retry_after: int) -> str:
        return (f"too many {self.what} from one client: the limit is {amount} per {self.per} "
                f"(BINDERQ_{self.setting.upper()}); try again in {retry_after} s")


RATES = (
    Rate("launches", "client_launches_per_minute", "minute", "Server", "launches",
         LAUNCH_DOORS),
    Rate("build-requests", "client_builds_per_hour", "hour", "Build", "build requests",
         BUILD_DOORS),
)


def rate_key() -> str:
    """The caller's client key; a token nobody issued counts as its address (so that
    inventing tokens does not make new clients)."""
    caller = context().caller()
    if caller.anonymous or caller.known:
        return caller.client
    return client_key("", caller.address)


def _operator_calls() -> bool:
    return context().caller().is_operator


def init_limits(app: Flask, settings: Settings) -> Limiter:
    """A limiter over the app's doors (call once the blueprints are registered): each rate
    whose setting is above 0, in Redis (memory:// without a Redis URL, as unit tests run)."""
    redis_options = {"key_prefix": KEY_PREFIX, "socket_timeout": 5, "socket_connect_timeout": 1}
    limiter = Limiter(
        key_func=rate_key, app=app, storage_uri=settings.redis_url or "memory://",
        storage_options=redis_options if settings.redis_url else {},
        # Retry-After is the refusal's own (one number in the header and the message).
        strategy="moving-window", headers_enabled=False,
        # Redis down: let the request through; the store then answers 503 itself.
        swallow_errors=True,
    )
    for rate in RATES:
        amount = getattr(settings, rate.setting)
        if amount <= 0:
            continue
        for endpoint, method in rate.doors.items():
            limit = limiter.shared_limit(f"{amount}/{rate.per}", scope=rate.scope,
                                         methods=[method], exempt_when=_operator_calls)
            app.view_functions[endpoint] = limit(app.view_functions[endpoint])
    app.register_error_handler(RateLimitExceeded, _rate_limited(limiter))
    return limiter


def _rate_limited(limiter: Limiter):
    def handle(error: RateLimitExceeded) -> ResponseReturnValue:
        rate = next((r for r in RATES if r.scope == error.limit.scope), RATES[0])
        current = limiter.current_limit
        reset_at = current.reset_at if current else time.time() + 1
        retry_after = max(1, math.ceil(reset_at - time.time()))
        amount = error.limit.limit.amount
        response = jsonify(error_body(rate.message(amount, retry_after), [
            {"resource": rate.resource, "field": rate.setting, "code": "rate_limited"}]))
        response.status_code = 429
        response.headers["Retry-After"] = str(retry_after)
        return response

    return handle
