"""The pages for people: the launch form, badge links, /launch/{staging}, the operator's
dashboard, and Swagger UI's packaged assets. Server-rendered Jinja with a little vanilla
script, nothing from a CDN. create_app registers `blp` (not through flask-smorest, so the
pages stay out of the OpenAPI document)."""

from __future__ import annotations

from binderq.web import admin, launch  # noqa: F401 -- their routes join blp
from binderq.web.pages import SWAGGER_UI_ASSETS, blp

__all__ = ["SWAGGER_UI_ASSETS", "blp"]
