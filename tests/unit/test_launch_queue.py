"""The launch queue (API.md, servers): `?queue=true` at capacity answers 202 `queued` with
`position` and `eta` instead of a 429; first come, first served as room frees; a launch
nobody polls is dropped; DELETE leaves the queue. The promotion is one Lua script
(fakeredis' Lua here; real Redis, with concurrent arrivals and promoters, in
tests/integration/test_launch_queue.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from binderq.domain.errors import CapacityExceeded, QuotaExceeded
from binderq.domain.launch_queue import is_unpolled, queue_eta, waits_for_room
from binderq.domain.models import ServerStatus
from binderq.domain.shares import ClientShare
from binderq.services import deploy, launch_queue, servers
from binderq.settings import Settings, SettingsError
from tests.helpers import assert_error_format, ready_staging
from tests.unit.conftest import OPERATOR

LAUNCH = "binderq.servers.launch"
OPERATOR_SHARE = ClientShare("operator")  # exempt from the per-client share


@pytest.fixture
def clock(monkeypatch):
    """The launch queue's clock (unix seconds), set by the test."""
    now = SimpleNamespace(value=1_000_000.0)
    monkeypatch.setattr(launch_queue, "time", SimpleNamespace(time=lambda: now.value))
    return now


def _launch(store, queue, settings, name="demo", *, wait=True, share=OPERATOR_SHARE):
    return deploy.request_launch(name, store=store, queue=queue, settings=settings,
                                 share=share, queue_when_full=wait).server


def _fill(store, queue, settings, name="demo", count=None):
    """count (the service's capacity) pending servers of staging name."""
    return [_launch(store, queue, settings, name, wait=False)
            for _ in range(settings.max_servers if count is None else count)]


def _free(store, server):
    """Room frees: the server stopped (as the stop task leaves it)."""
    assert store.servers.transition(server.id, [ServerStatus.PENDING, ServerStatus.READY],
                                    status=ServerStatus.STOPPED)


def _launched(queue):
    return [args[0] for name, args, _ in queue.sent if name == LAUNCH]


# -- the API ------------------------------------------------------------------------------


