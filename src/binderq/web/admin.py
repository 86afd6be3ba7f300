"""/admin/: the operator's dashboard. A login form (the token is posted, never put in a
URL) or the operator's Authorization header; then stagings and pools (sizes editable),
servers with a live cull countdown and a Stop button, recent builds and their logs, health
and queues. Every form POST carries the session's CSRF token. The page polls
/admin/state.json for its live view."""

from __future__ import annotations

from functools import wraps

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


def _operator_only(*, form: bool = False):
    """The view for a logged-in operator only (401 otherwise); with form, a POST from this
    site carrying the session's CSRF token. The answer renews the session's cookie."""
    def wrap(view):
        @wraps(view)
        def checked(*args, **kwargs):
            session = _operator_session()
            if session is None:
                return jsonify({"message": "log in at /admin/ first"}), 401
            if form:
                same_origin_post()
                admin_session.check_csrf(session)
            return _answer(view(*args, **kwargs), session)
        return checked
    return wrap


@blp.get("/admin/state.json")
@_operator_only()
def state():
    """The dashboard's figures, for its live view."""
    return jsonify(dashboard_state(context()))


@blp.post("/admin/pools/<name>")
@_operator_only(form=True)
def resize_pool(name: str):
    ctx = context()
    pools.set_pool_size(name, _size(request.form.get("size", "")), store=ctx.store,
                        queue=ctx.queue, settings=ctx.settings)
    return redirect("/admin/", code=303)


def _size(text: str) -> int:
    if not text.strip().isdigit():
        raise InvalidInput("Pool", message="size must be a whole number, 0 or more",
                           errors=[FieldError("size", "invalid", "a whole number")])
    return int(text)


@blp.post("/admin/servers/<server_id>/stop")
@_operator_only(form=True)
def stop_server(server_id: str):
    ctx = context()
    servers.request_stop(server_id, store=ctx.store, queue=ctx.queue)
    return redirect("/admin/", code=303)


@blp.get("/admin/builds/<build_id>/log")
@_operator_only()
def build_log(build_id: str):
    text = builds.build_log_text(build_id, caller=OPERATOR, store=context().store)
    return Response(text, mimetype="text/plain")
