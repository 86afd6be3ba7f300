"""tmpnb's API, served from the default staging's pool: a tmpnb client works unchanged."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from marshmallow import Schema, fields

from binderq import __version__
from binderq.api.blueprint import ANYONE, OPTIONAL_TOKEN, RETRY_AFTER, Blueprint
from binderq.api.context import ApiContext, context
from binderq.api.errors import ErrorSchema
from binderq.domain.errors import NotFound, PoolEmpty
from binderq.domain.spec import server_path
from binderq.services.stagings import get_staging

blp = Blueprint("tmpnb", __name__, url_prefix="/api",
                description="tmpnb's spawn and stats, on BINDERQ_DEFAULT_STAGING's pool.")


class SpawnSchema(Schema):
    url = fields.String(metadata={"description": "/user/{id}/?token=..."})


class FullSchema(Schema):
    status = fields.String(required=True, metadata={"enum": ["full"]})


class StatsSchema(Schema):
    available = fields.Integer()
    capacity = fields.Integer()
    version = fields.String()
    container_image = fields.String()


def default_staging_name(ctx: ApiContext) -> str:
    if not ctx.settings.default_staging:
        raise NotFound("Staging", "(none: set BINDERQ_DEFAULT_STAGING for the tmpnb door)")
    return ctx.settings.default_staging


@blp.route("/spawn/")
class Spawn(MethodView):
    @blp.response(200, SpawnSchema)
    @blp.alt_response(429, schema={"oneOf": [FullSchema, ErrorSchema]}, description=(
        'The pool is empty: {"status": "full"}, as tmpnb answered; or past a '
        "fair share or rate, in the error format"),
        headers=RETRY_AFTER)
    @blp.errors(401, 403, 404, 409, 503)
    @blp.security(OPTIONAL_TOKEN)
    def post(self):
        """A server from the default staging's pool, as tmpnb answered (no cold start): the
        same launch rule as every door."""
        ctx = context()
        try:
            launch = ctx.launch(default_staging_name(ctx), cold=False)
        except PoolEmpty as empty:  # tmpnb's clients read this body, not binderq's error
            response = jsonify({"status": "full"})
            response.status_code = 429
            response.headers["Retry-After"] = str(empty.retry_after)
            return response
        return {"url": f"{server_path(launch.server.id)}?token={launch.token}"}


@blp.route("/stats")
class Stats(MethodView):
    @blp.response(200, StatsSchema)
    @blp.errors(404, 503)
    @blp.security(ANYONE)
    def get(self):
        """tmpnb's stats: servers available in the pool, its capacity, the image."""
        ctx = context()
        staging = get_staging(default_staging_name(ctx), store=ctx.store)
        counters = ctx.store.pools.counters(staging.name) or {}
        return {"available": ctx.store.pools.ready_count(staging.name),
                "capacity": counters.get("size", 0), "version": __version__,
                "container_image": staging.image}
