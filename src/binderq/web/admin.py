"""/admin/: the operator's dashboard. A login form (the token is posted, never put in a
URL) or the operator's Authorization header; then stagings and pools (sizes editable),
servers with a live cull countdown and a Stop button, recent builds and their logs, health
and queues. Every form POST carries the session's CSRF token. The page polls
/admin/state.json for its live view."""

from __future__ import annotations

from flask import Response, jsonify, redirect, request

from binderq.api.context import context
from binderq.domain.access import Caller
from binderq.domain.errors import FieldError, InvalidInput
from binderq.services import builds, pools, servers
from binderq.web import admin_session
from binderq.web.admin_session import AdminSession
from binderq.web.dashboard import dashboard_state
from binderq.web.pages import blp, page, same_origin_post

OPERATOR = Caller(is_operator=True)


def _answer(response: Response, session: AdminSession) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return admin_session.save(response, session)


def _login_page(session: AdminSession, *, status: int = 200, message: str = "") -> Response:
    return _answer(page("admin_login.html", status=status, csrf=session.csrf,
                        message=message), session)


def _operator_session() -> AdminSession | None:
    session = admin_session.current_session()
    return session if session.operator else None


@blp.get("/admin/")
def dashboard():
    """The dashboard, or the login form."""
    session = admin_session.current_session()
    if not session.operator:
        return _login_page(session)
    state = dashboard_state(context())
    return _answer(page("admin.html", state=state, csrf=session.csrf), session)


@blp.get("/admin")
def dashboard_without_slash():
    return redirect("/admin/", code=308)


@blp.post("/admin/login")
def log_in():
    same_origin_post()
    session = admin_session.current_session()
    admin_session.check_csrf(session)
    logged_in = admin_session.log_in(request.form.get("token", ""))
    if logged_in is None:
        return _login_page(session, status=401, message="That is not the operator token.")
    return _answer(redirect("/admin/", code=303), logged_in)


@blp.post("/admin/logout")
def log_out():
    same_origin_post()
    session = admin_session.current_session()
    admin_session.check_csrf(session)
    fresh = AdminSession(csrf=session.csrf, operator=False)
    return _answer(redirect("/admin/", code=303), fresh)


def _require_operator() -> AdminSession | Response:
    session = _operator_session()
    if session is None:
        return jsonify({"message": "log in at /admin/ first"}), 401
    return session


@blp.get("/admin/state.json")
def state():
    """The dashboard's figures, for its live view."""
    session = _require_operator()
    if not isinstance(session, AdminSession):
        return session
    return _answer(jsonify(dashboard_state(context())), session)


@blp.post("/admin/pools/<name>")
def resize_pool(name: str):
    session = _require_operator()
    if not isinstance(session, AdminSession):
        return session
    same_origin_post()
    admin_session.check_csrf(session)
    ctx = context()
    pools.set_pool_size(name, _size(request.form.get("size", "")), store=ctx.store,
                        queue=ctx.queue, settings=ctx.settings)
    return _answer(redirect("/admin/", code=303), session)


def _size(text: str) -> int:
    if not text.strip().isdigit():
        raise InvalidInput("Pool", message="size must be a whole number, 0 or more",
                           errors=[FieldError("size", "invalid", "a whole number")])
    return int(text)


@blp.post("/admin/servers/<server_id>/stop")
def stop_server(server_id: str):
    session = _require_operator()
    if not isinstance(session, AdminSession):
        return session
    same_origin_post()
    admin_session.check_csrf(session)
    ctx = context()
    servers.request_stop(server_id, store=ctx.store, queue=ctx.queue)
    return _answer(redirect("/admin/", code=303), session)


@blp.get("/admin/builds/<build_id>/log")
def build_log(build_id: str):
    session = _require_operator()
    if not isinstance(session, AdminSession):
        return session
    text = builds.build_log_text(build_id, caller=OPERATOR, store=context().store)
    return _answer(Response(text, mimetype="text/plain"), session)
