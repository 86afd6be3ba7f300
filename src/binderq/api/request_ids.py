"""Every API request has an id: the client's X-Request-Id if it is sane, else a new one. It is
in the answer's X-Request-Id, in every log line the request writes, and in the tasks it
queues (workers/logs.py); each request ends with one line that says what it was."""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from binderq import logs

log = logging.getLogger("binderq.api.requests")


def install_request_ids(app: Flask) -> None:
    """Give app's requests their ids and their closing log line."""

    @app.before_request
    def bind_request_id() -> None:
        g.request_started = time.perf_counter()
        g.request_id = logs.request_id_from(request.headers.get(logs.REQUEST_ID_HEADER))
        g.log_context = logs.bind(request_id=g.request_id)

    @app.after_request
    def answer_with_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is None:  # refused before any before_request ran (a 413, say)
            return response
        response.headers[logs.REQUEST_ID_HEADER] = request_id
        elapsed_ms = (time.perf_counter() - g.request_started) * 1000
        log.info("%s %s %s %.1f ms", request.method, request.path, response.status_code,
                 elapsed_ms, extra={"method": request.method, "path": request.path,
                                    "status": response.status_code,
                                    "duration_ms": round(elapsed_ms, 1)})
        return response

    @app.teardown_request
    def forget_request_id(_error: BaseException | None = None) -> None:
        token = g.pop("log_context", None)
        if token is not None:
            logs.reset(token)
