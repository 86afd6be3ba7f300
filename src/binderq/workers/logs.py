"""The request id travels with the tasks it queues, and a worker's log lines are binderq's.

Reason to change: how Celery's logging or messages carry binderq's log context.

- Publishing (the API, or a task that queues another): the current request id goes into the
  message's headers (before_task_publish), so it reaches the worker with the task.
- Running (a worker's pool process): task_prerun makes it, with the task's name and id, the
  log context of every line the task writes; task_postrun forgets it.
- Celery sets its handlers up as usual (--loglevel, --logfile, stdout redirected), then
  binderq's format replaces Celery's (after_setup_logger, after_setup_task_logger).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

from binderq import logs

HEADER = "binderq_request_id"  # the message header (Celery exposes it as request.<header>)
_tokens: dict[str, Any] = {}  # task id -> the log context token its prerun set


def carry_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """before_task_publish: put the current request id into the message's headers."""
    request_id = logs.current_request_id()
    if request_id and headers is not None:
        headers.setdefault(HEADER, request_id)


def bind_task_context(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """task_prerun: the task's request id (if its message carried one) and the task."""
    request = getattr(task, "request", None)
    request_id = logs.sane_request_id(getattr(request, HEADER, None))
    _tokens[task_id] = logs.bind(request_id=request_id, task=getattr(task, "name", None),
                                 task_id=task_id)


def forget_task_context(task_id: str | None = None, **_: Any) -> None:
    """task_postrun: the lines after this task are not its."""
    token = _tokens.pop(task_id, None)
    if token is not None:
        logs.reset(token)


def install_task_logging(log_format: str) -> None:
    """Connect binderq's handlers to Celery's signals (once per process)."""

    def format_handlers(logger: logging.Logger | None = None, **_: Any) -> None:
        for handler in (logger.handlers if logger else []):
            logs.use_format(handler, log_format)

    connections = (
        (signals.before_task_publish, carry_request_id),
        (signals.task_prerun, bind_task_context),
        (signals.task_postrun, forget_task_context),
        (signals.after_setup_logger, format_handlers),
        (signals.after_setup_task_logger, format_handlers),
    )
    for signal, receiver in connections:
        signal.connect(receiver, weak=False,
                       dispatch_uid=f"binderq.logs.{signal.name}")
