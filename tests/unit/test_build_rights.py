"""Who may do what with builds: staging from a build request is the operator's; a build is
read and cancelled by the clients that asked for it (and the operator); others get 404.
The BinderHub door builds for anyone under open launch auth, with `?token=` as well."""

from __future__ import annotations

import pytest

from binderq.api import create_app
from binderq.domain.access import client_key
from binderq.domain.builds import BuildStatus
from binderq.services.repo_launch import staging_name
from tests.fakes import FakeGit
from tests.helpers import assert_error_format, ready_staging
from tests.unit.conftest import OPERATOR

REPO = "https://github.com/org/repo"


@pytest.fixture
def make_client(settings, store, queue, proxy):
    def make(**changes):
        app = create_app(settings.with_changes(**changes), store=store, queue=queue,
                         proxy=proxy, git=FakeGit())
        return app.test_client()
    return make


@pytest.fixture
def client(make_client):
    return make_client()


def issue(client, *scopes: str) -> dict[str, str]:
    answer = client.post("/api/tokens", json={"scopes": list(scopes)}, headers=OPERATOR)
    assert answer.status_code == 201, answer.get_json()
    return {"Authorization": f"token {answer.get_json()['token']}"}


# -- 1. staging from a build request ------------------------------------------------------

@pytest.mark.parametrize("staging", [
    {"name": "notebook", "public": True},  # the operator's public default staging
    {"name": "mine", "data": [{"volume": "secrets", "target": "/mnt", "read_only": False}]},
    {"name": "mine", "services": [{"name": "db", "image": "postgres:16"}]},
    {"name": "mine", "pool_size": 3},
])
def test_a_build_token_cannot_stage_or_choose_volumes_services_or_pools(
        client, store, queue, runtime, staging):
    ready_staging(store, queue, runtime, name="notebook", public=True)
    before, sent = store.stagings.get("notebook"), len(queue.sent)
    refused = client.post("/api/builds", json={"repo": REPO, "staging": staging},
                          headers=issue(client, "build", "launch"))
    body = assert_error_format(refused, 403)
    assert "operator" in body["message"] and "staging" in body["message"]
    assert store.builds.recent(10) == [] and len(queue.sent) == sent
    assert store.stagings.get("notebook").version == before.version
    assert store.pools.counters("mine") is None


def test_the_operator_may_still_stage_a_build(client, store):
    answer = client.post("/api/builds", json={"repo": REPO, "staging": {
        "name": "built", "pool_size": 1}}, headers=OPERATOR)
    assert answer.status_code == 202
    assert store.builds.get(answer.get_json()["id"]).staging["name"] == "built"


# -- 4. builds belong to the clients that asked for them ----------------------------------

def test_a_build_is_the_requesters_and_hidden_from_other_users(client, store):
    alice, bob = issue(client, "build"), issue(client, "build")
    build = client.post("/api/builds", json={"repo": REPO}, headers=alice).get_json()
    record = store.builds.get(build["id"])
    assert record.requested_by == client_key(alice["Authorization"].split()[1], "")
    for path in (f"/api/builds/{build['id']}", f"/api/builds/{build['id']}/logs"):
        assert client.get(path, headers=alice).status_code == 200
        assert client.get(path, headers=OPERATOR).status_code == 200
        assert_error_format(client.get(path, headers=bob), 404)
    assert_error_format(client.get(f"/api/builds/{build['id']}/logs", headers={
        **bob, "Accept": "text/event-stream"}), 404)
    assert_error_format(client.delete(f"/api/builds/{build['id']}", headers=bob), 404)
    assert store.builds.get(build["id"]).status == BuildStatus.QUEUED
    assert client.get("/api/builds", headers=bob).get_json() == []
    assert [b["id"] for b in client.get("/api/builds", headers=alice).get_json()] == \
        [build["id"]]
    assert [b["id"] for b in client.get("/api/builds", headers=OPERATOR).get_json()] == \
        [build["id"]]
    assert client.delete(f"/api/builds/{build['id']}", headers=alice).status_code == 202
    assert store.builds.get(build["id"]).status == BuildStatus.CANCELLED


