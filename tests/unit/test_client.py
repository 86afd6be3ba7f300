"""The API client's reading of answers: errors as one line with an exit code, and
server-sent events, without a service (tests/integration/test_cli.py runs the real one)."""

from __future__ import annotations

import json

import pytest
import requests

from binderq.client import (
    EXIT_BUSY,
    EXIT_DENIED,
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    LogEvent,
    _api_error,
    _segment,
    _server_sent_events,
)


def _answer(status: int, body: object, headers: dict | None = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response.headers.update(headers or {})
    response.reason = "Reason"
    return response


@pytest.mark.parametrize(("status", "code"), [
    (400, EXIT_REFUSED), (401, EXIT_DENIED), (403, EXIT_DENIED), (404, EXIT_NOT_FOUND),
    (409, EXIT_REFUSED), (413, EXIT_REFUSED), (422, EXIT_REFUSED), (429, EXIT_BUSY),
    (503, EXIT_UNAVAILABLE), (502, EXIT_UNAVAILABLE), (418, EXIT_ERROR)])
def test_each_refusal_has_its_exit_code(status, code):
    assert _api_error(_answer(status, {"message": "no"})).exit_code == code


def test_the_message_names_fields_it_does_not_mention_and_stays_one_line():
    error = _api_error(_answer(422, {"message": "bad input\nsee below", "errors": [
        {"resource": "Staging", "field": "port", "code": "invalid"}]}))
    assert str(error) == "bad input see below (port: invalid)"
    said = _api_error(_answer(422, {"message": "port must be below 65536", "errors": [
        {"resource": "Staging", "field": "port", "code": "invalid"}]}))
    assert str(said) == "port must be below 65536"


def test_retry_after_is_kept_and_a_body_that_is_not_json_still_reads():
    busy = _api_error(_answer(429, {"message": "full"}, {"Retry-After": "12"}))
    assert busy.retry_after == 12
    html = _api_error(_answer(502, b"<html>Bad Gateway</html>"))
    assert str(html) == "HTTP 502 Reason" and html.exit_code == EXIT_UNAVAILABLE


def test_server_sent_events_are_read_with_their_kind():
    lines = ["event: phase", 'data: {"phase": "building"}', "", ": keepalive", "",
             "event: log", 'data: {"line": "Step 1/2"}', "", "event: done",
             'data: {"id": "b1", "status": "succeeded"}', ""]
    assert list(_server_sent_events(iter(lines))) == [
        LogEvent("phase", {"phase": "building"}), LogEvent("log", {"line": "Step 1/2"}),
        LogEvent("done", {"id": "b1", "status": "succeeded"})]


def test_a_typed_name_cannot_reach_another_path():
    assert _segment("../tokens") == "..%2Ftokens"
    assert _segment("a b?c#d") == "a%20b%3Fc%23d"
