"""What a marshmallow schema checks in code (a `validates_schema`) but apispec cannot see:
a schema class says it in `OPENAPI_EXTRA`, and this plugin adds it to the schema's
component, so the document refuses what the API refuses."""

from __future__ import annotations

from typing import Any

from apispec import BasePlugin


class SchemaExtrasPlugin(BasePlugin):
    def schema_helper(self, name: str, definition: dict[str, Any], **kwargs: Any
                      ) -> dict[str, Any] | None:
        schema = kwargs.get("schema")
        extra = getattr(schema, "OPENAPI_EXTRA", None)
        return dict(extra) if extra else None
