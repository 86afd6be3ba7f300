"""Log lines that can be followed: one JSON object per line (or plain text), each carrying the
request id of the API request it serves, in the API and in the Celery tasks that request
queued.

Reason to change: what a log line says, or how a request id is accepted.

The context (request id, task) lives in a ContextVar: the API sets it per request
(api/request_ids.py), a worker per task (workers/logs.py); a filter on the handler copies it
into every record, whichever logger wrote it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
# A request id a client may choose: bounded, and nothing a log reader or a header could
# misread (no spaces, quotes, newlines or separators).
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# The fields every line of this request or task carries: request_id, task, task_id.
_CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("binderq_log_context", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id", "task", "task_id", "color_message"}


def sane_request_id(value: str | None) -> str | None:
    """value if it may be used as a request id as it is, else None."""
    return value if value and _SANE_REQUEST_ID.fullmatch(value) else None


def new_request_id() -> str:
    return uuid.uuid4().hex


def request_id_from(header: str | None) -> str:
    """The client's request id if it is sane, else a new one."""
    return sane_request_id(header) or new_request_id()


def current_request_id() -> str | None:
    """The request id of the request (or task) this code runs for, if any."""
    context = _CONTEXT.get()
    return context.get("request_id") if context else None


def bind(**fields: str | None) -> Token:
    """Make fields (those not None) the log context from now on; reset(token) undoes it."""
    return _CONTEXT.set({key: value for key, value in fields.items() if value is not None})


def reset(token: Token) -> None:
    """Undo a bind; one made in another context (another thread) is not this one's to undo."""
    with contextlib.suppress(ValueError):
        _CONTEXT.reset(token)


class ContextFilter(logging.Filter):
    """Copy the log context into each record (request_id "-" when there is none)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get() or {}
        record.request_id = context.get("request_id", "-")
        record.task = context.get("task")
        record.task_id = context.get("task_id")
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, logger, message, the context's
    request_id, task and task_id, whatever `extra` fields the call gave, and exc."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "task", "task_id"):
            value = getattr(record, key, None)
            if value not in (None, "-"):
                line[key] = value
        line.update({key: value for key, value in vars(record).items()
                     if key not in _RECORD_FIELDS and not key.startswith("_")})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter of BINDERQ_LOG_FORMAT: json or text."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def use_format(handler: logging.Handler, log_format: str) -> None:
    """Give handler binderq's format and the log context (once)."""
    handler.setFormatter(formatter(log_format))
    if not any(isinstance(f, ContextFilter) for f in handler.filters):
        handler.addFilter(ContextFilter())


def gunicorn_log_config(log_format: str) -> dict[str, Any]:
    """gunicorn's logconfig_dict: its own lines (the master's too) in log_format. The root
    logger gets its handler from configure_logging, in the app."""
    handler = {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
               "formatter": "binderq", "filters": ["context"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "root": {"level": "INFO", "handlers": []},
        "loggers": {name: {"level": "INFO", "handlers": ["binderq"], "propagate": False,
                           "qualname": name} for name in ("gunicorn.error", "gunicorn.access")},
        "handlers": {"binderq": handler},
        "formatters": {"binderq": {"()": "binderq.logs.formatter", "log_format": log_format}},
        "filters": {"context": {"()": "binderq.logs.ContextFilter"}},
    }


def configure_logging(log_format: str, level: int | str = logging.INFO) -> None:
    """Root logs to stderr in log_format at level. Safe to call twice: binderq's handler is
    replaced, other handlers are left alone."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "binderq", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.binderq = True
    use_format(handler, log_format)
    root.addHandler(handler)
    root.setLevel(level)
