"""Seeing what binderq does, on the real stack (gunicorn, a Celery launch worker, Redis,
dockerd, configurable-http-proxy): a launch shows in /metrics, and its request id in the
API's log line, the worker's lines and the route's."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import stage, wait_for

COLD = {"kind": "cold"}


def launch_histogram(base, session) -> dict[str, float]:
    """The cold launch histogram's _count and _sum, read from /metrics."""
    response = session.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    found = {"count": 0.0, "sum": 0.0}
    for family in text_string_to_metric_families(response.text):
        if family.name == "binderq_launch_duration_seconds":
            for sample in family.samples:
                if sample.labels == COLD:
                    found[sample.name.rsplit("_", 1)[1]] = sample.value
    return found


def json_lines(path, request_id: str) -> list[dict]:
    """The JSON log lines of a log file that carry request_id (a worker's banner is text)."""
    lines = []
    for text in path.read_text(errors="replace").splitlines():
        if text.startswith("{"):
            line = json.loads(text)
            if line.get("request_id") == request_id:
                lines.append(line)
    return lines


def test_a_cold_launch_shows_in_metrics_and_can_be_followed_from_request_to_route(
        http, logs_dir):
    base, session = http
    stage(base, session, "observed")
    before = launch_histogram(base, session)
    request_id = f"obs-{uuid.uuid4().hex[:12]}"
    response = session.post(f"{base}/api/stagings/observed/servers",
                            headers={"X-Request-Id": request_id})
    assert response.status_code == 202, response.text
    assert response.headers["X-Request-Id"] == request_id
    server_id = response.json()["id"]
    server = wait_for(lambda: (lambda s: s if s["status"] == "ready" else None)(
        session.get(f"{base}/api/servers/{server_id}").json()), timeout=120,
        what=f"server {server_id} is ready")

    after = launch_histogram(base, session)
    assert after["count"] == before["count"] + 1
    took = (datetime.fromisoformat(server["ready_at"])
            - datetime.fromisoformat(server["created_at"])).total_seconds()
    assert abs((after["sum"] - before["sum"]) - took) < 0.01

    api = json_lines(logs_dir / "gunicorn.log", request_id)
    assert [(line["path"], line["status"]) for line in api] == [
        ("/api/stagings/observed/servers", 202)]
    worker = wait_for(lambda: _routed(json_lines(logs_dir / "worker.log", request_id)),
                      timeout=10, what="the worker's route line carries the request id")
    ready = [line for line in worker if line["logger"] == "binderq.services.observe"]
    assert ready and server_id in ready[0]["message"] and "cold launch" in ready[0]["message"]
    assert {line["task"] for line in worker} == {"binderq.servers.launch"}


def _routed(lines: list[dict]) -> list[dict] | None:
    routes = [line for line in lines if line["logger"] == "binderq.adapters.chp_proxy"]
    return lines if routes and routes[0]["route"].startswith("/user/") else None
