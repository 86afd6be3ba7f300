"""/api/stagings: named templates to deploy (image, command, port, limits, services...)."""

from __future__ import annotations

from typing import Any

from flask import url_for
from flask.views import MethodView
from marshmallow import (
    RAISE,
    Schema,
    ValidationError,
    fields,
    validate,
    validates,
    validates_schema,
)

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.api.paths import BUILD_ID
from binderq.domain.access import require_operator
from binderq.domain.applications import KINDS, unchecked_token_problem
from binderq.domain.builds import provenance_source
from binderq.domain.models import Resources, Staging, to_dict
from binderq.domain.spec import memory_bytes
from binderq.domain.staging_rules import (
    ENV_NAME,
    IMAGE,
    IMAGE_HELP,
    MAX_DATA,
    MAX_ENV,
    MAX_SERVICES,
    MAX_TARGET,
    PROBE_PATH,
    SERVICE_HELP,
    SERVICE_NAME,
    VOLUME_HELP,
    VOLUME_NAME,
)
from binderq.services import deploy, stagings

blp = Blueprint("stagings", __name__, url_prefix="/api/stagings",
                description="Stage: named templates that servers are deployed from.")

MIN_MEMORY = 16 * 1024**2
MAX_MEMORY = 64 * 1024**3



def image_field(**kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Regexp(IMAGE, error=IMAGE_HELP), **kwargs)


def env_field() -> fields.Dict:
    return fields.Dict(keys=fields.String(validate=validate.Regexp(ENV_NAME)),
                       values=fields.String(validate=validate.Length(max=8192)),
                       validate=validate.Length(max=MAX_ENV), load_default=dict)


def command_field(**kwargs: Any) -> fields.List:
    return fields.List(fields.String(validate=validate.Length(min=1, max=4096)),
                       validate=validate.Length(min=1, max=64), **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ResourcesSchema(StrictSchema):
    memory = fields.String(load_default=Resources.memory)
    cpus = fields.Float(load_default=Resources.cpus, validate=validate.Range(min=0.01, max=64))
    pids = fields.Integer(load_default=Resources.pids,
                          validate=validate.Range(min=8, max=65536))

    @validates("memory")
    def validate_memory(self, value: str, **_: Any) -> None:
        try:
            size = memory_bytes(value)
        except ValueError as error:
            raise ValidationError(str(error)) from error
        if not MIN_MEMORY <= size <= MAX_MEMORY:
            raise ValidationError("memory must be between 16m and 64g")


class ServiceSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Regexp(SERVICE_NAME,
                                                                 error=SERVICE_HELP))
    image = image_field(required=True)
    env = env_field()
    command = command_field(allow_none=True)


class DataSchema(StrictSchema):
    volume = fields.String(required=True, validate=validate.Regexp(VOLUME_NAME,
                                                                   error=VOLUME_HELP))
    target = fields.String(required=True, validate=[
        validate.Regexp(r"^/[^\0]*$", error="an absolute path in the container"),
        validate.NoneOf(["/"], error="cannot mount over /"),
        validate.Length(max=MAX_TARGET)])
    read_only = fields.Boolean(load_default=True)


class SourceSchema(StrictSchema):
    repo = fields.String(validate=validate.Length(max=2048), allow_none=True)
    commit = fields.String(validate=validate.Length(max=128), allow_none=True)


class SourceOutSchema(SourceSchema):
    """A staging's source, with what its image's provenance labels say when it was staged."""

    spec_hash = fields.String(metadata={"description": "hash of the environment spec the "
                                                      "image was built from"})
    build = fields.String(metadata={"description": "the id of the build that made the image"})
    labels = fields.Dict(keys=fields.String(), values=fields.String(), metadata={
        "description": "the image's binderq.build.* labels, verbatim"})


