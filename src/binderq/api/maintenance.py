"""/api/reconcile: repair state now, rather than at the next scheduled run (operator)."""

from __future__ import annotations

from flask import jsonify
from flask.views import MethodView
from marshmallow import Schema, fields

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.api.stagings import StrictSchema
from binderq.domain.access import require_operator
from binderq.tasks import RECONCILE

blp = Blueprint("maintenance", __name__, url_prefix="/api",
                description="Reconcile Redis, Docker and the proxy on demand.")

class ReconcileArgs(StrictSchema):
    adopt = fields.Boolean(load_default=None, allow_none=True, metadata={
        "description": "adopt labelled containers Redis does not know (default: "
                       "BINDERQ_ORPHANS)"})


class QueuedSchema(Schema):
    status = fields.String()
    task_id = fields.String()


@blp.route("/reconcile")
class Reconcile(MethodView):
    @blp.arguments(ReconcileArgs, location="query")
    @blp.response(202, QueuedSchema)
    @blp.errors(401, 403, 503)
    def post(self, args):
        """Queue a reconcile; poll /api/tasks/{task_id} for the repairs it made."""
        ctx = context()
        require_operator(ctx.caller())
        task_id = ctx.queue.enqueue(RECONCILE.name, args["adopt"])
        response = jsonify({"status": "queued", "task_id": task_id})
        response.status_code = 202
        response.headers["Location"] = f"/api/tasks/{task_id}"
        return response
