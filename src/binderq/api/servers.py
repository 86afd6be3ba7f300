"""/api/servers and /api/stagings/{name}/servers: deploy a staging, poll it, stop it."""

from __future__ import annotations

from typing import Any

from flask import jsonify, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from binderq.api.auth import (
    require_known_token,
    require_operator,
    require_operator_or_server_token,
    require_scope,
)
from binderq.api.context import context
from binderq.api.stagings import StrictSchema, checked_name
from binderq.domain.errors import StaleStaging
from binderq.domain.models import Server, ServerStatus, isoformat
from binderq.services import deploy, servers

blp = Blueprint("servers", __name__, url_prefix="/api",
                description="Deploy: servers started from stagings, behind the proxy.")

SERVER_FIELDS = ("id", "staging", "status", "url", "pooled", "created_at", "ready_at",
                 "last_activity", "cull_at", "error", "task_id")
_TIME_FIELDS = {"created_at", "ready_at", "last_activity", "cull_at"}


class ServerSchema(Schema):
    id = fields.String()
    staging = fields.String()
    status = fields.String(metadata={"enum": [str(status) for status in ServerStatus]})
    url = fields.String(allow_none=True)
    token = fields.String(metadata={"description": "Only in the launch answer"})
    pooled = fields.Boolean()
    created_at = fields.String()
    ready_at = fields.String(allow_none=True)
    last_activity = fields.String(allow_none=True)
    cull_at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)


class ServerListArgs(StrictSchema):
    staging = fields.String()
    status = fields.String(validate=validate.OneOf([str(status) for status in ServerStatus]))


def server_body(server: Server) -> dict[str, Any]:
    """The API's view of a server (no token; the launch answer adds it)."""
    body = {key: getattr(server, key) for key in SERVER_FIELDS}
    for key in _TIME_FIELDS:
        body[key] = isoformat(body[key])
    body["status"] = str(server.status)
    return body


@blp.route("/stagings/<path:name>/servers")
class StagingServers(MethodView):
    @blp.response(202, ServerSchema)
    @blp.alt_response(201, schema=ServerSchema, description="Launched from the pool: ready")
    @blp.alt_response(429, description="At capacity; see Retry-After")
    def post(self, name: str):
        """Launch a server of a staging; poll its Location until `ready`."""
        ctx = context()
        launch = _launch(ctx, checked_name(name))
        body = {**server_body(launch.server), "token": launch.token}
        location = f"/api/servers/{launch.server.id}"
        # Serialized here, not by the schema: this is the pooled launch's hot path.
        response = jsonify(body)
        response.status_code = 201 if launch.server.pooled else 202
        response.headers["Location"] = location
        return response


@blp.route("/servers")
class Servers(MethodView):
    @blp.arguments(ServerListArgs, location="query")
    @blp.response(200, ServerSchema(many=True))
    def get(self, args: dict[str, Any]):
        """Servers, newest first, by staging and status (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        found = ctx.store.servers.list()
        if "staging" in args:
            found = [server for server in found if server.staging == args["staging"]]
        if "status" in args:
            found = [server for server in found if server.status == args["status"]]
        return [server_body(server) for server in found]


@blp.route("/servers/<server_id>")
class ServerById(MethodView):
    @blp.response(200, ServerSchema)
    def get(self, server_id: str):
        """One server (operator, or the holder of its token)."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings, server_id)
        return server_body(servers.get_server(server_id, store=ctx.store))

    @blp.response(202, ServerSchema)
    def delete(self, server_id: str):
        """Stop a server: `stopping`, then `stopped` (operator, or the holder of its token)."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings, server_id)
        server = servers.request_stop(server_id, store=ctx.store, queue=ctx.queue)
        return server_body(server), 202, {"Location": url_for("servers.ServerById",
                                                               server_id=server_id)}


def _launch(ctx: Any, name: str) -> Any:
    """Launch from this process's copy of the staging; if it proved stale, read it again."""
    for fresh in (False, True):
        staging = ctx.stagings.get(name, ctx.store, fresh=fresh)
        require_launch_right(ctx, public=staging.public)
        try:
            return deploy.request_launch(staging, store=ctx.store, queue=ctx.queue,
                                         settings=ctx.settings)
        except StaleStaging:
            continue
    raise StaleStaging(name)  # changed twice within one request: let the client retry


def require_launch_right(ctx: Any, *, public: bool) -> None:
    """Public stagings launch freely under open launch auth; else the launch scope."""
    caller = ctx.caller()
    if public and ctx.settings.launch_auth == "open":
        require_known_token(caller)
    else:
        require_scope(caller, "launch")
