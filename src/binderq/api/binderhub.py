"""BinderHub's doors: GET /build/{provider}/{spec} streams build, stage and launch as
BinderHub does (a page written for BinderHub's API, Thebe say, works unchanged), and
GET /health answers as BinderHub's does."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from flask import Response, jsonify, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from binderq.adapters.git_source import RepositoryError
from binderq.api.auth import require_known_token, require_scope
from binderq.api.context import ApiContext, context
from binderq.domain.builds import BuildStatus
from binderq.domain.errors import BinderqError, FieldError, InvalidInput, TooManyBuilds
from binderq.domain.models import ServerStatus, StagingStatus
from binderq.services import builds, deploy, stagings
from binderq.services.health import health_report

blp = Blueprint("binderhub", __name__, description="BinderHub's build-and-launch stream.")

PROVIDERS = {"gh": "https://github.com/", "gl": "https://gitlab.com/"}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
POLL = 0.25  # seconds between looks at a build, staging or server
HEARTBEAT_EVERY = 15.0
PHASE_OF = {"queued": "waiting", "fetching": "fetching", "building": "building"}


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


@blp.route("/build/<provider>/<path:spec>")
class BuildAndLaunch(MethodView):
    @blp.response(200, description="text/event-stream of {phase, message} events: "
                  "waiting, fetching, building, built, launching, then ready (with url, "
                  "token and image) or failed")
    def get(self, provider: str, spec: str):
        """Build (or find built), stage and launch a repository, as BinderHub streams it."""
        ctx = context()
        caller = ctx.caller()
        if ctx.settings.launch_auth == "open":
            require_known_token(caller)
        else:
            require_scope(caller, "build")
            require_scope(caller, "launch")
        repo, ref = repo_and_ref(provider, spec)
        try:
            build = builds.request_build(repo, ref, None, store=ctx.store, queue=ctx.queue,
                                         git=ctx.git, settings=ctx.settings)
        except RepositoryError as error:
            raise _invalid("ref", str(error)) from error
        except TooManyBuilds as error:  # BinderHub says so in the stream, as `failed`
            return Response(_event("failed", error.message), mimetype="text/event-stream",
                            headers=STREAM_HEADERS)
        events = stream_with_context(_build_and_launch(ctx, build))
        return Response(events, mimetype="text/event-stream", headers=STREAM_HEADERS)


@blp.route("/health")
class BinderHubHealth(MethodView):
    @blp.response(200, description="BinderHub's health format")
    def get(self):
        """Health as BinderHub answers it: {ok, checks: [{service, ok}]}."""
        ctx = context()
        report = health_report(store=ctx.store, proxy=ctx.proxy, queue=ctx.queue)
        checks = [{"service": name, **check} for name, check in report["checks"].items()]
        response = jsonify({"ok": report["ok"], "checks": checks})
        response.status_code = 200 if report["ok"] else 503
        return response


def _event(phase: str, message: str = "", **fields: Any) -> str:
    return f"data: {json.dumps({'phase': phase, 'message': message, **fields})}\n\n"


def _build_and_launch(ctx: ApiContext, build: Any) -> Iterator[str]:
    if not build.cached:  # a cached build's log is history: go straight to launching
        build = yield from _follow_build(ctx, build.id)
    if build is None or build.status != BuildStatus.SUCCEEDED:
        yield _event("failed", build.error if build else "the build vanished")
        return
    yield _event("built", f"image {build.image} is built")
    try:
        staging = yield from _staged(ctx, build)
        yield _event("launching", "starting your server")
        launch = deploy.request_launch(staging, store=ctx.store, queue=ctx.queue,
                                       settings=ctx.settings)
        server = yield from _until_ready(ctx, launch.server.id)
    except BinderqError as error:
        yield _event("failed", str(error))
        return
    yield _event("ready", "server ready", url=server.url, token=launch.token,
                 image=build.image)


def _follow_build(ctx: ApiContext, build_id: str) -> Iterator[str]:
    """Events of the build's phases and log lines until it is final; returns the build."""
    for entries in builds.follow_build(build_id, store=ctx.store,
                                       quiet_ms=int(HEARTBEAT_EVERY * 1000)):
        for _, entry in entries:
            if entry.get("phase") in PHASE_OF:
                yield _event(PHASE_OF[entry["phase"]], entry.get("message", ""))
            elif "line" in entry:
                yield _event("building", entry["line"] + "\n")
        if not entries:
            yield ": heartbeat\n\n"
    return ctx.store.builds.get(build_id)


def _staged(ctx: ApiContext, build: Any) -> Iterator[str]:
    """The built image's staging (made, or found unchanged), once ready."""
    name = "bh-" + hashlib.sha256(build.image.encode()).hexdigest()[:16]
    change = stagings.put_staging(name, {"image": build.image, "source": {
        "repo": build.repo, "commit": build.commit}}, store=ctx.store, queue=ctx.queue)
    staging = change.staging
    while staging.status == StagingStatus.STAGING:
        yield ": staging\n\n"
        time.sleep(POLL)
        staging = stagings.get_staging(name, store=ctx.store)
    if staging.status == StagingStatus.FAILED:
        raise InvalidInput("Staging", message=staging.error or "staging failed")
    return staging


def _until_ready(ctx: ApiContext, server_id: str) -> Iterator[str]:
    quiet_since = time.monotonic()
    while True:
        server = ctx.store.servers.get(server_id)
        if server.status == ServerStatus.READY:
            return server
        if server.status.is_terminal or server.status == ServerStatus.STOPPING:
            raise InvalidInput("Server", message=server.error or f"server {server.status}")
        if time.monotonic() - quiet_since > HEARTBEAT_EVERY:
            quiet_since = time.monotonic()
            yield ": heartbeat\n\n"
        time.sleep(POLL)
