"""One bad notebook never stops the culler: hostile notebooks (real containers answering
api/status with nonsense, a far-future last_activity, or one byte a second) beside an idle
ordinary one, culled by the real worker's cull task."""

from __future__ import annotations

import time

import pytest

from binderq.adapters.notebook_probe import READ_GAP, notebook_status
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.domain.models import ServerStatus, utcnow
from binderq.tasks import CULL
from tests.integration.conftest import SMALL, launch_settled, stage, wait_for

# A notebook server that answers everything but api/status well. argv: mode, port, base_url.
HOSTILE = r"""
import http.server, json, sys, time
mode, port, base = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ANSWERS = {
    "not-json": b"<html>this is no JSON</html>",
    "far-future": json.dumps({"last_activity": "9999-12-31T23:59:59.999999Z",
                              "connections": 0, "kernels": 0}).encode(),
    "trickle": b'{"last_activity": "' + b" " * 100000 + b'"}',
}
ANSWERS["stall"] = ANSWERS["trickle"]
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ANSWERS[mode] if self.path.split("?")[0] == base + "api/status" else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode in ("trickle", "stall") and body != b"ok":
            for byte in body:
                self.wfile.write(bytes([byte])); self.wfile.flush()
                time.sleep(1 if mode == "trickle" else 3600)
        else:
            self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
"""
MODES = ("not-json", "far-future", "trickle")
PROBE_MODES = (*MODES, "stall")  # stall: one byte, then silence
CULL_TIMEOUT = 5
# What one cull run may take here: the slowest probe's deadline (2 s) and read gap, and
# the worker picking the task up, with room to spare; the old culler hung on the trickle.
RUN_DEADLINE = 15


def run_cull(queue: CeleryTaskQueue) -> tuple[dict, float]:
    """Queue the real cull task and wait for it; its end state and how long it took."""
    started = time.monotonic()
    task_id = queue.enqueue(CULL.name)

    def finished():
        task = queue.task(task_id)
        return task if task["state"] in ("SUCCESS", "FAILURE") else None

    task = wait_for(finished, timeout=RUN_DEADLINE * 2, what="the cull run ends")
    return task, time.monotonic() - started


def test_hostile_notebooks_stop_neither_the_culler_nor_the_cull_of_an_idle_one(
        http, store, settings):
    base, session = http
    stage(base, session, "ordinary", resources=SMALL, cull_timeout=CULL_TIMEOUT)
    for mode in MODES:
        stage(base, session, f"hostile-{mode}", resources=SMALL, cull_timeout=3600,
              probe={"http": "ok"},
              command=["python3", "-c", HOSTILE, mode, "{port}", "{base_url}"])
    hostile = {mode: launch_settled(base, session, f"hostile-{mode}") for mode in MODES}
    ordinary = launch_settled(base, session, "ordinary")
    assert all(s["status"] == "ready" for s in [ordinary, *hostile.values()]), hostile
    idle_from = store.servers.get(ordinary["id"]).ready_at

    queue = CeleryTaskQueue(build_celery(settings), store)
    runs = []
    while True:
        task, took = run_cull(queue)
        runs.append(round(took, 2))
        assert task["state"] == "SUCCESS", task
        assert took < RUN_DEADLINE, f"a cull run took {took:.1f} s"
        if ordinary["id"] in task["result"]:
            break
        assert (utcnow() - idle_from).total_seconds() < CULL_TIMEOUT + RUN_DEADLINE, \
            "the idle notebook was not culled on time"
        time.sleep(1)
    culled_after = (utcnow() - idle_from).total_seconds()
    print(f"cull runs took {runs} s; the idle notebook was culled {culled_after:.1f} s "
          f"after it was handed out (cull_timeout {CULL_TIMEOUT} s)")
    assert CULL_TIMEOUT <= culled_after < CULL_TIMEOUT + RUN_DEADLINE
    assert "culled: idle" in store.servers.get(ordinary["id"]).error

    now = utcnow()
    for mode, server in hostile.items():
        record = store.servers.get(server["id"])
        assert record.status == ServerStatus.READY, (mode, record.error)
        assert record.last_activity <= now and record.cull_at.year < 9999, (mode, record)


@pytest.mark.parametrize("mode", PROBE_MODES)
def test_the_status_probe_of_a_hostile_notebook_ends_in_time_with_nothing(
        http, store, mode):
    base, session = http
    stage(base, session, f"probe-{mode}", resources=SMALL, probe={"http": "ok"},
          command=["python3", "-c", HOSTILE, mode, "{port}", "{base_url}"])
    server = launch_settled(base, session, f"probe-{mode}")
    record = store.servers.get(server["id"])
    started = time.monotonic()
    status = notebook_status(f"{record.target}/user/{record.id}/", server["token"], timeout=2)
    took = time.monotonic() - started
    assert took < 2 + READ_GAP + 0.5, took
    if mode == "far-future":
        assert status["last_activity"].startswith("9999")  # a lie the culler clamps
    else:
        assert status is None

