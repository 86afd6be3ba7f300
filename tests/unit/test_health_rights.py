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


def test_health_still_answers_with_redis_down(settings, store, counting, proxy):
    store.redis.connection_pool.disconnect()
    app = create_app(settings, store=store, queue=counting, proxy=proxy)
    store.health.latest = _down  # the shared report cannot be read
    client = app.test_client()
    assert {client.get("/api/health").status_code for _ in range(10)} <= {200, 503}
    assert counting.canaries == 1  # this process checks at most once per few seconds


def _down():
    raise DependencyDown("Redis", "connection refused")