class ProbeSchema(StrictSchema):
    """How to tell a server is ready: one of http (a path under its base_url that answers
    2xx or 3xx) or tcp (its port accepts connections)."""

    http = fields.String(validate=validate.Regexp(PROBE_PATH, error=(
        "a path under the server's base_url, such as api/status (no leading /, no ..)")))
    tcp = fields.Boolean(validate=validate.Equal(True, error="tcp can only be true"))

    @validates_schema
    def validate_one(self, data: dict[str, Any], **_: Any) -> None:
        if len(data) != 1:
            raise ValidationError('give one of {"http": "<path>"} or {"tcp": true}')


class StagingFieldsSchema(StrictSchema):
    """A staging's fields but its image; every one has a default."""

    command = command_field(allow_none=True)
    port = fields.Integer(load_default=Staging.port, validate=validate.Range(min=1, max=65535))
    env = env_field()
    resources = fields.Nested(ResourcesSchema, load_default=lambda: ResourcesSchema().load({}))
    services = fields.List(fields.Nested(ServiceSchema), load_default=list,
                           validate=validate.Length(max=MAX_SERVICES))
    data = fields.List(fields.Nested(DataSchema), load_default=list,
                       validate=validate.Length(max=MAX_DATA))
    # The defaults are the Staging record's own: one definition.
    cull_timeout = fields.Integer(load_default=Staging.cull_timeout,
                                  validate=validate.Range(min=1, max=7 * 86400))
    max_age = fields.Integer(load_default=Staging.max_age,
                             validate=validate.Range(min=1, max=30 * 86400))
    public = fields.Boolean(load_default=False)
    description = fields.String(load_default="", validate=validate.Length(max=2000))
    max_servers = fields.Integer(load_default=None, allow_none=True, strict=True,
                                 validate=validate.Range(min=1), metadata={
                                     "description": "servers of this staging at once, pooled "
                                                    "ones too (429 past it); null: no limit"})
    source = fields.Nested(SourceSchema, load_default=dict)
    kind = fields.String(load_default=Staging.kind, validate=validate.OneOf(KINDS), metadata={
        "description": "what a server's url points at (docs/applications.md)"})
    probe = fields.Nested(ProbeSchema, load_default=None, allow_none=True, metadata={
        "description": "readiness probe; null: the kind's own (Jupyter's api/status for "
                       "notebook, api for kernel-gateway, tcp for web)"})
    public_url_is_secret = fields.Boolean(load_default=False, metadata={
        "description": "a web app that checks no token: anyone with its url may use it"})

    @validates_schema
    def validate_token_is_checked(self, data: dict[str, Any], **_: Any) -> None:
        problem = unchecked_token_problem(data.get("kind", Staging.kind), data.get("command"),
                                          data.get("public_url_is_secret", False))
        if problem:
            raise ValidationError(problem, "public_url_is_secret")

    @validates("services")
    def validate_unique_services(self, value: list[dict[str, Any]], **_: Any) -> None:
        names = [service.get("name") for service in value]  # a bad one has none
        if len(names) != len(set(names)):
            raise ValidationError("service names must be unique")


class StagingInSchema(StagingFieldsSchema):
    """The fields of a staging that a PUT sets: `image` or `build` (the id of a succeeded
    build, whose image and source it takes), and the others."""

    OPENAPI_EXTRA = {"oneOf": [{"required": ["image"]}, {"required": ["build"]}]}

    image = image_field()
    build = fields.String(validate=validate.Regexp(BUILD_ID.pattern, error="a build id"),
                          metadata={"description": "a succeeded build's id, instead of image"})

    @validates_schema
    def validate_image_or_build(self, data: dict[str, Any], **_: Any) -> None:
        if "image" not in data and "build" not in data:
            raise ValidationError("Missing data for required field: image, or build (a "
                                  "build id).", "image")
        if "image" in data and "build" in data:
            raise ValidationError("give image or build (a build id), not both", "build")


class ServiceOutSchema(ServiceSchema):
    image_id = fields.String(allow_none=True, metadata={"description": "the image id its "
                                                                       "containers run"})


