"""The reader's pages: the launch form at /, mybinder's badge links /v2/{provider}/{spec},
and /launch/{staging}. The pages launch nothing themselves: their script calls the doors
every client calls (BinderHub's stream, POST /api/stagings/{name}/servers), so the one
launch rule and the fair shares apply unchanged. A page binds the server it got to the
browser (binding.py) and resumes it when the same link is opened again."""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import quote

from flask import Response, jsonify, redirect, request

from binderq.api.binderhub import repo_and_ref
from binderq.api.context import context
from binderq.domain.errors import Conflict, InvalidInput, NotFound
from binderq.domain.models import Server, ServerStatus, StagingStatus
from binderq.domain.tokens import server_token, tokens_match
from binderq.services import servers
from binderq.web import binding
from binderq.web.links import PROVIDERS, badge, link_path, notebook_location, repository_spec
from binderq.web.pages import blp, page, raw_path, same_origin_post

OPEN_PARAMS = ("urlpath", "labpath", "filepath")
REPOSITORY_STAGING_PREFIX = "bh-"  # the BinderHub door's stagings, one per built image


def _secure() -> bool:
    return context().settings.public_url.startswith("https://")


@blp.get("/")
def index():
    """The launch form and the public stagings."""
    ctx = context()
    public = [staging for staging in ctx.store.stagings.list()
              if staging.public and staging.status == StagingStatus.READY
              and not staging.name.startswith(REPOSITORY_STAGING_PREFIX)]
    return page("index.html", stagings=sorted(public, key=lambda s: s.name),
                providers=PROVIDERS, launch_auth=ctx.settings.launch_auth)


@blp.get("/v2")
def form_link():
    """The form without script: its fields become the badge link, which the browser opens."""
    args = request.args
    provider = args.get("provider", "gh")
    spec = repository_spec(provider, args.get("repository", ""), args.get("ref", ""))
    file = args.get("file", "").strip()
    target = link_path(provider, spec) + (f"?labpath={quote(file)}" if file else "")
    return redirect(target, code=303)


@blp.get("/badge")
def badge_snippets():
    """The badge link and its Markdown for the form's fields (the form shows them live)."""
    args = request.args
    provider = args.get("provider", "gh")
    try:
        spec = repository_spec(provider, args.get("repository", ""), args.get("ref", ""))
    except InvalidInput as error:
        return jsonify({"message": str(error)}), 422
    made = badge(context().settings.public_url, provider, spec,
                 file=args.get("file", "").strip())
    return jsonify({"link": made.link, "image": made.image, "markdown": made.markdown,
                    "rst": made.rst})


@blp.get("/v2/<provider>/<path:spec>")
def repository_link(provider: str, spec: str):
    """Build (or find built), stage and launch a repository, shown live; then into it."""
    repo, ref = repo_and_ref(provider, spec)
    return _launch_page(kind="repository", what=f"{repo} at {ref}", staging=None)


@blp.get("/launch/<name>")
def staging_link(name: str):
    """Launch a public staging (from its pool when it has one), shown live; then into it."""
    staging = context().store.stagings.get(name)
    if staging is None or not staging.public:
        raise NotFound("Staging", f"there is no public staging {name!r}")
    return _launch_page(kind="staging", what=staging.description or name, staging=name)


@blp.post("/v2/<provider>/<path:spec>")
def repository_link_action(provider: str, spec: str):
    repo_and_ref(provider, spec)
    return _link_action(staging=None)


@blp.post("/launch/<name>")
def staging_link_action(name: str):
    return _link_action(staging=name)


def _here() -> str:
    """This link, as the browser sent it, with its query."""
    query = request.query_string.decode("latin-1")
    return raw_path() + (f"?{query}" if query else "")


def _launch_page(*, kind: str, what: str, staging: str | None) -> Response:
    resume = _resumable(staging)
    params = {name: request.args.get(name, "") for name in OPEN_PARAMS}
    launch = {"kind": kind, "staging": staging or "", "action": _here(), **params}
    response = page("launch.html", what=what, launch=launch, resume=resume)
    response.headers["Cache-Control"] = "no-store"  # a resumed page carries its token
    return response


def _resumable(staging: str | None) -> dict[str, Any] | None:
    """The server this browser got from this link, if it still runs: where to open it and
    when it will be culled."""
    ctx = context()
    bound = binding.bound_server(request.cookies.get(binding.COOKIE),
                                 secret_key=ctx.settings.secret_key, path=raw_path())
    server = ctx.store.servers.get(bound.server_id) if bound else None
    if server is None or server.status != ServerStatus.READY or not server.url:
        return None
    if staging is not None and server.staging != staging:
        return None
    return {"id": server.id, "location": _location(server),
            "cull_at": server.cull_at.isoformat() if server.cull_at else ""}


def _location(server: Server, *, lab: bool = False) -> str:
    token = server_token(context().settings.secret_key, server.id)
    params = {name: request.args.get(name, "") for name in OPEN_PARAMS}
    return notebook_location(server.url or "", token, lab=lab, **params)


def _link_action(*, staging: str | None) -> Response:
    """POST to a link: `bind` (the page got its server: remember it, answer where to open
    it) or `fresh` (stop the remembered server and launch anew)."""
    same_origin_post()
    fields = request.get_json(silent=True) if request.is_json else request.form
    action = (fields or {}).get("action")
    if action == "bind" and request.is_json:
        return _bind(fields, staging)
    if action == "fresh":
        return _start_fresh()
    return jsonify({"message": "action must be bind (JSON) or fresh"}), 400


def _bind(fields: dict[str, Any], staging: str | None) -> Response:
    ctx = context()
    server_id, token = str(fields.get("server_id", "")), str(fields.get("token", ""))
    server = ctx.store.servers.get(server_id) if server_id else None
    if server is None or not tokens_match(server_token(ctx.settings.secret_key, server_id),
                                          token):
        return jsonify({"message": "no such server, or not its token"}), 403
    if staging is not None and server.staging != staging:
        return jsonify({"message": f"server {server_id} is not of staging {staging}"}), 403
    response = jsonify({"location": _location(server, lab=bool(fields.get("lab")))})
    binding.bind(response, secret_key=ctx.settings.secret_key, server_id=server_id,
                 path=raw_path(), secure=_secure())
    return response


def _start_fresh() -> Response:
    ctx = context()
    bound = binding.bound_server(request.cookies.get(binding.COOKIE),
                                 secret_key=ctx.settings.secret_key, path=raw_path())
    if bound is not None:
        # Already gone or stopping: a fresh one is launched all the same.
        with contextlib.suppress(NotFound, Conflict):
            servers.request_stop(bound.server_id, store=ctx.store, queue=ctx.queue)
    response = redirect(_here(), code=303)
    binding.unbind(response, path=raw_path(), secure=_secure())
    return response


@blp.get("/badge.svg")
def badge_svg() -> Response:
    """The badge image a README shows."""
    response = blp.send_static_file("badge.svg")
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
