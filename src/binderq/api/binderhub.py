"""BinderHub's doors: GET /build/{provider}/{spec} streams build, stage and launch as
BinderHub does (a page written for BinderHub's API, Thebe say, works unchanged), and
GET /health answers as BinderHub's does."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import unquote

from flask import jsonify
from flask.views import MethodView
from marshmallow import Schema, fields

from binderq.api.blueprint import ANYONE, OPTIONAL_TOKEN, Blueprint
from binderq.api.context import context
from binderq.api.health import health_for
from binderq.api.streams import KEEPALIVE, event_stream, sse
from binderq.domain.errors import FieldError, InvalidInput
from binderq.services.repo_launch import Progress, build_and_launch

blp = Blueprint("binderhub", __name__, description="BinderHub's build-and-launch stream.")

PROVIDERS = {"gh": "https://github.com/", "gl": "https://gitlab.com/"}


def repo_and_ref(provider: str, spec: str) -> tuple[str, str]:
    """gh/ORG/REPO/REF, gl/GROUP/.../REPO/REF, git/URL-ESCAPED-URL/REF -> (repo, ref)."""
    path, _, ref = spec.rpartition("/")
    if not path or not ref:
        raise _invalid("spec", f"{provider}/{spec} is not {provider}/<repository>/<ref>")
    if provider in PROVIDERS:
        return PROVIDERS[provider] + path, unquote(ref)
    if provider == "git":
        return unquote(path), unquote(ref)
    raise _invalid("provider", f"unknown provider {provider!r}: gh, gl or git")


def _invalid(field: str, message: str) -> InvalidInput:
    return InvalidInput("Build", message=message, errors=[FieldError(field, "invalid",
                                                                     message)])


class ServiceCheckSchema(Schema):
    service = fields.String()
    ok = fields.Boolean()
    error = fields.String()
    latency_ms = fields.Float()


class BinderHubHealthSchema(Schema):
    ok = fields.Boolean()
    checks = fields.List(fields.Nested(ServiceCheckSchema))


@blp.route("/build/<provider>/<path:spec>")
class BuildAndLaunch(MethodView):
    @blp.response(200, description="text/event-stream of {phase, message} events: "
                  "waiting, fetching, building, built, launching, then ready (with url, "
                  "token and image) or failed", content_type="text/event-stream")
    @blp.errors(401, 403, 422, 429, 503)
    @blp.security([*OPTIONAL_TOKEN, {"token_query": []}])
    def get(self, provider: str, spec: str):
        """Build (or find built), stage and launch a repository, as BinderHub streams it.
        Open launch auth: anyone. Token launch auth: the `build` and `launch` scopes, the
        token in `Authorization` or, as Thebe's EventSource sends no headers, `?token=`."""
        ctx = context()
        repo, ref = repo_and_ref(provider, spec)
        caller = ctx.caller()
        progress = build_and_launch(repo, ref, caller=caller, store=ctx.store,
                                    queue=ctx.queue, git=ctx.git, settings=ctx.settings,
                                    cache=ctx.stagings)
        return event_stream(_binderhub_events(progress))


@blp.route("/health")
class BinderHubHealth(MethodView):
    @blp.response(200, BinderHubHealthSchema, description="BinderHub's health format")
    @blp.alt_response(503, schema=BinderHubHealthSchema, description="A dependency is down")
    @blp.security(ANYONE)
    def get(self):
        """Health as BinderHub answers it: {ok, checks: [{service, ok}]}."""
        ctx = context()
        report = health_for(ctx)
        checks = [{"service": name, **check} for name, check in report["checks"].items()]
        response = jsonify({"ok": report["ok"], "checks": checks})
        response.status_code = 200 if report["ok"] else 503
        return response


def _binderhub_events(progress: Iterator[Progress]) -> Iterator[str]:
    """BinderHub's framing: `data: {"phase", "message", ...}`, heartbeats as comments."""
    for step in progress:
        if not step.phase:  # a heartbeat
            yield KEEPALIVE
        else:
            yield sse({"phase": step.phase, "message": step.message, **step.details})
