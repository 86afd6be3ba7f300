"""/api/health: each dependency and a worker canary; 503 when any is down."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields

from binderq.api.blueprint import ANYONE, Blueprint
from binderq.api.context import ApiContext, context
from binderq.services.health import cached_health_report, public_health

blp = Blueprint("health", __name__, url_prefix="/api/health",
                description="Health of Redis, the Docker engine, the proxy and the workers.")


class CheckSchema(Schema):
    ok = fields.Boolean()
    error = fields.String()
    latency_ms = fields.Float()
    up = fields.List(fields.String(), metadata={"description": "hosts: the hosts that are up"})
    down = fields.List(fields.String())


class HostSchema(Schema):
    ok = fields.Boolean(metadata={"description": "its worker's engine answered lately"})
    servers = fields.Integer()
    capacity = fields.Integer()
    last_seen = fields.String(allow_none=True)
    error = fields.String()


class HealthSchema(Schema):
    ok = fields.Boolean()
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema))
    hosts = fields.Dict(keys=fields.String(), values=fields.Nested(HostSchema), metadata={
        "description": "With more than one Docker host (BINDERQ_DOCKER_HOSTS): each one"})


@blp.route("")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A dependency is down")
    @blp.security(ANYONE)
    def get(self):
        """Health (no authentication), from a report at most a few seconds old; answers
        within 2 s even when everything is down. Only the operator sees why a check
        failed (errors may name internal addresses)."""
        ctx = context()
        report = health_for(ctx)
        return report, 200 if report["ok"] else 503


def health_for(ctx: ApiContext) -> dict[str, Any]:
    """The health report as this request's caller may see it (every door's)."""
    report = cached_health_report(store=ctx.store, proxy=ctx.proxy, queue=ctx.queue,
                                  cache=ctx.health, hosts=ctx.settings.hosts)
    return report if ctx.caller().is_operator else public_health(report)
