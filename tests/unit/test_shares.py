"""Fair shares (docs/security.md): servers at once and launches per minute per client,
builds in progress and build requests per hour per client, max_servers per staging. Each
refusal is a 429 with Retry-After that names its limit; another client is still served; the
operator is exempt. The counts are the store's scripts (fakeredis' Lua here, real Redis in
tests/integration/test_shares.py); the rates are Flask-Limiter's (memory:// here)."""

from __future__ import annotations

import json

import pytest

from binderq.api import create_app
from binderq.domain.access import Caller
from binderq.domain.builds import BuildStatus
from binderq.domain.errors import CapacityExceeded, QuotaExceeded
from binderq.domain.models import Server, ServerStatus
from binderq.domain.shares import ClientShare, share_of
from binderq.domain.tokens import hash_token
from binderq.services import deploy, pools, servers
from binderq.services.builds import request_build
from binderq.settings import Settings, SettingsError
from tests.fakes import FakeGit
from tests.helpers import assert_error_format, ready_staging, run_queued_launches
from tests.unit.conftest import OPERATOR

A, B = {"REMOTE_ADDR": "198.51.100.1"}, {"REMOTE_ADDR": "198.51.100.2"}
NO_RATES = {"client_launches_per_minute": 0, "client_builds_per_hour": 0}


def _server(server_id: str, *, staging: str = "demo", client: str = "") -> Server:
    return Server(id=server_id, staging=staging, staging_version=1, client=client)


# -- the counts, in the store's scripts -----------------------------------------------------


def test_a_client_at_its_share_is_refused_and_another_client_is_not(store):
    for n in range(2):
        store.servers.reserve(_server(f"a{n}", client="addr:a"), 50, client_limit=2)
    with pytest.raises(QuotaExceeded) as refused:
        store.servers.reserve(_server("a2", client="addr:a"), 50, client_limit=2)
    assert (refused.value.field, refused.value.limit, refused.value.used) == \
        ("client_max_servers", 2, 2)
    assert store.servers.get("a2") is None
    store.servers.reserve(_server("b0", client="addr:b"), 50, client_limit=2)


@pytest.mark.parametrize("status", [ServerStatus.STOPPING, ServerStatus.STOPPED,
                                    ServerStatus.FAILED])
def test_a_server_stopping_stopped_or_failed_frees_its_clients_slot(store, status):
    store.servers.reserve(_server("a0", client="addr:a"), 50, client_limit=1)
    store.servers.transition("a0", [ServerStatus.PENDING], status=status)
    store.servers.reserve(_server("a1", client="addr:a"), 50, client_limit=1)


def test_a_terminal_server_leaves_its_staging_and_client_sets(store):
    store.servers.reserve(_server("a0", client="addr:a"), 50)
    store.servers.transition("a0", [ServerStatus.PENDING], status=ServerStatus.STOPPED)
    assert not store.redis.exists("binderq:servers:client:addr:a")
    assert not store.redis.exists("binderq:servers:staging:demo")


def test_a_staging_max_counts_its_servers_stopping_ones_too_until_they_are_gone(store):
    store.servers.reserve(_server("s0"), 50, staging_limit=1)
    store.servers.reserve(_server("o0", staging="other"), 50, staging_limit=1)
    store.servers.transition("s0", [ServerStatus.PENDING], status=ServerStatus.STOPPING)
    with pytest.raises(QuotaExceeded) as refused:
        store.servers.reserve(_server("s1"), 50, staging_limit=1)
    assert (refused.value.resource, refused.value.field) == ("Staging", "max_servers")
    store.servers.transition("s0", [ServerStatus.STOPPING], status=ServerStatus.STOPPED)
    store.servers.reserve(_server("s1"), 50, staging_limit=1)


def test_the_client_limit_is_named_before_the_staging_and_the_service_limits(store):
    store.servers.reserve(_server("a0", client="addr:a"), 1)
    with pytest.raises(QuotaExceeded) as refused:
        store.servers.reserve(_server("a1", client="addr:a"), 1, staging_limit=1,
                              client_limit=1)
    assert refused.value.field == "client_max_servers"
    with pytest.raises(CapacityExceeded):
        store.servers.reserve(_server("b0", client="addr:b"), 1, client_limit=1)