class StagingSchema(Schema):
    name = fields.String()
    image = fields.String()
    image_id = fields.String(allow_none=True, metadata={
        "description": "the image id every server of this version runs, recorded when it was "
                       "staged; a moved tag does not change it (PUT the staging again)"})
    kind = fields.String(metadata={"enum": list(KINDS)})
    probe = fields.Nested(ProbeSchema, allow_none=True)
    public_url_is_secret = fields.Boolean()
    command = fields.List(fields.String(), allow_none=True)
    port = fields.Integer()
    env = fields.Dict(keys=fields.String(), values=fields.String())
    resources = fields.Nested(ResourcesSchema)
    services = fields.List(fields.Nested(ServiceOutSchema))
    data = fields.List(fields.Nested(DataSchema))
    cull_timeout = fields.Integer()
    max_age = fields.Integer()
    public = fields.Boolean()
    description = fields.String()
    max_servers = fields.Integer(allow_none=True)
    source = fields.Nested(SourceOutSchema)
    status = fields.String(metadata={"enum": ["staging", "ready", "failed"]})
    error = fields.String(allow_none=True)
    version = fields.Integer()
    pulls = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={
        "description": "with many Docker hosts: each host's pull of this version's images "
                       "from the registry (version, status: pulled or failed, images, at, "
                       "error)"})
    created_at = fields.String()
    updated_at = fields.String()
    task_id = fields.String(allow_none=True)


class DeleteArgs(StrictSchema):
    force = fields.Boolean(load_default=False)


def staging_body(staging: Staging) -> dict[str, Any]:
    """A staging as the API shows it: its record, its source completed from its image's
    provenance labels, and each sidecar's staged image id."""
    body = to_dict(staging)
    given = {key: value for key, value in body["source"].items() if value}
    body["source"] = {**provenance_source(staging.provenance), **given}
    if staging.provenance:
        body["source"]["labels"] = dict(staging.provenance)
    for service in body["services"]:
        service["image_id"] = staging.service_image_ids.get(service["name"])
    return body


@blp.route("")
class Stagings(MethodView):
    @blp.response(200, StagingSchema(many=True))
    @blp.errors(401, 403, 503)
    def get(self):
        """Every staging (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        return [staging_body(staging) for staging in ctx.store.stagings.list()]


@blp.route("/<staging_name:name>")
class StagingByName(MethodView):
    @blp.arguments(StagingInSchema)
    @blp.response(200, StagingSchema)
    @blp.alt_response(202, schema=StagingSchema, description="Accepted: the image is being "
                      "checked on the Docker engine (status `staging`)")
    @blp.errors(400, 401, 403, 409, 413, 503)
    def put(self, fields: dict[str, Any], name: str):
        """Create or replace a staging (operator). 202 while it is staged; 200 if unchanged."""
        ctx = context()
        require_operator(ctx.caller())
        if "build" in fields:
            fields = stagings.with_build_image(fields, store=ctx.store)
        change = stagings.put_staging(name, fields, store=ctx.store,
                                      queue=ctx.queue)
        body = {**staging_body(change.staging), "task_id": change.task_id}
        if change.outcome == "unchanged":
            return body, 200
        return body, 202, {"Location": url_for("stagings.StagingByName", name=name)}

    @blp.response(200, StagingSchema)
    @blp.errors(401, 403, 404, 422, 503)
    def get(self, name: str):
        """One staging (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        return staging_body(stagings.get_staging(name, store=ctx.store))

    @blp.arguments(DeleteArgs, location="query")
    @blp.response(204)
    @blp.errors(401, 403, 404, 409, 503)
    def delete(self, args: dict[str, Any], name: str):
        """Delete a staging (operator); 409 while servers run, unless ?force=true."""
        ctx = context()
        require_operator(ctx.caller())
        deploy.delete_staging(name, force=args["force"], store=ctx.store,
                               queue=ctx.queue)