def test_a_shared_build_is_read_by_both_and_cancelled_by_neither(client, store):
    alice, bob = issue(client, "build"), issue(client, "build")
    first = client.post("/api/builds", json={"repo": REPO}, headers=alice).get_json()
    second = client.post("/api/builds", json={"repo": REPO}, headers=bob).get_json()
    assert second["id"] == first["id"]
    assert client.get(f"/api/builds/{first['id']}", headers=bob).status_code == 200
    assert [b["id"] for b in client.get("/api/builds", headers=bob).get_json()] == \
        [first["id"]]
    for who in (alice, bob):
        body = assert_error_format(client.delete(f"/api/builds/{first['id']}", headers=who),
                                   409)
        assert "operator" in body["message"]
    assert store.builds.get(first["id"]).status == BuildStatus.QUEUED
    assert client.delete(f"/api/builds/{first['id']}", headers=OPERATOR).status_code == 202


def test_a_cached_build_is_readable_by_whoever_asked_for_it(client, store):
    alice, carol = issue(client, "build"), issue(client, "build")
    built = client.post("/api/builds", json={"repo": REPO}, headers=alice).get_json()
    store.builds.move(built["id"], BuildStatus.SUCCEEDED, "built", image="built/r:1")
    assert_error_format(client.get(f"/api/builds/{built['id']}", headers=carol), 404)
    cached = client.post("/api/builds", json={"repo": REPO}, headers=carol)
    assert cached.status_code == 200 and cached.get_json()["cached"] is True
    assert client.get(f"/api/builds/{built['id']}/logs", headers=carol).status_code == 200
    # Finished: cancelling changes nothing, whoever asks.
    assert client.delete(f"/api/builds/{built['id']}", headers=carol).status_code == 202
    assert store.builds.get(built["id"]).status == BuildStatus.SUCCEEDED


# -- 7. the BinderHub door ----------------------------------------------------------------

def test_the_open_door_builds_for_anyone_as_the_anonymous_client(make_client, store):
    client = make_client(launch_auth="open")
    stream = client.get("/build/gh/org/repo/main")
    assert stream.status_code == 200 and stream.mimetype == "text/event-stream"
    stream.close()
    (build,) = store.builds.recent(10)
    assert build.requested_by == "addr:127.0.0.1"


@pytest.mark.parametrize("scopes, status", [
    (("build", "launch"), 200), (("launch",), 403), (("build",), 403), ((), 401)])
def test_the_token_door_needs_the_build_scope_in_the_header_or_the_query(
        make_client, store, scopes, status):
    client = make_client(launch_auth="token")
    headers = issue(client, *scopes) if scopes else {"Authorization": "token wrong"}
    token = headers["Authorization"].split()[1]
    for asked in ({"headers": headers}, {"query_string": {"token": token}}):
        answer = client.get("/build/gh/org/repo/main", **asked)
        assert answer.status_code == status, answer.get_data(as_text=True)
        answer.close()
    if status == 200:
        (build,) = store.builds.recent(10)
        assert build.requested_by == client_key(token, "")
    assert_error_format(client.get("/build/gh/org/repo/main"), 401)


def test_a_query_token_counts_only_at_the_binderhub_door(client):
    token = issue(client, "build")["Authorization"].split()[1]
    assert_error_format(client.get("/api/builds", query_string={"token": token}), 401)
    assert_error_format(client.get(f"/api/builds/abc?token={token}"), 401)


def test_the_door_takes_no_staging_from_the_caller(make_client, store):
    client = make_client(launch_auth="open")
    client.get("/build/gh/org/repo/main?staging=notebook&data=/etc&name=notebook").close()
    (build,) = store.builds.recent(10)
    assert build.staging is None and store.stagings.get("notebook") is None
    assert staging_name("built/r:1").startswith("bh-")  # named after the image alone
