"""GET /api/servers/{id}?wait=N: answered when the server's status changes (a launch worker
finishing it, in another thread here), at once when it is not on its way, and at once with
Retry-After when too many requests of the process wait already."""

from __future__ import annotations

import threading
import time

import pytest

from binderq.adapters.redis_store.common import Keys
from binderq.api import servers as servers_api
from binderq.domain.errors import NotFound
from binderq.domain.models import ServerStatus
from binderq.services import servers, stagings
from binderq.services.server_wait import (
    LOOK_EVERY,
    MAX_WAIT,
    Waiters,
    longest_wait,
    wait_for_next_status,
)
from tests.helpers import IMAGE, answering_probe, assert_error_format
from tests.unit.conftest import OPERATOR


@pytest.fixture
def pending(client, store, runtime):
    client.put("/api/stagings/demo", json={"image": IMAGE}, headers=OPERATOR)
    stagings.stage("demo", store.stagings.get("demo").version, store=store, runtime=runtime)
    return client.post("/api/stagings/demo/servers", headers=OPERATOR).get_json()


def launch_later(seconds, server_id, *, store, runtime, proxy, settings) -> threading.Thread:
    """The launch worker, seconds from now, in another thread."""
    def run():
        time.sleep(seconds)
        servers.launch_server(server_id, store=store, runtime=runtime, proxy=proxy,
                              probe=answering_probe, settings=settings)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_waiting_request_answers_when_the_worker_moves_the_server_on(
        client, store, runtime, proxy, settings, pending):
    worker = launch_later(0.3, pending["id"], store=store, runtime=runtime, proxy=proxy,
                          settings=settings)
    started = time.monotonic()
    body = client.get(f"/api/servers/{pending['id']}?wait=10", headers=OPERATOR).get_json()
    waited = time.monotonic() - started
    worker.join()
    assert body["status"] in ("starting", "ready")  # the worker's next step, not pending
    assert 0.25 <= waited < 5


def test_without_wait_the_answer_is_at_once(client, pending):
    started = time.monotonic()
    body = client.get(f"/api/servers/{pending['id']}", headers=OPERATOR).get_json()
    assert body["status"] == "pending" and time.monotonic() - started < 1


def test_a_server_that_does_not_move_is_answered_as_it_is_after_the_wait(client, pending):
    started = time.monotonic()
    body = client.get(f"/api/servers/{pending['id']}?wait=0.3", headers=OPERATOR).get_json()
    assert body["status"] == "pending"
    assert 0.3 <= time.monotonic() - started < 3


def test_a_ready_server_is_answered_at_once_whatever_the_wait(
        client, store, runtime, proxy, settings, pending):
    launch_later(0, pending["id"], store=store, runtime=runtime, proxy=proxy,
                 settings=settings).join()
    started = time.monotonic()
    body = client.get(f"/api/servers/{pending['id']}?wait=30", headers=OPERATOR).get_json()
    assert body["status"] == "ready" and time.monotonic() - started < 1


@pytest.mark.parametrize("wait", ["-1", "31", "soon", "nan"])
def test_a_bad_wait_is_422_naming_it(client, pending, wait):
    response = client.get(f"/api/servers/{pending['id']}?wait={wait}", headers=OPERATOR)
    body = assert_error_format(response, 422)
    assert "wait" in str(body["errors"])


def test_past_the_waiters_the_answer_is_at_once_with_retry_after(client, pending, monkeypatch):
    full = Waiters(1)
    assert full.try_enter()
    monkeypatch.setattr(servers_api, "WAITERS", full)
    started = time.monotonic()
    response = client.get(f"/api/servers/{pending['id']}?wait=10", headers=OPERATOR)
    assert response.status_code == 200 and response.headers["Retry-After"] == "1"
    assert response.get_json()["status"] == "pending" and time.monotonic() - started < 1


def test_the_waiters_place_is_given_back(client, pending, monkeypatch):
    one = Waiters(1)
    monkeypatch.setattr(servers_api, "WAITERS", one)
    for _ in range(2):
        response = client.get(f"/api/servers/{pending['id']}?wait=0.1", headers=OPERATOR)
        assert "Retry-After" not in response.headers
    assert one.try_enter()


def test_a_server_forgotten_while_waited_on_is_not_found(store, pending):
    server = store.servers.get(pending["id"])
    store.redis.delete(*store.redis.keys(f"*server:{pending['id']}*"))
    with pytest.raises(NotFound):
        wait_for_next_status(server, store=store, seconds=1)


def test_the_wait_is_capped_so_a_queued_server_is_never_dropped_as_unpolled():
    assert longest_wait(100, queue_poll_timeout=60) == MAX_WAIT
    assert longest_wait(20, queue_poll_timeout=10) == 5
    assert longest_wait(2, queue_poll_timeout=60) == 2


def test_a_change_is_heard_at_once_not_at_the_next_look(store, pending):
    server = store.servers.get(pending["id"])

    def start_it():
        time.sleep(0.1)
        store.servers.transition(server.id, [ServerStatus.PENDING], status=ServerStatus.STARTING)

    worker = threading.Thread(target=start_it)
    started = time.monotonic()
    worker.start()
    found = wait_for_next_status(server, store=store, seconds=20)
    waited = time.monotonic() - started
    worker.join()
    assert found.status == ServerStatus.STARTING
    assert waited < 0.1 + LOOK_EVERY / 2  # woken by the published change


def test_every_script_that_changes_a_status_publishes_it(store, pending):
    """The transition, ready and the launch queue's promotion each publish on the channel
    the waiters subscribe to."""
    channel = Keys.SERVER_STATUS_CHANNEL.format(id=pending["id"])
    assert channel == Keys.SERVER.format(id=pending["id"]) + ":status"  # as the scripts say
    changes = store.servers.status_changes(pending["id"])
    server = store.servers.transition(pending["id"], [ServerStatus.PENDING],
                                      status=ServerStatus.STARTING)
    store.servers.mark_ready(server, url="u", target="t")
    heard = []
    deadline = time.monotonic() + 2
    while len(heard) < 2 and time.monotonic() < deadline:
        message = changes.get_message(timeout=0.1)
        if message:
            heard.append(message["data"])
    changes.close()
    assert heard == [b'"starting"', b'"ready"']
