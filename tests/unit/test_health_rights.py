"""Health for anyone: up or down per check, no internal addresses or error texts (the
operator sees those), and answered from a report a few seconds old, so that many calls,
across API processes, queue one worker canary."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from binderq.api import create_app
from binderq.domain.errors import DependencyDown
from tests.fakes import FakeQueue
from tests.unit.conftest import OPERATOR

LEAKS = ("redis://", "http://", "127.0.0.1", "Traceback", "Error", "secret")


class CountingQueue(FakeQueue):
    canaries: int = 0

    def ping_worker(self, queue: str, timeout: float):
        self.canaries += 1
        return super().ping_worker(queue, timeout)


class LeakyProxy:
    def ping(self, timeout=None):
        raise DependencyDown("proxy", "http://127.0.0.1:8001/api/routes refused: "
                                      "ConnectionError(secret detail)")


@pytest.fixture
def counting() -> CountingQueue:
    return CountingQueue()


def test_fifty_anonymous_health_calls_queue_at_most_one_canary(settings, store, counting,
                                                              proxy):
    # Two apps over one Redis: two gunicorn processes.
    apps = [create_app(settings, store=store, queue=counting, proxy=proxy) for _ in range(2)]
    paths = ["/api/health", "/health"]

    def call(index: int) -> int:
        client = apps[index % 2].test_client()
        return client.get(paths[index % 2]).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(50)))
    assert set(statuses) == {200}
    assert counting.canaries == 1


@pytest.mark.parametrize("path", ["/api/health", "/health"])
def test_anonymous_health_shows_no_addresses_or_errors_the_operator_sees_them(
        settings, store, path):
    app = create_app(settings, store=store, queue=FakeQueue(down=True), proxy=LeakyProxy())
    client = app.test_client()
    anonymous = client.get(path)
    assert anonymous.status_code == 503
    assert not any(leak in anonymous.get_data(as_text=True) for leak in LEAKS)
    assert "error" not in anonymous.get_data(as_text=True)
    operator = client.get(path, headers=OPERATOR)
    assert operator.status_code == 503
    assert "http://127.0.0.1:8001" in operator.get_data(as_text=True)


def test_with_redis_down_health_is_503_at_once_and_sends_no_canary(settings, store,
                                                                   counting, proxy):
    app = create_app(settings, store=store, queue=counting, proxy=proxy)
    client = app.test_client()
    assert client.get("/api/health").status_code == 200  # a canary answer is now cached
    store.ping = store.health.latest = _down
    answers = [client.get("/api/health", headers=OPERATOR) for _ in range(10)]
    assert {answer.status_code for answer in answers} == {503}
    assert answers[0].get_json()["checks"]["redis"] == {"ok": False,
                                                        "error": "Redis is unreachable: "
                                                                 "connection refused"}
    assert counting.canaries == 1  # the canary travels through Redis: none is sent now


def test_a_dependency_that_goes_down_shows_at_once_despite_the_cached_canary(
        settings, store, counting, proxy):
    app = create_app(settings, store=store, queue=counting, proxy=proxy)
    client = app.test_client()
    assert client.get("/api/health").status_code == 200
    proxy.down = True
    assert client.get("/api/health").status_code == 503
    assert counting.canaries == 1


def _down():
    raise DependencyDown("Redis", "connection refused")


def test_no_refresh_is_claimed_while_a_report_is_saved(store):
    # A process that found no report, and claims after another saved one (and gave up its
    # claim), must take that report instead of sending a second canary.
    assert store.health.claim_refresh(2.8)
    store.health.save({"workers": {"ok": True}}, 5.0)
    assert not store.health.claim_refresh(2.8)
    store.redis.delete("binderq:health")  # the report expired
    assert store.health.claim_refresh(2.8)
