"""/api/servers and /api/stagings/{name}/servers: deploy a staging, poll it, stop it."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from binderq.api.blueprint import OPTIONAL_TOKEN, Blueprint
from binderq.api.context import context
from binderq.api.stagings import StrictSchema
from binderq.domain.access import require_operator, require_operator_or_server_token
from binderq.domain.applications import KINDS
from binderq.domain.models import Server, ServerStatus, jsonable
from binderq.services import servers

blp = Blueprint("servers", __name__, url_prefix="/api",
                description="Deploy: servers started from stagings, behind the proxy.")


class ServerSchema(Schema):
    """The API's view of a server: the one definition of its body."""

    id = fields.String()
    staging = fields.String()
    status = fields.String(metadata={"enum": [str(status) for status in ServerStatus]})
    url = fields.String(allow_none=True)
    token = fields.String(metadata={"description": "Only in the launch answer"})
    pooled = fields.Boolean()
    kind = fields.String(metadata={"enum": list(KINDS), "description": "what url points at: "
                                   "a notebook, a Kernel Gateway ({url}api/kernels) or a web "
                                   "app"})
    image_id = fields.String(allow_none=True, metadata={"description": "the image id its "
                                                                       "containers run"})
    created_at = fields.String()
    ready_at = fields.String(allow_none=True)
    last_activity = fields.String(allow_none=True)
    cull_at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)
    host = fields.String(metadata={"description": "the Docker host it runs on "
                                                  "(BINDERQ_DOCKER_HOSTS)"})


class ServerListArgs(StrictSchema):
    staging = fields.String()
    status = fields.String(validate=validate.OneOf([str(status) for status in ServerStatus]))


_RECORD_FIELDS = tuple(name for name in ServerSchema().fields if name != "token")


def server_body(server: Server, token: str | None = None) -> dict[str, Any]:
    """A server's record, the fields the schema declares; the token only in the launch
    answer. (Field by field: dataclasses.asdict would cost a pooled launch 0.1 ms.)"""
    body = {name: jsonable(getattr(server, name)) for name in _RECORD_FIELDS}
    if token is not None:
        body["token"] = token
    return body


@blp.route("/stagings/<staging_name:name>/servers")
class StagingServers(MethodView):
    @blp.response(202, ServerSchema)
    @blp.alt_response(201, schema=ServerSchema, description="Launched from the pool: ready")
    @blp.errors(401, 403, 404, 409, 422, 429, 503)
    @blp.security(OPTIONAL_TOKEN)
    def post(self, name: str):
        """Launch a server of a staging; poll its Location until `ready`. A public staging
        needs no token under open launch auth; otherwise the `launch` scope."""
        launch = context().launch(name)
        status = 201 if launch.server.pooled else 202
        return (server_body(launch.server, launch.token), status,
                {"Location": f"/api/servers/{launch.server.id}"})


@blp.route("/servers")
class Servers(MethodView):
    @blp.arguments(ServerListArgs, location="query")
    @blp.response(200, ServerSchema(many=True))
    @blp.errors(401, 403, 503)
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


@blp.route("/servers/<server_id:server_id>")
class ServerById(MethodView):
    @blp.response(200, ServerSchema)
    @blp.errors(401, 404, 503)
    def get(self, server_id: str):
        """One server (operator, or the holder of its token)."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings.secret_key, server_id)
        return server_body(servers.get_server(server_id, store=ctx.store))

    @blp.response(202, ServerSchema)
    @blp.errors(401, 404, 503)
    def delete(self, server_id: str):
        """Stop a server: `stopping`, then `stopped` (operator, or the holder of its token)."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings.secret_key, server_id)
        server = servers.request_stop(server_id, store=ctx.store, queue=ctx.queue)
        return server_body(server), 202, {"Location": url_for("servers.ServerById",
                                                               server_id=server_id)}
