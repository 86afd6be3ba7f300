"""The HTTP API: create_app(settings) wires the views to the adapters it is given."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_smorest import Api
from werkzeug.middleware.proxy_fix import ProxyFix

from binderq import web
from binderq.api import (
    binderhub,
    builds,
    health,
    maintenance,
    metrics,
    pools,
    servers,
    stagings,
    tasks,
    tmpnb,
    tokens,
)
from binderq.api.body_limit import enable_body_limit
from binderq.api.context import EXTENSION, ApiContext
from binderq.api.cors import enable_cors
from binderq.api.deployment_proof import enable_deployment_proof
from binderq.api.errors import ErrorSchema, register_error_handlers
from binderq.api.limits import init_limits
from binderq.api.paths import register_path_parts
from binderq.api.request_ids import install_request_ids
from binderq.api.schema_extras import SchemaExtrasPlugin
from binderq.settings import Settings

MAX_BODY_BYTES = 1024 * 1024


SECURITY_SCHEMES = {
    "token": {"type": "apiKey", "in": "header", "name": "Authorization",
              "description": "`token <TOKEN>` or `Bearer <TOKEN>`"},
    # BinderHub's door only: Thebe's EventSource cannot send headers.
    "token_query": {"type": "apiKey", "in": "query", "name": "token",
                    "description": "the token, for the BinderHub door only"},
}


class BinderqApi(Api):
    """flask-smorest's Api, with binderq's error format instead of its own: in the answers,
    and in the document (every error response an operation declares has ErrorSchema; no
    catch-all `default`, so the document says which codes each operation answers)."""

    ERROR_SCHEMA = ErrorSchema
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _register_error_handlers(self) -> None:
        register_error_handlers(self._app)


def create_app(settings: Settings, *, store: Any, queue: Any, proxy: Any,
               git: Any = None) -> Flask:
    """The Flask app; adapters are passed in so that tests can use fakes."""
    app = Flask("binderq")
    app.config.update(
        API_TITLE="binderq",
        API_VERSION="1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=web.SWAGGER_UI_ASSETS,  # packaged assets: works offline
        MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
    )
    if settings.trusted_proxies:  # request.remote_addr becomes the client's own address
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=0,
                                x_host=0, x_port=0, x_prefix=0)
    app.json.sort_keys = False  # Flask 3 reads this, not JSON_SORT_KEYS; sorting is waste
    app.url_map.strict_slashes = False  # /api/spawn and /api/spawn/ alike, as tmpnb took
    app.extensions[EXTENSION] = ApiContext(settings=settings, store=store, queue=queue,
                                           proxy=proxy, git=git)
    api = BinderqApi(app, spec_kwargs={
        "components": {"securitySchemes": SECURITY_SCHEMES},
        "security": [{"token": []}], "extra_plugins": [SchemaExtrasPlugin()]})
    register_path_parts(app, api)
    enable_body_limit(app, MAX_BODY_BYTES)
    for module in (builds, stagings, servers, pools, tmpnb, tasks, tokens, maintenance,
                   health, binderhub):
        api.register_blueprint(module.blp)
    app.register_blueprint(metrics.blp)
    app.register_blueprint(web.blp)  # the pages: not in the OpenAPI document
    install_request_ids(app)
    init_limits(app, settings)
    enable_cors(app, settings.cors_allow_origin)
    enable_deployment_proof(app, settings.deployment_key)
    return app