def test_a_pooled_claim_counts_against_the_client_and_a_refused_one_pops_nothing(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    pools.set_pool_size("demo", 3, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    share = ClientShare("addr:a", max_servers=2)
    for _ in range(2):
        launch = deploy.request_launch("demo", store=store, queue=queue, settings=settings,
                                       share=share)
        assert launch.server.pooled and launch.server.client == "addr:a"
    with pytest.raises(QuotaExceeded):
        deploy.request_launch("demo", store=store, queue=queue, settings=settings, share=share)
    assert store.pools.ready_count("demo") == 1
    other = deploy.request_launch("demo", store=store, queue=queue, settings=settings,
                                  share=ClientShare("addr:b", max_servers=2))
    assert other.server.pooled


def test_pool_upkeep_stops_at_the_stagings_max_and_a_larger_pool_is_refused(
        store, queue, runtime, settings):
    ready_staging(store, queue, runtime, max_servers=2)
    with pytest.raises(Exception) as refused:
        pools.set_pool_size("demo", 3, store=store, queue=queue, settings=settings)
    assert "max_servers" in str(refused.value.errors[0].message)
    store.pools.set_size("demo", 3)  # as if set before the staging's max was lowered
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    assert len([s for s in store.servers.active() if s.staging == "demo"]) == 2


def test_the_operator_is_exempt_from_the_client_share_but_recorded():
    operator = share_of(Caller(token="t", is_operator=True), max_servers=2, max_builds=1)
    anyone = share_of(Caller(address="192.0.2.7"), max_servers=2, max_builds=1)
    assert (operator.client, operator.max_servers, operator.max_builds) == ("operator", 0, 0)
    assert (anyone.client, anyone.max_servers, anyone.max_builds) == ("addr:192.0.2.7", 2, 1)


def _build(repo, caller, *, store, queue, settings):
    return request_build(repo, "main", None, store=store, queue=queue, git=FakeGit(),
                         settings=settings, caller=caller)


def test_builds_in_progress_per_client_are_limited_and_a_finished_one_frees_a_place(
        store, queue, settings):
    settings = settings.with_changes(client_max_builds=1)
    alice, bob = Caller(address="192.0.2.1"), Caller(address="192.0.2.2")
    first = _build("https://h/a", alice, store=store, queue=queue, settings=settings)
    assert first.requested_by == "addr:192.0.2.1"
    with pytest.raises(QuotaExceeded) as refused:
        _build("https://h/b", alice, store=store, queue=queue, settings=settings)
    assert "BINDERQ_CLIENT_MAX_BUILDS" in refused.value.message
    assert _build("https://h/c", bob, store=store, queue=queue, settings=settings)
    operator = Caller(token="t", is_operator=True)
    for repo in ("https://h/d", "https://h/e"):
        assert _build(repo, operator, store=store, queue=queue, settings=settings)
    store.builds.move(first.id, BuildStatus.SUCCEEDED, "built")
    assert _build("https://h/b", alice, store=store, queue=queue, settings=settings)


def test_settings_read_the_shares_and_refuse_negative_ones():
    settings = Settings.from_env({"BINDERQ_CLIENT_MAX_SERVERS": "3", "BINDERQ_SECRET_KEY": "k" * 32,
                                  "BINDERQ_CLIENT_BUILDS_PER_HOUR": "0"})
    assert (settings.client_max_servers, settings.client_builds_per_hour) == (3, 0)
    with pytest.raises(SettingsError, match="BINDERQ_CLIENT_LAUNCHES_PER_MINUTE"):
        Settings.from_env({"BINDERQ_CLIENT_LAUNCHES_PER_MINUTE": "-1",
                           "BINDERQ_SECRET_KEY": "k" * 32})


# -- at the doors: 429, Retry-After, the limit's name ---------------------------------------


def _client(settings, store, queue, **changes):
    settings = settings.with_changes(launch_auth="open", default_staging="demo", max_servers=50,
                                     **changes)
    return create_app(settings, store=store, queue=queue, proxy=None,
                      git=FakeGit()).test_client()


def _launch(client, environ, headers=None):
    return client.post("/api/stagings/demo/servers", environ_base=environ,
                       headers=headers or {})


def test_the_api_answers_429_naming_the_client_share_of_servers(store, queue, runtime,
                                                                 settings):
    ready_staging(store, queue, runtime, public=True)
    client = _client(settings, store, queue, client_max_servers=2, **NO_RATES)
    assert [_launch(client, A).status_code for _ in range(2)] == [202, 202]
    refused = _launch(client, A)
    body = assert_error_format(refused, 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert "BINDERQ_CLIENT_MAX_SERVERS" in body["message"]
    assert body["errors"] == [{"resource": "Server", "field": "client_max_servers",
                               "code": "quota_exceeded"}]
    assert _launch(client, B).status_code == 202
    assert all(_launch(client, A, OPERATOR).status_code == 202 for _ in range(3))


def test_the_api_answers_429_naming_a_stagings_max_servers(store, queue, runtime, settings):
    ready_staging(store, queue, runtime, public=True, max_servers=1)
    client = _client(settings, store, queue, **NO_RATES)
    assert client.get("/api/stagings/demo", headers=OPERATOR).get_json()["max_servers"] == 1
    assert _launch(client, A).status_code == 202
    refused = _launch(client, B, OPERATOR)  # the operator too: it is the staging's limit
    body = assert_error_format(refused, 429)
    assert "staging 'demo'" in body["message"] and "max_servers" in body["message"]
    assert body["errors"][0]["field"] == "max_servers" and "Retry-After" in refused.headers


def test_a_stagings_max_servers_is_validated(client):
    refused = client.put("/api/stagings/demo", headers=OPERATOR,
                         json={"image": "binderq/notebook:bookworm", "max_servers": 0})
    assert assert_error_format(refused, 422)["errors"][0]["field"] == "max_servers"


def test_launches_per_minute_are_shared_by_every_door_per_client(store, queue, runtime,
                                                                  proxy, settings):
    ready_staging(store, queue, runtime, public=True)
    pools.set_pool_size("demo", 5, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    client = _client(settings, store, queue, client_launches_per_minute=3)
    assert _launch(client, A).status_code == 201
    assert client.post("/api/spawn/", environ_base=A).status_code == 200
    assert _launch(client, A).status_code == 201
    refused = client.post("/api/spawn/", environ_base=A)
    body = assert_error_format(refused, 429)
    assert 0 < int(refused.headers["Retry-After"]) <= 61  # never early: rounded up
    assert "3 per minute (BINDERQ_CLIENT_LAUNCHES_PER_MINUTE)" in body["message"]
    assert body["errors"] == [{"resource": "Server", "field": "client_launches_per_minute",
                               "code": "rate_limited"}]
    assert _launch(client, B).status_code == 201
    assert _launch(client, A, OPERATOR).status_code == 201


def test_invented_tokens_do_not_make_new_clients(store, queue, runtime, settings):
    ready_staging(store, queue, runtime, public=True)
    client = _client(settings, store, queue, client_launches_per_minute=2)
    answers = [_launch(client, A, {"Authorization": f"token invented-{n}"}).status_code
               for n in range(3)]
    assert answers == [401, 401, 429]


def test_build_requests_per_hour_count_at_the_api_and_the_binderhub_door(store, queue,
                                                                        settings):
    store.tokens.save(hash_token("builder"), {"scopes": ["build", "launch"]})
    store.tokens.save(hash_token("other"), {"scopes": ["build", "launch"]})
    client = _client(settings, store, queue, client_builds_per_hour=2)

    def build(token, repo):
        return client.post("/api/builds", json={"repo": repo},
                           headers={"Authorization": f"token {token}"})

    assert build("builder", "https://h/a").status_code == 202
    stream = client.get("/build/gh/o/b/main", headers={"Authorization": "token builder"},
                        buffered=False)
    assert stream.status_code == 200
    stream.close()
    refused = build("builder", "https://h/c")
    body = assert_error_format(refused, 429)
    assert "BINDERQ_CLIENT_BUILDS_PER_HOUR" in body["message"]
    assert int(refused.headers["Retry-After"]) > 60  # an hour's window
    assert build("other", "https://h/c").status_code == 202
    assert build(settings.operator_token, "https://h/d").status_code == 202


def test_the_binderhub_door_streams_failed_past_the_clients_builds(store, queue, settings):
    client = _client(settings, store, queue, client_max_builds=1, **NO_RATES)
    assert client.post("/api/builds", json={"repo": "https://github.com/o/a"},
                       headers={"Authorization": f"token {settings.operator_token}"},
                       environ_base=A).status_code == 202
    client.get("/build/gh/o/b/main", environ_base=A).close()  # anonymous: A's one build
    stream = client.get("/build/gh/o/c/main", environ_base=A)
    (event,) = [json.loads(line[len("data: "):]) for line in
                stream.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    assert event["phase"] == "failed" and "BINDERQ_CLIENT_MAX_BUILDS" in event["message"]


@pytest.mark.parametrize(("trusted", "forwarded", "same_client"), [
    (0, ("198.51.100.7", "198.51.100.8"), True),  # no trusted proxy: the header is ignored
    (1, ("198.51.100.7", "198.51.100.8"), False),  # one proxy appended each address
    (1, ("198.51.100.8, 198.51.100.7", "198.51.100.7"), True),  # A forged B's address first
])
def test_a_client_is_its_address_as_trusted_proxies_report_it(store, queue, runtime, settings,
                                                               trusted, forwarded, same_client):
    ready_staging(store, queue, runtime, public=True)
    client = _client(settings, store, queue, trusted_proxies=trusted,
                     client_launches_per_minute=1)
    first, second = ({"X-Forwarded-For": value} for value in forwarded)
    assert _launch(client, A, first).status_code == 202
    assert _launch(client, A, second).status_code == (429 if same_client else 202)


def test_a_cold_launch_records_its_client(store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime)
    launch = deploy.launch("demo", caller=Caller(token=settings.operator_token,
                                                 is_operator=True),
                           store=store, queue=queue, settings=settings)
    server = servers.launch_server(launch.server.id, store=store, runtime=runtime, proxy=proxy,
                                   probe=lambda *a, **k: {}, settings=settings)
    assert server.client == "operator" and server.status == ServerStatus.READY


def test_binderq_up_trusts_its_own_proxy_unless_told_otherwise(monkeypatch):
    from binderq.cli import settings_for_up

    monkeypatch.delenv("BINDERQ_TRUSTED_PROXIES", raising=False)
    assert settings_for_up(Settings(), "127.0.0.1", 8000).trusted_proxies == 1
    monkeypatch.setenv("BINDERQ_TRUSTED_PROXIES", "2")
    assert settings_for_up(Settings(trusted_proxies=2), "127.0.0.1", 8000).trusted_proxies == 2


def test_binderq_up_ships_the_documented_shares_switched_on(monkeypatch):
    from binderq.cli import settings_for_up

    for name in ("CLIENT_MAX_SERVERS", "CLIENT_LAUNCHES_PER_MINUTE", "CLIENT_MAX_BUILDS",
                 "CLIENT_BUILDS_PER_HOUR", "TRUSTED_PROXIES"):
        monkeypatch.delenv(f"BINDERQ_{name}", raising=False)
    up = settings_for_up(Settings(), "127.0.0.1", 8000)
    assert (up.client_max_servers, up.client_launches_per_minute, up.client_max_builds,
            up.client_builds_per_hour, up.trusted_proxies) == (10, 20, 2, 30, 1)
    assert (up.max_servers, up.max_builds) == (50, 10)
