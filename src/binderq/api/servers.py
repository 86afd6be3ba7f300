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
from binderq.domain.launch_queue import QueuePlace
from binderq.domain.models import Server, ServerStatus, jsonable
from binderq.services import launch_queue, servers
from binderq.services.server_wait import (
    MAX_WAIT,
    ON_ITS_WAY,
    Waiters,
    longest_wait,
    wait_for_next_status,
)

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
    position = fields.Integer(metadata={"description": "Only while `queued`: its place in the "
                                        "launch queue, 1 is next"})
    eta = fields.Integer(allow_none=True, metadata={
        "description": "Only while `queued`: estimated seconds until it is served (its "
                       "position times the mean interval between recent promotions); null "
                       "when there is no recent rate to go by"})


class LaunchArgs(StrictSchema):
    queue = fields.Boolean(load_default=False, metadata={
        "description": "At capacity (the service's or the staging's max_servers), wait in "
                       "the launch queue (202, `queued`, with `position` and `eta`) instead "
                       "of a 429. Poll the server (GET) at least every "
                       "BINDERQ_QUEUE_POLL_TIMEOUT seconds (60), or it leaves the queue."})


class ServerWaitArgs(StrictSchema):
    wait = fields.Float(load_default=0.0, validate=validate.Range(min=0, max=MAX_WAIT),
                        metadata={"description": (
                            "Seconds to wait for a queued, pending, starting or stopping "
                            "server's status to change before answering (at most 30, and at "
                            "most half of BINDERQ_QUEUE_POLL_TIMEOUT). Answered at once, with "
                            "`Retry-After: 1`, when too many requests wait already.")})


class ServerListArgs(StrictSchema):
    staging = fields.String()
    status = fields.String(validate=validate.OneOf([str(status) for status in ServerStatus]))


_RECORD_FIELDS = tuple(name for name in ServerSchema().fields
                       if name not in ("token", "position", "eta"))


def server_body(server: Server, token: str | None = None,
                place: QueuePlace | None = None) -> dict[str, Any]:
    """A server's record, the fields the schema declares; the token only in the launch
    answer, its place only while queued. (Field by field: dataclasses.asdict would cost a
    pooled launch 0.1 ms.)"""
    body = {name: jsonable(getattr(server, name)) for name in _RECORD_FIELDS}
    if token is not None:
        body["token"] = token
    if place is not None:
        body.update(position=place.position, eta=place.eta)
    return body


@blp.route("/stagings/<staging_name:name>/servers")
class StagingServers(MethodView):
    @blp.arguments(LaunchArgs, location="query")
    @blp.response(202, ServerSchema, description="`pending`; or, with `?queue=true` at "
                  "capacity, `queued` with `position` and `eta`")
    @blp.alt_response(201, schema=ServerSchema, description="Launched from the pool: ready")
    @blp.errors(401, 403, 404, 409, 422, 429, 503)
    @blp.security(OPTIONAL_TOKEN)
    def post(self, args: dict[str, Any], name: str):
        """Launch a server of a staging; poll its Location until `ready`. A public staging
        needs no token under open launch auth; otherwise the `launch` scope. At capacity,
        429, or with `?queue=true` a place in the launch queue."""
        ctx = context()
        launch = ctx.launch(name, queue_when_full=args["queue"])
        status = 201 if launch.server.pooled else 202
        place = launch_queue.place_in_queue(launch.server, store=ctx.store)
        return (server_body(launch.server, launch.token, place), status,
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


# Requests of one API process that may wait (?wait=) at once: each holds one of the 32
# threads gunicorn_conf gives a process, and 8 stay for everything else.
WAITERS = Waiters(24)


@blp.route("/servers/<server_id:server_id>")
class ServerById(MethodView):
    @blp.arguments(ServerWaitArgs, location="query")
    @blp.response(200, ServerSchema)
    @blp.errors(401, 404, 422, 503)
    def get(self, args: dict[str, Any], server_id: str):
        """One server (operator, or the holder of its token). With `?wait=N`, answered when
        its status changes, instead of polling. Polling a queued one keeps its place: one
        not polled for BINDERQ_QUEUE_POLL_TIMEOUT leaves the queue."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings.secret_key, server_id)
        server = servers.get_server(server_id, store=ctx.store)
        place = launch_queue.place_in_queue(server, store=ctx.store, polled=True)
        seconds = longest_wait(args["wait"], queue_poll_timeout=ctx.settings.queue_poll_timeout)
        if not seconds or server.status not in ON_ITS_WAY:
            return server_body(server, place=place)
        if not WAITERS.try_enter():
            return server_body(server, place=place), 200, {"Retry-After": "1"}
        try:
            server = wait_for_next_status(server, store=ctx.store, seconds=seconds)
        finally:
            WAITERS.leave()
        return server_body(server, place=launch_queue.place_in_queue(server, store=ctx.store,
                                                                     polled=True))

    @blp.response(202, ServerSchema)
    @blp.errors(401, 404, 503)
    def delete(self, server_id: str):
        """Stop a server: `stopping`, then `stopped` (operator, or the holder of its token).
        A queued one leaves the queue: `stopped` at once."""
        ctx = context()
        require_operator_or_server_token(ctx.caller(), ctx.settings.secret_key, server_id)
        server = servers.request_stop(server_id, store=ctx.store, queue=ctx.queue)
        return server_body(server), 202, {"Location": url_for("servers.ServerById",
                                                               server_id=server_id)}
