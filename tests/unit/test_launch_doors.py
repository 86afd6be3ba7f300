"""Every door launches through one service with one rule for who may launch (DESIGN.md,
invariant 14): the JSON API, tmpnb's spawn and BinderHub's stream answer each caller alike,
for public and private stagings, under open and token launch auth."""

from __future__ import annotations

import pytest

from binderq.api import create_app
from binderq.domain.tokens import hash_token, server_token
from binderq.services import deploy, pools
from tests.fakes import FakeGit
from tests.helpers import ready_staging, run_queued_launches

ALLOWED, UNAUTHORIZED, FORBIDDEN = "allowed", 401, 403
ROLES = ("anonymous", "server token", "bad token", "user with launch", "user without launch",
         "operator")

# What each role gets: written out, not derived from the rule under test.
OPEN_PUBLIC = {"anonymous": ALLOWED, "server token": UNAUTHORIZED, "bad token": UNAUTHORIZED,
               "user with launch": ALLOWED, "user without launch": ALLOWED,
               "operator": ALLOWED}
NEEDS_LAUNCH_SCOPE = {"anonymous": UNAUTHORIZED, "server token": UNAUTHORIZED,
                      "bad token": UNAUTHORIZED, "user with launch": ALLOWED,
                      "user without launch": FORBIDDEN, "operator": ALLOWED}
EXPECTED = {("open", True): OPEN_PUBLIC, ("open", False): NEEDS_LAUNCH_SCOPE,
            ("token", True): NEEDS_LAUNCH_SCOPE, ("token", False): NEEDS_LAUNCH_SCOPE}


def _door_answers(client, door: str, headers: dict[str, str]):
    if door == "api":
        return client.post("/api/stagings/demo/servers", headers=headers)
    if door == "tmpnb":
        return client.post("/api/spawn/", headers=headers)
    return client.get("/build/gh/org/repo/main", headers=headers, buffered=False)


def _outcome(response) -> str | int:
    status = response.status_code
    response.close()  # a stream is not followed: only who may start it is asked here
    if status in (200, 201, 202):
        return ALLOWED
    assert status in (UNAUTHORIZED, FORBIDDEN), status
    return status


def _pooled_staging(store, queue, runtime, proxy, settings, *, public: bool) -> None:
    """Staging demo, ready, with one server waiting in its pool."""
    ready_staging(store, queue, runtime, public=public)
    pools.set_pool_size("demo", 1, store=store, queue=queue, settings=settings)
    pools.replenish_pool("demo", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    assert store.pools.ready_count("demo") == 1


def _headers_of(role: str, store, settings) -> dict[str, str]:
    tokens = {"anonymous": None, "operator": settings.operator_token, "bad token": "nope",
              "server token": server_token(settings.secret_key, "someserver"),
              "user with launch": "launcher-token", "user without launch": "builder-token"}
    store.tokens.save(hash_token("launcher-token"), {"scopes": ["launch", "build"]})
    store.tokens.save(hash_token("builder-token"), {"scopes": ["build"]})
    token = tokens[role]
    return {"Authorization": f"token {token}"} if token else {}


# The BinderHub door stages every repository it builds as a public staging: it has no
# private case.
CASES = [(door, role, public, launch_auth)
         for door in ("api", "tmpnb", "binderhub") for role in ROLES
         for public in (True, False) for launch_auth in ("open", "token")
         if public or door != "binderhub"]


@pytest.mark.parametrize(("door", "role", "public", "launch_auth"), CASES)
def test_every_door_answers_each_caller_alike(door, role, public, launch_auth, settings,
                                              store, queue, runtime, proxy):
    settings = settings.with_changes(launch_auth=launch_auth, default_staging="demo")
    _pooled_staging(store, queue, runtime, proxy, settings, public=public)
    client = create_app(settings, store=store, queue=queue, proxy=proxy,
                        git=FakeGit()).test_client()

    answer = _door_answers(client, door, _headers_of(role, store, settings))

    assert _outcome(answer) == EXPECTED[(launch_auth, public)][role]


def test_a_deleted_staging_is_not_found_at_every_door_even_when_cached(
        settings, store, queue, runtime, proxy):
    settings = settings.with_changes(launch_auth="open", default_staging="demo")
    _pooled_staging(store, queue, runtime, proxy, settings, public=True)
    client = create_app(settings, store=store, queue=queue, proxy=proxy,
                        git=FakeGit()).test_client()
    assert client.post("/api/spawn/").status_code == 200  # the door has cached the staging
    deploy.delete_staging("demo", force=True, store=store, queue=queue)

    for door in ("api", "tmpnb"):
        assert _door_answers(client, door, {}).status_code == 404, door
