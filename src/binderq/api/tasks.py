"""/api/tasks/{id}: the state of work queued for the workers."""

from __future__ import annotations

from flask.views import MethodView
from marshmallow import Schema, fields

from binderq.api.blueprint import Blueprint
from binderq.api.context import context
from binderq.domain.access import require_operator
from binderq.domain.errors import NotFound

blp = Blueprint("tasks", __name__, url_prefix="/api/tasks",
                description="Queued work and its Celery state.")


class TaskSchema(Schema):
    id = fields.String()
    name = fields.String()
    state = fields.String(metadata={"description": "Celery state: PENDING, STARTED, SUCCESS, "
                                                   "FAILURE, RETRY, REVOKED"})
    result = fields.Raw(allow_none=True)
    error = fields.String(allow_none=True)


@blp.route("/<task_id:task_id>")
class TaskById(MethodView):
    @blp.response(200, TaskSchema)
    @blp.errors(401, 403, 404, 503)
    def get(self, task_id: str):
        """One task binderq queued (operator)."""
        ctx = context()
        require_operator(ctx.caller())
        task = ctx.queue.task(task_id)
        if task is None:
            raise NotFound("Task", task_id)
        return task
