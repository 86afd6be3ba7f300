"""The HTTP contract of API.md: status codes, error format, auth, with fake adapters."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from binderq.api import create_app
from binderq.domain.tokens import server_token
from binderq.services import stagings
from tests.helpers import IMAGE, assert_error_format
from tests.unit.conftest import OPERATOR


def _ready(client, store, runtime, name="demo", **fields):
    client.put(f"/api/stagings/{name}", json={"image": IMAGE, **fields}, headers=OPERATOR)
    stagings.stage(name, store.stagings.get(name).version, store=store, runtime=runtime)


def test_put_staging_answers_202_with_location_and_queues_staging(client, queue):
    response = client.put("/api/stagings/demo", json={"image": IMAGE}, headers=OPERATOR)
    assert response.status_code == 202
    assert response.headers["Location"].endswith("/api/stagings/demo")
    assert response.get_json()["status"] == "staging"
    assert queue.names() == ["binderq.stagings.stage"]


def test_an_unchanged_put_answers_200(client, store, runtime):
    _ready(client, store, runtime)
    response = client.put("/api/stagings/demo", json={"image": IMAGE}, headers=OPERATOR)
    assert response.status_code == 200 and response.get_json()["status"] == "ready"


def test_malformed_json_is_400(client, queue):
    response = client.put("/api/stagings/demo", data="{not json",
                          headers={**OPERATOR, "Content-Type": "application/json"})
    body = assert_error_format(response, 400)
    assert body["message"] == "Problems parsing JSON"
    assert queue.sent == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "token wrong"},
                                     {"Authorization": "Basic b3A6b3A="}])
def test_operator_calls_without_the_operator_token_are_401(client, headers, queue):
    response = client.put("/api/stagings/demo", json={"image": IMAGE}, headers=headers)
    assert_error_format(response, 401)
    assert queue.sent == []


def test_bearer_tokens_are_accepted_too(client):
    response = client.get("/api/stagings", headers={"Authorization": "Bearer operator-secret"})
    assert response.status_code == 200


@pytest.mark.parametrize("url", ["/api/stagings/nope", "/api/servers/nope", "/api/tasks/nope"])
def test_unknown_resources_are_404(client, url):
    body = assert_error_format(client.get(url, headers=OPERATOR), 404)
    assert body["errors"][0]["code"] == "missing"


def test_launching_an_unknown_staging_is_404(client):
    assert_error_format(client.post("/api/stagings/nope/servers", headers=OPERATOR), 404)


@pytest.mark.parametrize("fields, field", [
    ({"image": IMAGE, "port": 0}, "port"),
    ({"image": IMAGE, "port": 70000}, "port"),
    ({"image": IMAGE, "resources": {"memory": "lots"}}, "resources.memory"),
    ({"image": IMAGE, "resources": {"memory": "1m"}}, "resources.memory"),
    ({"image": IMAGE, "resources": {"cpus": 0}}, "resources.cpus"),
    ({"image": IMAGE, "colour": "blue"}, "colour"),
    ({}, "image"),
    ({"image": "Not An Image!"}, "image"),
    ({"image": IMAGE, "command": []}, "command"),
    ({"image": IMAGE, "env": {"1BAD": "x"}}, "env.1BAD.key"),
    ({"image": IMAGE, "data": [{"volume": "/etc", "target": "/data"}]}, "data.0.volume"),
    ({"image": IMAGE, "data": [{"volume": "v", "target": "relative"}]}, "data.0.target"),
    ({"image": IMAGE, "services": [{"name": "db", "image": IMAGE}, {"name": "db",
                                                                   "image": IMAGE}]},
     "services"),
])
def test_invalid_staging_fields_are_422_naming_the_field(client, fields, field, queue):
    response = client.put("/api/stagings/demo", json=fields, headers=OPERATOR)
    body = assert_error_format(response, 422)
    assert field in [error["field"] for error in body["errors"]]
    assert all(error["resource"] == "Staging" for error in body["errors"])
    assert queue.sent == []


@pytest.mark.parametrize("name", ["a b", "-lead", "x" * 64, "é", ".hidden", "a:log"])
@pytest.mark.parametrize("url", ["/api/stagings/{}", "/api/pools/{}"])
def test_invalid_staging_names_are_422(client, name, url, queue):
    response = client.put(url.format(name), json={"image": IMAGE, "size": 1},
                          headers=OPERATOR)
    body = assert_error_format(response, 422)
    assert body["errors"][0]["field"] == "name"
    assert queue.sent == []


def test_a_name_is_one_path_segment(client):
    """/api/stagings/a/b is no resource; PUT on a launch url is a method it does not allow."""
    assert_error_format(client.put("/api/stagings/a/b", json={"image": IMAGE},
                                   headers=OPERATOR), 404)
    response = client.put("/api/stagings/a/servers", headers=OPERATOR)
    assert_error_format(response, 405)
    assert "POST" in response.headers["Allow"]


def test_missing_field_code_is_missing_field(client):
    body = assert_error_format(client.put("/api/stagings/demo", json={}, headers=OPERATOR), 422)
    assert body["errors"][0]["code"] == "missing_field"


def test_a_body_too_large_is_413(client):
    response = client.put("/api/stagings/demo", data="x" * (2 * 1024 * 1024),
                          headers={**OPERATOR, "Content-Type": "application/json"})
    assert_error_format(response, 413)


def test_a_wrong_method_is_405_in_json(client):
    assert_error_format(client.patch("/api/stagings/demo", headers=OPERATOR), 405)


def test_launch_answers_202_pending_with_its_token_once(client, store, runtime, settings):
    _ready(client, store, runtime)
    response = client.post("/api/stagings/demo/servers", headers=OPERATOR)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "pending" and body["pooled"] is False
    assert body["token"] == server_token(settings.secret_key, body["id"])
    assert response.headers["Location"].endswith(f"/api/servers/{body['id']}")
    again = client.get(f"/api/servers/{body['id']}", headers=OPERATOR).get_json()
    assert "token" not in again and again["status"] == "pending"


def test_a_server_token_opens_only_its_own_server(client, store, runtime):
    _ready(client, store, runtime)
    first = client.post("/api/stagings/demo/servers", headers=OPERATOR).get_json()
    second = client.post("/api/stagings/demo/servers", headers=OPERATOR).get_json()
    own = {"Authorization": f"token {first['token']}"}
    assert client.get(f"/api/servers/{first['id']}", headers=own).status_code == 200
    assert_error_format(client.get(f"/api/servers/{second['id']}", headers=own), 401)
    assert_error_format(client.get("/api/servers", headers=own), 401)
    assert client.delete(f"/api/servers/{first['id']}", headers=own).status_code == 202


def test_at_capacity_a_launch_is_429_with_retry_after(client, store, runtime, settings):
    _ready(client, store, runtime)
    for _ in range(settings.max_servers):
        assert client.post("/api/stagings/demo/servers", headers=OPERATOR).status_code == 202
    response = client.post("/api/stagings/demo/servers", headers=OPERATOR)
    assert_error_format(response, 429)
    assert int(response.headers["Retry-After"]) > 0


def test_open_launch_auth_lets_anyone_launch_public_stagings_only(
        app, client, store, runtime, settings):
    app.extensions["binderq"] = app.extensions["binderq"].__class__(
        settings=settings.with_changes(launch_auth="open"), store=store,
        queue=app.extensions["binderq"].queue, proxy=None)
    _ready(client, store, runtime, name="open", public=True)
    _ready(client, store, runtime, name="closed")
    assert client.post("/api/stagings/open/servers").status_code == 202
    assert_error_format(client.post("/api/stagings/closed/servers"), 401)
    bad = {"Authorization": "token wrong"}
    assert_error_format(client.post("/api/stagings/open/servers", headers=bad), 401)


def test_token_launch_auth_needs_a_token_even_for_public_stagings(client, store, runtime):
    _ready(client, store, runtime, public=True)
    assert_error_format(client.post("/api/stagings/demo/servers"), 401)


def test_delete_server_answers_202_stopping_and_queues_the_stop(client, store, runtime, queue):
    _ready(client, store, runtime)
    server = client.post("/api/stagings/demo/servers", headers=OPERATOR).get_json()
    response = client.delete(f"/api/servers/{server['id']}", headers=OPERATOR)
    assert response.status_code == 202 and response.get_json()["status"] == "stopping"
    assert queue.names()[-1] == "binderq.servers.stop"


def test_delete_staging_with_servers_is_409_unless_forced(client, store, runtime):
    _ready(client, store, runtime)
    client.post("/api/stagings/demo/servers", headers=OPERATOR)
    assert_error_format(client.delete("/api/stagings/demo", headers=OPERATOR), 409)
    assert client.delete("/api/stagings/demo?force=true", headers=OPERATOR).status_code == 204
    assert_error_format(client.get("/api/stagings/demo", headers=OPERATOR), 404)


def test_servers_list_filters_by_staging_and_status(client, store, runtime):
    _ready(client, store, runtime)
    client.post("/api/stagings/demo/servers", headers=OPERATOR)
    listed = client.get("/api/servers?staging=demo&status=pending", headers=OPERATOR)
    assert len(listed.get_json()) == 1
    assert client.get("/api/servers?status=ready", headers=OPERATOR).get_json() == []
    assert_error_format(client.get("/api/servers?status=sleepy", headers=OPERATOR), 422)


def test_tasks_report_their_state(client, queue):
    client.put("/api/stagings/demo", json={"image": IMAGE}, headers=OPERATOR)
    task_id = queue.sent[0][2]
    body = client.get(f"/api/tasks/{task_id}", headers=OPERATOR).get_json()
    assert body["name"] == "binderq.stagings.stage" and body["state"] == "PENDING"


def test_health_is_200_when_all_answer_and_503_naming_what_is_down(app, client, store,
                                                                   queue, proxy):
    assert client.get("/api/health").get_json()["ok"] is True
    proxy.down = True
    store.redis.delete("binderq:health")  # health answers a report up to 5 s old
    app.extensions["binderq"].health.report = None
    response = client.get("/api/health", headers=OPERATOR)
    assert response.status_code == 503
    checks = response.get_json()["checks"]
    assert checks["proxy"]["ok"] is False and checks["redis"]["ok"] is True
    assert checks["proxy"]["error"]


def test_openapi_document_describes_the_resources(client):
    spec = client.get("/api/openapi.json").get_json()
    assert {"/api/stagings/{name}", "/api/stagings/{name}/servers", "/api/servers/{server_id}",
            "/api/health", "/api/tasks/{task_id}"} <= set(spec["paths"])
    put = spec["paths"]["/api/stagings/{name}"]["put"]
    assert {"200", "202", "422"} <= set(put["responses"])


def test_user_tokens_launch_with_the_launch_scope_only_and_can_be_revoked(client, store,
                                                                          runtime):
    _ready(client, store, runtime)
    issued = client.post("/api/tokens", json={"scopes": ["launch"], "note": "course page"},
                         headers=OPERATOR)
    assert issued.status_code == 201
    body = issued.get_json()
    assert body["token"] not in str(store.redis.keys("*"))  # only its hash is stored
    launcher = {"Authorization": f"token {body['token']}"}
    assert client.post("/api/stagings/demo/servers", headers=launcher).status_code == 202
    assert_error_format(client.get("/api/stagings", headers=launcher), 403)

    builder = client.post("/api/tokens", json={"scopes": ["build"]}, headers=OPERATOR)
    builder_auth = {"Authorization": f"token {builder.get_json()['token']}"}
    assert_error_format(client.post("/api/stagings/demo/servers", headers=builder_auth), 403)

    assert client.delete(f"/api/tokens/{body['id']}", headers=OPERATOR).status_code == 204
    assert_error_format(client.post("/api/stagings/demo/servers", headers=launcher), 401)
    assert_error_format(client.delete(f"/api/tokens/{body['id']}", headers=OPERATOR), 404)


@pytest.mark.parametrize("fields", [{"scopes": ["root"]}, {"scopes": []}, {}])
def test_tokens_with_unknown_or_no_scopes_are_422(client, fields):
    assert_error_format(client.post("/api/tokens", json=fields, headers=OPERATOR), 422)


@pytest.mark.parametrize("token_id", ["*", "?" * 16, "[0-9a-f]*"])
def test_a_token_id_that_is_a_pattern_revokes_nothing(client, store, token_id):
    issued = client.post("/api/tokens", json={"scopes": ["launch"]}, headers=OPERATOR)
    url = f"/api/tokens/{quote(token_id, safe='')}"
    assert_error_format(client.delete(url, headers=OPERATOR), 404)
    launcher = {"Authorization": f"token {issued.get_json()['token']}"}
    assert client.post("/api/stagings/nope/servers", headers=launcher).status_code == 404


def _app_with_origin(settings, store, queue, proxy, origin):
    from binderq.api import create_app

    return create_app(settings.with_changes(cors_allow_origin=origin), store=store,
                      queue=queue, proxy=proxy).test_client()


def test_the_configured_origin_may_call_the_api_and_preflight(settings, store, queue, proxy):
    client = _app_with_origin(settings, store, queue, proxy, "https://journal.example")
    page = {"Origin": "https://journal.example"}
    preflight = client.options("/api/stagings/demo/servers", headers={
        **page, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://journal.example"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    answer = client.post("/api/stagings/nope/servers", headers=page)
    assert answer.headers["Access-Control-Allow-Origin"] == "https://journal.example"
    assert "Location" in answer.headers["Access-Control-Expose-Headers"]


def test_other_origins_and_the_default_get_no_cors_headers(settings, store, queue, proxy):
    client = _app_with_origin(settings, store, queue, proxy, "https://journal.example")
    other = client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers
    default = _app_with_origin(settings, store, queue, proxy, "")
    plain = default.get("/api/health", headers={"Origin": "https://journal.example"})
    assert "Access-Control-Allow-Origin" not in plain.headers



@pytest.mark.parametrize("trusted, forwarded, seen", [
    (0, "6.6.6.6", "127.0.0.1"),                    # reached directly: the header is ignored
    (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),     # one proxy appended the real address
    (1, "", "127.0.0.1"),                           # no header: the peer
])
def test_the_client_address_is_read_only_as_far_as_proxies_are_trusted(
        settings, store, queue, proxy, trusted, forwarded, seen):
    from binderq.api.context import context
    app = create_app(settings.with_changes(trusted_proxies=trusted), store=store,
                     queue=queue, proxy=proxy)
    app.add_url_rule("/whoami", "whoami", lambda: context().caller().address)
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    answer = app.test_client().get("/whoami", headers=headers,
                                   environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert answer.get_data(as_text=True) == seen