def test_at_capacity_queue_true_answers_202_queued_with_position_and_eta(
        client, store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    for _ in range(settings.max_servers):
        assert client.post("/api/stagings/demo/servers", headers=OPERATOR).status_code == 202
    assert_error_format(client.post("/api/stagings/demo/servers", headers=OPERATOR), 429)
    answers = [client.post("/api/stagings/demo/servers?queue=true", headers=OPERATOR)
               for _ in range(2)]
    bodies = [answer.get_json() for answer in answers]
    assert [answer.status_code for answer in answers] == [202, 202]
    assert [(b["status"], b["position"], b["eta"]) for b in bodies] == \
        [("queued", 1, None), ("queued", 2, None)]
    assert answers[0].headers["Location"] == f"/api/servers/{bodies[0]['id']}"
    own = {"Authorization": f"token {bodies[1]['token']}"}
    polled = client.get(f"/api/servers/{bodies[1]['id']}", headers=own).get_json()
    assert (polled["status"], polled["position"]) == ("queued", 2)
    assert "token" not in polled
    assert client.get("/api/servers?status=queued", headers=OPERATOR).status_code == 200


def test_with_room_queue_true_launches_at_once_and_a_bad_queue_value_is_422(
        client, store, queue, runtime):
    ready_staging(store, queue, runtime)
    body = client.post("/api/stagings/demo/servers?queue=true", headers=OPERATOR).get_json()
    assert body["status"] == "pending" and "position" not in body
    assert_error_format(client.post("/api/stagings/demo/servers?queue=maybe",
                                    headers=OPERATOR), 422)


def test_delete_leaves_the_queue_stopped_at_once_and_nothing_is_ever_launched(
        client, store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = [client.post("/api/stagings/demo/servers", headers=OPERATOR).get_json()
               for _ in range(settings.max_servers)]
    queued = client.post("/api/stagings/demo/servers?queue=true", headers=OPERATOR).get_json()
    own = {"Authorization": f"token {queued['token']}"}
    answer = client.delete(f"/api/servers/{queued['id']}", headers=own)
    assert answer.status_code == 202
    assert answer.get_json()["status"] == "stopped"
    assert store.launch_queue.waiting() == []
    _free(store, store.servers.get(running[0]["id"]))
    launch_queue.serve_queue(store=store, queue=queue, settings=settings)
    assert queued["id"] not in _launched(queue)
    assert "binderq.servers.stop" not in [name for name, args, _ in queue.sent
                                          if args == (queued["id"],)]


# -- first come, first served -------------------------------------------------------------


def test_queued_launches_are_served_in_order_as_room_frees(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = [_launch(store, queue, settings) for _ in range(4)]
    assert {s.status for s in waiting} == {ServerStatus.QUEUED}
    assert store.launch_queue.waiting() == [s.id for s in waiting]
    served = []
    for server in running[:4]:
        _free(store, server)
        served += launch_queue.serve_queue(store=store, queue=queue, settings=settings)
        assert store.servers.active_count() == settings.max_servers
    assert served == [s.id for s in waiting]
    assert _launched(queue)[-4:] == served
    promoted = store.servers.get(served[0])
    assert promoted.status == ServerStatus.PENDING
    sent = {args[0]: task_id for name, args, task_id in queue.sent if name == LAUNCH}
    assert sent[promoted.id] == promoted.task_id  # its own task id: a redelivery is one launch


def test_a_newcomer_never_takes_the_room_of_one_who_waited(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = _launch(store, queue, settings)
    _free(store, running[0])  # freed, and no stop task has served the queue yet
    with pytest.raises(CapacityExceeded):
        _launch(store, queue, settings, wait=False)
    assert store.servers.get(waiting.id).status == ServerStatus.PENDING


def test_a_full_staging_holds_its_own_line_not_another_stagings(
        store, queue, runtime, settings):
    ready_staging(store, queue, runtime, "small", max_servers=1)
    ready_staging(store, queue, runtime, "other")
    first = _launch(store, queue, settings, "small", wait=False)
    _fill(store, queue, settings, "other", count=settings.max_servers - 2)
    small = [_launch(store, queue, settings, "small") for _ in range(2)]
    assert [s.status for s in small] == [ServerStatus.QUEUED] * 2
    last = _launch(store, queue, settings, "other")  # the service had room: served
    assert last.status == ServerStatus.PENDING
    behind = _launch(store, queue, settings, "other")  # now the service is full too
    assert behind.status == ServerStatus.QUEUED
    _free(store, first)  # room in small and in the service: small's first in line goes
    assert launch_queue.serve_queue(store=store, queue=queue, settings=settings) == \
        [small[0].id]
    assert store.servers.get(small[1].id).status == ServerStatus.QUEUED


def test_a_promoted_launch_runs_the_stagings_current_version(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = _launch(store, queue, settings)
    staged = ready_staging(store, queue, runtime, command=["sleep", "1"])
    _free(store, running[0])
    launch_queue.serve_queue(store=store, queue=queue, settings=settings)
    assert store.servers.get(waiting.id).staging_version == staged.version


def test_deleting_a_staging_takes_its_queued_launches_out_of_line(
        store, queue, runtime, settings):
    ready_staging(store, queue, runtime, "gone", max_servers=1)
    ready_staging(store, queue, runtime, "kept", max_servers=1)
    running = [_launch(store, queue, settings, name, wait=False) for name in ("gone", "kept")]
    waiting = [_launch(store, queue, settings, name) for name in ("gone", "kept")]
    deploy.delete_staging("gone", force=True, store=store, queue=queue)
    assert store.servers.get(waiting[0].id).status == ServerStatus.STOPPED
    assert store.launch_queue.waiting() == [waiting[1].id]
    assert store.servers.get(running[0].id).status == ServerStatus.STOPPING


# -- who may wait, and for how long -------------------------------------------------------


def test_a_launch_nobody_polls_is_dropped_and_never_launched(
        store, queue, runtime, settings, clock):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    kept, dropped = _launch(store, queue, settings), _launch(store, queue, settings)
    clock.value += settings.queue_poll_timeout
    assert launch_queue.place_in_queue(kept, store=store, polled=True).position == 1
    clock.value += 1  # dropped is now past the timeout; kept was polled a second ago
    _free(store, running[0])
    _free(store, running[1])
    assert launch_queue.serve_queue(store=store, queue=queue, settings=settings) == [kept.id]
    gone = store.servers.get(dropped.id)
    assert gone.status == ServerStatus.STOPPED and "BINDERQ_QUEUE_POLL_TIMEOUT" in gone.error
    assert dropped.id not in _launched(queue) and store.launch_queue.waiting() == []


def test_the_promotion_script_and_the_domain_agree_on_unpolled(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = _launch(store, queue, settings)
    _free(store, running[0])
    polled_at = store.launch_queue.polled()[waiting.id]
    timeout = settings.queue_poll_timeout
    for late in (timeout + 0.5, timeout):
        now = polled_at + late
        promoted = store.launch_queue.promote(settings.max_servers, now=now,
                                              poll_timeout=timeout, changed_at="2026-01-01")
        assert (promoted == []) == is_unpolled(polled_at, now=now, poll_timeout=timeout)


def test_queued_launches_count_against_the_clients_share(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    _fill(store, queue, settings)
    alice = ClientShare("addr:a", max_servers=1)
    assert _launch(store, queue, settings, share=alice).status == ServerStatus.QUEUED
    with pytest.raises(QuotaExceeded) as refused:
        _launch(store, queue, settings, share=alice)
    assert refused.value.field == "client_max_servers"


def test_a_client_at_its_own_share_is_refused_not_queued(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    alice = ClientShare("addr:a", max_servers=1)
    _launch(store, queue, settings, share=alice, wait=False)
    with pytest.raises(QuotaExceeded):
        _launch(store, queue, settings, share=alice)
    assert store.launch_queue.waiting() == []


def test_a_full_queue_is_refused_naming_its_limit(store, queue, runtime, settings):
    settings = settings.with_changes(max_queued=2)
    ready_staging(store, queue, runtime)
    _fill(store, queue, settings)
    for _ in range(2):
        _launch(store, queue, settings)
    with pytest.raises(QuotaExceeded) as refused:
        _launch(store, queue, settings)
    assert refused.value.field == "max_queued" and "BINDERQ_MAX_QUEUED" in str(refused.value)


def test_leaving_after_promotion_stops_the_server_as_usual(store, queue, runtime, settings):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = _launch(store, queue, settings)
    _free(store, running[0])
    launch_queue.serve_queue(store=store, queue=queue, settings=settings)
    stopping = servers.request_stop(waiting.id, store=store, queue=queue)
    assert stopping.status == ServerStatus.STOPPING
    assert queue.sent[-1][:2] == ("binderq.servers.stop", (waiting.id,))


# -- the eta, and the rules -------------------------------------------------------------------


def test_the_eta_is_the_position_times_the_recent_interval_or_unknown():
    now = 10_000.0
    assert queue_eta(3, [], now=now) is None
    assert queue_eta(3, [now - 5], now=now) is None
    assert queue_eta(3, [now - 30, now - 20, now - 10], now=now) == 30
    assert queue_eta(1, [now - 5000, now - 10], now=now) is None  # one is too old
    assert queue_eta(2, [now - 100 + i for i in range(0, 100, 4)], now=now) == 8


def test_the_eta_appears_once_launches_were_promoted(store, queue, runtime, settings, clock):
    ready_staging(store, queue, runtime)
    running = _fill(store, queue, settings)
    waiting = [_launch(store, queue, settings) for _ in range(3)]
    for server in running[:2]:
        clock.value += 10
        _free(store, server)
        launch_queue.serve_queue(store=store, queue=queue, settings=settings)
    place = launch_queue.place_in_queue(store.servers.get(waiting[2].id), store=store)
    assert (place.position, place.eta) == (1, 10)


def test_which_refusals_wait():
    assert waits_for_room(CapacityExceeded(limit=5, used=5))
    staging = QuotaExceeded("Staging", "max_servers", 1, 1, "full")
    client = QuotaExceeded("Server", "client_max_servers", 1, 1, "yours")
    assert waits_for_room(staging) and not waits_for_room(client)


def test_the_queue_settings_are_checked():
    with pytest.raises(SettingsError, match="BINDERQ_QUEUE_POLL_TIMEOUT"):
        Settings(secret_key="k" * 32, queue_poll_timeout=0).validate()
    with pytest.raises(SettingsError, match="BINDERQ_MAX_QUEUED"):
        Settings(secret_key="k" * 32, max_queued=-1).validate()
    env = {"BINDERQ_SECRET_KEY": "k" * 32, "BINDERQ_QUEUE_POLL_TIMEOUT": "5",
           "BINDERQ_MAX_QUEUED": "7"}
    read = Settings.from_env(env)
    assert (read.queue_poll_timeout, read.max_queued) == (5.0, 7)
