"""/api/builds: build an image from a git repository at a ref, cached by commit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from flask import Response, jsonify, request
from flask.views import MethodView
from marshmallow import Schema, fields, validate

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.api.stagings import StagingFieldsSchema, StrictSchema
from binderq.api.streams import KEEPALIVE, event_stream, sse
from binderq.domain.access import require_scope
from binderq.domain.builds import BuildStatus, build_to_dict
from binderq.domain.repos import MAX_REF_LENGTH, MAX_REPO_LENGTH
from binderq.domain.staging_rules import NAME
from binderq.services import builds

blp = Blueprint("builds", __name__, url_prefix="/api/builds",
                description="Build: images from git repositories, cached by commit.")

BUILD_FIELDS = ("id", "repo", "ref", "commit", "status", "image", "cached", "created_at",
                "started_at", "finished_at", "error", "task_id")


class BuildStagingSchema(StagingFieldsSchema):
    """The staging to stage the image under once built: a name and staging fields."""

    name = fields.String(required=True, validate=validate.Regexp(NAME))
    pool_size = fields.Integer(load_default=None, strict=True, validate=validate.Range(min=0),
                               metadata={"description": "servers to keep ready once staged"})


class BuildInSchema(StrictSchema):
    repo = fields.String(required=True, validate=validate.Length(min=1, max=MAX_REPO_LENGTH))
    ref = fields.String(load_default="HEAD", validate=validate.Length(min=1,
                                                                        max=MAX_REF_LENGTH))
    staging = fields.Nested(BuildStagingSchema, allow_none=True, load_default=None)


class BuildSchema(Schema):
    id = fields.String()
    repo = fields.String()
    ref = fields.String()
    commit = fields.String()
    status = fields.String(metadata={"enum": [str(status) for status in BuildStatus]})
    image = fields.String(allow_none=True)
    cached = fields.Boolean()
    created_at = fields.String()
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    error = fields.String(allow_none=True)
    task_id = fields.String(allow_none=True)


class BuildListArgs(StrictSchema):
    repo = fields.String()
    status = fields.String(validate=validate.OneOf([str(status) for status in BuildStatus]))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


def build_body(build: Any) -> dict[str, Any]:
    record = build_to_dict(build)
    return {key: record[key] for key in BUILD_FIELDS}


@blp.route("")
class Builds(MethodView):
    @blp.arguments(BuildInSchema)
    @blp.response(202, BuildSchema)
    @blp.alt_response(200, schema=BuildSchema, description="Built before: cached")
    @blp.errors(400, 401, 403, 413, 429, 503)
    def post(self, fields: dict[str, Any]):
        """Build repo at ref (the `build` scope; with `staging`, the operator's token).
        Hostile URLs and refs are refused (422) before any git process starts."""
        ctx = context()
        caller = ctx.caller()
        require_scope(caller, "build")
        build = builds.request_build(fields["repo"], fields["ref"], fields["staging"],
                                     caller=caller, store=ctx.store, queue=ctx.queue,
                                     git=ctx.git, settings=ctx.settings)
        response = jsonify(build_body(build))
        response.status_code = 200 if build.status == BuildStatus.SUCCEEDED else 202
        response.headers["Location"] = f"/api/builds/{build.id}"
        return response

    @blp.arguments(BuildListArgs, location="query")
    @blp.response(200, BuildSchema(many=True))
    @blp.errors(401, 403, 503)
    def get(self, args: dict[str, Any]):
        """Builds, newest first (the `build` scope): the caller's own; the operator's, all."""
        ctx = context()
        caller = ctx.caller()
        require_scope(caller, "build")
        found = builds.list_builds(caller, store=ctx.store, repo=args.get("repo"),
                                   status=args.get("status"), limit=args["limit"])
        return [build_body(build) for build in found]


@blp.route("/<build_id:build_id>")
class BuildById(MethodView):
    @blp.response(200, BuildSchema)
    @blp.errors(401, 403, 404, 503)
    def get(self, build_id: str):
        """One build the caller asked for (the `build` scope); the operator's, any. Others'
        builds are 404."""
        ctx = context()
        caller = ctx.caller()
        require_scope(caller, "build")
        return build_body(builds.get_build(build_id, caller=caller, store=ctx.store))

    @blp.response(202, BuildSchema)
    @blp.errors(401, 403, 404, 409, 503)
    def delete(self, build_id: str):
        """Cancel a queued or running build the caller asked for (the `build` scope); 409
        if other clients asked for it too (the operator cancels any)."""
        ctx = context()
        caller = ctx.caller()
        require_scope(caller, "build")
        return build_body(builds.cancel_build(build_id, caller=caller, store=ctx.store,
                                              settings=ctx.settings)), 202


@blp.route("/<build_id:build_id>/logs")
class BuildLogs(MethodView):
    @blp.response(200, description="The log so far as text/plain; with Accept: "
                  "text/event-stream, a live stream of `phase` and `log` events that ends "
                  "with `done`, carrying the Build")
    @blp.errors(401, 403, 404, 503)
    def get(self, build_id: str):
        """The log of a build the caller asked for (the `build` scope); the operator's, any."""
        ctx = context()
        caller = ctx.caller()
        require_scope(caller, "build")
        if request.accept_mimetypes.best == "text/event-stream":
            builds.get_build(build_id, caller=caller, store=ctx.store)
            return event_stream(_events(ctx.store, build_id,
                                        builds.follow_deadline(ctx.settings)))
        return Response(builds.build_log_text(build_id, caller=caller, store=ctx.store),
                        mimetype="text/plain")


def _events(store, build_id: str, deadline: float) -> Iterator[str]:
    """Server-sent events of a build's log until it is final (or the deadline passed, and
    then `done` carries a build still in progress), then `done` with the Build."""
    for entries in builds.follow_build(build_id, store=store, deadline=deadline):
        for _, entry in entries:
            yield sse(entry, event="phase" if "phase" in entry else "log")
        if not entries:  # a quiet while: keep proxies from closing the stream
            yield KEEPALIVE
    build = store.builds.get(build_id)
    yield sse(build_body(build) if build else {"id": build_id}, event="done")
