"""Logs that can be followed: JSON or text lines, a request id from the API request into the
Celery tasks it queues, and into every line of both."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys

import pytest
from celery import Celery
from celery.app.task import Context
from gunicorn.glogging import CONFIG_DEFAULTS

from binderq import logs
from binderq.settings import Settings, SettingsError
from binderq.workers import logs as worker_logs
from tests.unit.conftest import OPERATOR


@pytest.fixture
def lines():
    """What binderq's loggers write through a JSON handler during the test, parsed."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logs.use_format(handler, "json")
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize("value", [
    "abc", "A-Z_0.9", "f" * 128, "2b1c6a3e-9f1d-4c1b-8a55-1f0c1b8a5c2e"])
def test_a_sane_request_id_is_kept(value):
    assert logs.request_id_from(value) == value


@pytest.mark.parametrize("value", [
    None, "", "f" * 129, "has space", "new\nline", 'quo"te', "semi;colon", "é", "a\x00b",
    "Root=1-5759e988"])
def test_anything_else_is_replaced_by_a_new_one(value):
    made = logs.request_id_from(value)
    assert made != value and len(made) == 32 and logs.sane_request_id(made) == made


# -- the API -------------------------------------------------------------------------------


def test_the_answer_carries_the_client_s_request_id_and_so_do_the_request_s_lines(
        client, lines):
    response = client.get("/api/stagings", headers={**OPERATOR, "X-Request-Id": "req-1.a"})
    assert response.headers["X-Request-Id"] == "req-1.a"
    (line,) = [line for line in lines() if line["logger"] == "binderq.api.requests"]
    assert line["request_id"] == "req-1.a"
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/stagings", 200)
    assert line["level"] == "INFO" and line["time"].endswith("Z")


def test_an_insane_request_id_is_replaced_and_the_new_one_answered(client, lines):
    response = client.get("/api/stagings", headers={"X-Request-Id": "x" * 500})
    made = response.headers["X-Request-Id"]
    assert made != "x" * 500 and logs.sane_request_id(made) == made
    assert response.status_code == 401  # errors carry it too
    assert {line["request_id"] for line in lines()} == {made}


def test_each_request_gets_its_own_id_and_none_outlives_it(client):
    first = client.get("/api/health").headers["X-Request-Id"]
    second = client.get("/api/health").headers["X-Request-Id"]
    assert first != second
    assert logs.current_request_id() is None


def test_a_task_queued_by_a_request_carries_its_id(client, queue, lines):
    seen = []
    original = queue.enqueue
    queue.enqueue = lambda name, *args, **kw: seen.append(logs.current_request_id()) or \
        original(name, *args, **kw)
    client.put("/api/stagings/demo", json={"image": "binderq/notebook:bookworm"},
               headers={**OPERATOR, "X-Request-Id": "stage-it"})
    assert seen == ["stage-it"]  # what the publish signal puts into the message (next test)


# -- Celery: the message header, and the worker's log context ------------------------------


def test_a_published_message_carries_the_current_request_id_in_its_headers():
    worker_logs.install_task_logging("json")
    app = Celery("t", broker="memory://", backend="cache+memory://")
    token = logs.bind(request_id="from-the-api")
    try:
        app.send_task("binderq.servers.launch", args=["s1"], queue="launches")
    finally:
        logs.reset(token)
    app.send_task("binderq.pools.upkeep", queue="launches")  # beat's: no request, no id
    with app.connection_for_read() as connection:
        messages = connection.SimpleQueue("launches")
        first, second = messages.get(timeout=1), messages.get(timeout=1)
        messages.close()
    assert first.headers[worker_logs.HEADER] == "from-the-api"
    assert worker_logs.HEADER not in second.headers


