"""The pages' blueprint and what every page shares: rendering with the security headers
(scripts and styles only from this origin), the HTML error pages (a JSON error stays JSON
under the API's paths), the same-origin check of a page's POST, and Swagger UI's assets
served from the swagger-ui-bundle package (so /api/docs works offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    send_from_directory,
)
from werkzeug.exceptions import HTTPException

from binderq.api.context import context
from binderq.api.errors import STATUS_OF, handle_http_exception
from binderq.domain.errors import BinderqError

blp = Blueprint("web", __name__, template_folder="templates", static_folder="static",
                static_url_path="/static/web")

# Paths whose answers are JSON (or a stream, or Prometheus text): never an HTML page.
API_PREFIXES = ("/api", "/build", "/health", "/metrics")
SWAGGER_UI_ASSETS = "/api/docs/assets/"


def is_api_path(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in API_PREFIXES)


def _content_security_policy() -> str:
    """Everything from this origin; the page's script may also ask the notebook (at the
    public URL) whether it serves JupyterLab."""
    public = urlsplit(context().settings.public_url)
    notebook_origin = f"{public.scheme}://{public.netloc}" if public.netloc else ""
    return ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            f"connect-src 'self' {notebook_origin}; frame-ancestors 'none'; "
            "form-action 'self'; base-uri 'none'").replace("  ", " ")


def page(template: str, status: int = 200, **values: Any) -> Response:
    """A rendered page with the pages' security headers."""
    response = Response(render_template(template, **values), status=status,
                        mimetype="text/html")
    response.headers["Content-Security-Policy"] = _content_security_policy()
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # a notebook URL carries its token
    return response


def error_page(status: int, title: str, message: str) -> Response:
    return page("error.html", status=status, title=title, message=message)


@blp.errorhandler(BinderqError)
def domain_error(error: BinderqError) -> Response:
    """A page's refusal as a page: the same status the API would answer."""
    status = next((code for kind, code in STATUS_OF.items() if isinstance(error, kind)), 500)
    if request.is_json:  # a page's script asked: it reads the message
        return jsonify({"message": str(error)}), status
    return error_page(status, "That did not work", str(error))


@blp.app_errorhandler(404)
def not_found(error: HTTPException):
    """An unknown page is an HTML page; an unknown API path stays the API's JSON 404."""
    if is_api_path(request.path):
        return handle_http_exception(error)
    return error_page(404, "Not found", f"There is nothing at {request.path}.")


def raw_path() -> str:
    """This request's path as the browser sent it (still percent-encoded): a cookie's Path
    is compared with that, not with the decoded path Flask routes on."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
    path = raw.split("?", 1)[0]
    return path if path.startswith("/") else quote(request.path)


def same_origin_post() -> None:
    """Refuse a POST another site's page made: browsers send Origin with every POST."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        abort(Response("cross-origin request refused", status=403))


@blp.get(SWAGGER_UI_ASSETS + "<path:filename>")
def swagger_ui_asset(filename: str) -> Response:
    """Swagger UI's scripts and styles, from the swagger-ui-bundle package."""
    import swagger_ui_bundle

    return send_from_directory(Path(swagger_ui_bundle.swagger_ui_path), filename,
                               max_age=24 * 3600)
