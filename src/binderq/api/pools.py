"""/api/pools: servers pre-started per staging, so that a launch takes milliseconds."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.api.stagings import StrictSchema
from binderq.domain.access import require_operator
from binderq.services import pools

blp = Blueprint("pools", __name__, url_prefix="/api/pools",
                description="Pool: ready servers per staging, claimed at launch.")


class PoolInSchema(StrictSchema):
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=0))


class PoolSchema(Schema):
    staging = fields.String()
    size = fields.Integer()
    ready = fields.Integer(metadata={"description": "ready and waiting to be claimed"})
    starting = fields.Integer()
    in_use = fields.Integer(metadata={"description": "claimed from this pool and running"})
    hits = fields.Integer(metadata={"description": "launches served from the pool"})
    misses = fields.Integer(metadata={"description": "launches that found the pool empty"})


@blp.route("")
class Pools(MethodView):
    @blp.response(200, PoolSchema(many=True))
    @blp.errors(401, 403, 503)
    def get(self):
        """Every pool (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        return [asdict(pool) for pool in pools.list_pools(store=ctx.store)]


@blp.route("/<staging_name:staging>")
class PoolByStaging(MethodView):
    @blp.arguments(PoolInSchema)
    @blp.response(200, PoolSchema)
    @blp.errors(400, 401, 403, 404, 413, 503)
    def put(self, fields: dict[str, Any], staging: str):
        """Set a staging's pool size (operator); servers start or stop to match."""
        ctx = context()
        require_operator(ctx.caller())
        pool = pools.set_pool_size(staging, fields["size"], store=ctx.store,
                                   queue=ctx.queue, settings=ctx.settings)
        return asdict(pool)

    @blp.response(200, PoolSchema)
    @blp.errors(401, 403, 404, 422, 503)
    def get(self, staging: str):
        """One pool (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        return asdict(pools.get_pool(staging, store=ctx.store))

    @blp.response(200, PoolSchema)
    @blp.errors(401, 403, 404, 422, 503)
    def delete(self, staging: str):
        """Size 0: the pool's unclaimed servers are stopped (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        return asdict(pools.drain_pool(staging, store=ctx.store,
                                       queue=ctx.queue))
