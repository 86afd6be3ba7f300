"""/api/health: each dependency and a worker canary; 503 when any is down."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from binderq.api.context import context
from binderq.services.health import health_report

blp = Blueprint("health", __name__, url_prefix="/api/health",
                description="Health of Redis, the Docker engine, the proxy and the workers.")


class CheckSchema(Schema):
    ok = fields.Boolean()
    error = fields.String()
    latency_ms = fields.Float()


class HealthSchema(Schema):
    ok = fields.Boolean()
    checks = fields.Dict(keys=fields.String(), values=fields.Nested(CheckSchema))


@blp.route("")
class Health(MethodView):
    @blp.response(200, HealthSchema)
    @blp.alt_response(503, schema=HealthSchema, description="A dependency is down")
    def get(self):
        """Health (no authentication); answers within 2 s even when everything is down."""
        ctx = context()
        report = health_report(store=ctx.store, proxy=ctx.proxy, queue=ctx.queue)
        return report, 200 if report["ok"] else 503