def test_a_task_s_lines_carry_its_request_id_and_the_task_and_then_stop(lines):
    class Task:
        name = "binderq.servers.launch"
        request = Context({"id": "t1", worker_logs.HEADER: "from-the-api"})

    worker_logs.bind_task_context(task_id="t1", task=Task())
    logging.getLogger("binderq.services.servers").info("server s1 ready")
    worker_logs.forget_task_context(task_id="t1")
    logging.getLogger("binderq.services.servers").info("after the task")
    during, after = lines()
    assert (during["request_id"], during["task"], during["task_id"]) == (
        "from-the-api", "binderq.servers.launch", "t1")
    assert "request_id" not in after and "task" not in after


def test_a_header_that_is_not_a_sane_request_id_is_not_trusted(lines):
    class Task:
        name = "binderq.servers.launch"
        request = Context({"id": "t2", worker_logs.HEADER: "evil\nline"})

    worker_logs.bind_task_context(task_id="t2", task=Task())
    logging.getLogger("binderq").info("x")
    worker_logs.forget_task_context(task_id="t2")
    assert "request_id" not in lines()[0]


# -- formats -------------------------------------------------------------------------------


def test_a_json_line_is_one_object_with_extras_and_the_exception():
    record = logging.LogRecord("binderq.x", logging.WARNING, __file__, 1, "a %s\nb", ("c",),
                               None)
    record.server = "s1"
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    text = logs.JsonFormatter().format(record)
    assert "\n" not in text
    line = json.loads(text)
    assert (line["message"], line["level"], line["server"]) == ("a c\nb", "WARNING", "s1")
    assert "ValueError: boom" in line["exc"]


def test_text_lines_carry_the_request_id_too():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logs.use_format(handler, "text")
    logger = logging.getLogger("binderq.text-test")
    logger.addHandler(handler)
    token = logs.bind(request_id="r-9")
    try:
        logger.warning("hello")
    finally:
        logs.reset(token)
        logger.removeHandler(handler)
    assert stream.getvalue().rstrip().endswith("WARNING binderq.text-test [r-9] hello")


def test_gunicorn_s_own_lines_take_the_format_as_gunicorn_applies_its_config():
    root, gunicorn = logging.getLogger(), logging.getLogger("gunicorn.error")
    kept = root.handlers[:], root.level
    config = {**CONFIG_DEFAULTS, **logs.gunicorn_log_config("json")}  # gunicorn merges so
    try:
        logging.config.dictConfig(config)
        (handler,) = gunicorn.handlers
        assert isinstance(handler.formatter, logs.JsonFormatter)
        assert any(isinstance(f, logs.ContextFilter) for f in handler.filters)
    finally:
        gunicorn.handlers.clear()
        root.handlers[:], root.level = kept


def test_the_log_format_is_a_setting_json_by_default():
    assert Settings().log_format == "json"
    assert Settings.from_env({"BINDERQ_LOG_FORMAT": "text"},
                             secret_required=False).log_format == "text"
    with pytest.raises(SettingsError, match="BINDERQ_LOG_FORMAT"):
        Settings.from_env({"BINDERQ_LOG_FORMAT": "xml"}, secret_required=False)


def test_a_page_on_the_allowed_origin_may_read_the_request_id(settings, store, queue, proxy):
    from binderq.api import create_app

    app = create_app(settings.with_changes(cors_allow_origin="https://journal.example"),
                     store=store, queue=queue, proxy=proxy)
    answer = app.test_client().get("/api/health", headers={"Origin": "https://journal.example"})
    assert "X-Request-Id" in answer.headers["Access-Control-Expose-Headers"]
    assert answer.headers["X-Request-Id"]


def test_binderq_up_logs_text_unless_told_otherwise(monkeypatch):
    from binderq.cli import settings_for_up

    monkeypatch.delenv("BINDERQ_LOG_FORMAT", raising=False)
    assert settings_for_up(Settings(), "127.0.0.1", 8000).log_format == "text"
    monkeypatch.setenv("BINDERQ_LOG_FORMAT", "json")
    assert settings_for_up(Settings(log_format="json"), "127.0.0.1", 8000).log_format == "json"
