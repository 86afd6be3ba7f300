"""/api/tokens: user tokens with scopes (launch, build), issued and revoked by operators."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from marshmallow import Schema, fields, validate

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.api.stagings import StrictSchema
from binderq.domain.access import SCOPES, require_operator
from binderq.services import tokens

blp = Blueprint("tokens", __name__, url_prefix="/api/tokens",
                description="User tokens: what a front end or a script may do.")


class TokenInSchema(StrictSchema):
    scopes = fields.List(fields.String(validate=validate.OneOf(SCOPES)), required=True,
                         validate=validate.Length(min=1))
    note = fields.String(load_default="", validate=validate.Length(max=200))


class TokenSchema(Schema):
    id = fields.String()
    scopes = fields.List(fields.String())
    note = fields.String()
    created_at = fields.String()
    token = fields.String(metadata={"description": "Only in the answer that issues it"})


@blp.route("")
class Tokens(MethodView):
    @blp.arguments(TokenInSchema)
    @blp.response(201, TokenSchema)
    @blp.errors(400, 401, 403, 413, 503)
    def post(self, fields: dict[str, Any]):
        """Issue a user token (operator); the token is shown once."""
        ctx = context()
        require_operator(ctx.caller())
        return tokens.issue_token(fields["scopes"], fields["note"], store=ctx.store)


@blp.route("/<token_id:token_id>")
class TokenById(MethodView):
    @blp.response(204)
    @blp.errors(401, 403, 404, 503)
    def delete(self, token_id: str):
        """Revoke a user token (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        tokens.revoke_token(token_id, store=ctx.store)
