"""Who may read and cancel a build, and what anonymous health costs, over a real Redis: the
readers' sets and the shared health report are Lua and Redis keys, which the unit tests
only run on fakeredis. Real git fetches the repository (a local one); no worker runs, so
builds stay queued (a fake queue takes the tasks, and counts the health canaries)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from binderq.adapters.git_source import GitSource
from binderq.adapters.redis_store import RedisStore
from binderq.api import create_app
from binderq.domain.builds import BuildStatus
from tests.fakes import FakeProxy, FakeQueue
from tests.integration.conftest import OPERATOR, make_repo

pytestmark = pytest.mark.integration


class CountingQueue(FakeQueue):
    """The task queue, counting the worker canaries health sends."""

    canaries: int = 0

    def ping_worker(self, queue: str, timeout: float):
        self.canaries += 1
        return super().ping_worker(queue, timeout)


@pytest.fixture
def client(settings, store):
    app = create_app(settings, store=store, queue=FakeQueue(), proxy=FakeProxy(),
                     git=GitSource(allow_local=True))
    return app.test_client()


def issue(client, *scopes: str) -> dict[str, str]:
    answer = client.post("/api/tokens", json={"scopes": list(scopes)}, headers=OPERATOR)
    assert answer.status_code == 201, answer.get_json()
    return {"Authorization": f"token {answer.get_json()['token']}"}


def listed(client, headers) -> list[str]:
    return [build["id"] for build in client.get("/api/builds", headers=headers).get_json()]


def test_a_build_is_read_and_cancelled_only_by_those_who_asked_for_it(client, store,
                                                                      tmp_path):
    alice, bob, carol = (issue(client, "build") for _ in range(3))
    repo = make_repo(tmp_path, "owned", {"requirements.txt": ""})
    asked = client.post("/api/builds", json={"repo": repo}, headers=alice)
    assert asked.status_code == 202, asked.get_json()
    build = asked.get_json()["id"]
    for path in (f"/api/builds/{build}", f"/api/builds/{build}/logs"):
        assert client.get(path, headers=alice).status_code == 200
        assert client.get(path, headers=OPERATOR).status_code == 200
        assert client.get(path, headers=bob).status_code == 404
    assert client.delete(f"/api/builds/{build}", headers=bob).status_code == 404
    assert listed(client, bob) == [] and listed(client, alice) == [build]
    assert build in listed(client, OPERATOR)

    shared = client.post("/api/builds", json={"repo": repo}, headers=bob).get_json()
    assert shared["id"] == build and listed(client, bob) == [build]
    assert len(store.builds.readers(build)) == 2  # a set in the real Redis
    for who in (alice, bob):
        assert client.delete(f"/api/builds/{build}", headers=who).status_code == 409
    assert store.builds.get(build).status == BuildStatus.QUEUED

    store.builds.move(build, BuildStatus.SUCCEEDED, "built", image="built/owned:1")
    assert client.get(f"/api/builds/{build}", headers=carol).status_code == 404
    cached = client.post("/api/builds", json={"repo": repo}, headers=carol)
    assert cached.status_code == 200 and cached.get_json()["cached"] is True
    assert client.get(f"/api/builds/{build}/logs", headers=carol).status_code == 200
    assert listed(client, carol) == [build]


ROUNDS = 20


def test_anonymous_health_calls_over_two_api_processes_queue_one_canary(settings, store):
    """Two API processes (each its own connection to the real Redis) answer 50 concurrent
    anonymous calls: one canary between them, and no internal address in any answer. Each
    round starts with no report anywhere (new processes, the shared one gone), as when a
    report has just expired: the process that did not send the canary must take the other's
    report, however the two interleave."""
    queue = CountingQueue()
    for _ in range(ROUNDS):
        store.redis.delete("binderq:health", "binderq:health:refresh")
        apps = [create_app(settings, queue=queue, proxy=FakeProxy(),
                           store=RedisStore(redis.Redis.from_url(settings.redis_url)))
                for _ in range(2)]

        def call(index: int, apps=apps):
            answer = apps[index % 2].test_client().get(("/api/health", "/health")[index % 2])
            return answer.status_code, answer.get_data(as_text=True)

        with ThreadPoolExecutor(max_workers=16) as pool:
            answers = list(pool.map(call, range(50)))
        assert {status for status, _ in answers} == {200}
        assert not any("127.0.0.1" in text or "redis://" in text for _, text in answers)
    assert queue.canaries == ROUNDS
