"""The pages (src/binderq/web): links and badges, the browser's binding to its server, the
operator's login, CSRF and dashboard, HTML errors outside the API, Swagger UI offline. What
the pages' scripts do in a browser is tests/integration/test_browser.py's."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie

import pytest

from binderq.domain.errors import InvalidInput
from binderq.domain.models import ServerStatus
from binderq.domain.tokens import server_token
from binderq.services.repo_launch import Waits, build_and_launch
from binderq.web.links import badge, notebook_location, repository_spec
from tests.fakes import FakeGit
from tests.helpers import OPERATOR_CALLER, assert_error_format, launch_now, ready_staging
from tests.unit.conftest import OPERATOR
from tests.unit.test_repo_launch import FakeClock, _built, _staged

# -- links ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider, repository, ref, spec", [
    ("gh", "org/repo", "main", "org/repo/main"),
    ("gh", "https://github.com/org/repo.git", "v1.0", "org/repo/v1.0"),
    ("gh", "github.com/org/repo/", "", "org/repo/HEAD"),
    ("gl", "https://gitlab.com/group/sub/repo", "main", "group/sub/repo/main"),
    ("git", "https://example.org/a repo.git", "feature/x",
     "https%3A%2F%2Fexample.org%2Fa%20repo.git/feature%2Fx"),
])
def test_a_forms_fields_become_mybinders_spec(provider, repository, ref, spec):
    assert repository_spec(provider, repository, ref) == spec


@pytest.mark.parametrize("provider, repository", [
    ("svn", "org/repo"), ("gh", ""), ("gh", "just-one-part"), ("gh", "org//repo")])
def test_a_form_that_names_no_repository_is_refused(provider, repository):
    with pytest.raises(InvalidInput):
        repository_spec(provider, repository, "main")


def test_a_badge_has_its_link_image_and_markdown():
    made = badge("https://bq.example/", "gh", "org/repo/main", file="index.ipynb")
    assert made.link == "https://bq.example/v2/gh/org/repo/main?labpath=index.ipynb"
    assert made.markdown == f"[![Launch in binderq]({made.image})]({made.link})"
    assert made.image == "https://bq.example/badge.svg"


URL = "http://bq.test/user/abc/"


@pytest.mark.parametrize("params, lab, location", [
    ({}, False, URL + "?token=t"),
    ({"urlpath": "/tree/data"}, False, URL + "tree/data?token=t"),
    ({"urlpath": "voila/render/x.ipynb?x=1"}, False, URL + "voila/render/x.ipynb?x=1&token=t"),
    ({"labpath": "nb/a b.ipynb"}, True, URL + "lab/tree/nb/a%20b.ipynb?token=t"),
    ({"labpath": "nb/a.ipynb"}, False, URL + "tree/nb/a.ipynb?token=t"),  # no JupyterLab
    ({"filepath": "a.ipynb"}, False, URL + "tree/a.ipynb?token=t"),
    ({"urlpath": "//evil.example/x"}, False, URL + "evil.example/x?token=t"),  # stays inside
])
def test_a_link_opens_its_path_in_the_server(params, lab, location):
    assert notebook_location(URL, "t", lab=lab, **params) == location


# -- pages and errors -----------------------------------------------------------------------


def test_the_launch_page_has_the_form_and_only_the_ready_public_stagings(
        client, store, queue, runtime):
    ready_staging(store, queue, runtime, "course", public=True, description="Week 1")
    ready_staging(store, queue, runtime, "private")
    ready_staging(store, queue, runtime, "bh-0123456789abcdef", public=True)
    response = client.get("/")
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'action="/v2"' in html and 'name="repository"' in html and 'name="ref"' in html
    assert 'href="/launch/course"' in html and "Week 1" in html
    assert "/launch/private" not in html and "bh-0123" not in html
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]


def test_no_page_loads_anything_from_another_origin(client):
    for path in ("/", "/admin/", "/v2/gh/org/repo/main", "/api/docs"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r'(src|href)="(https?:)?//', html), path


def test_unknown_pages_are_html_and_unknown_api_paths_stay_json(client):
    page = client.get("/no/such/page")
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "/no/such/page" in page.get_data(as_text=True)
    for path in ("/api/no-such", "/api/docs/assets/no-such.js", "/build"):
        assert_error_format(client.get(path), 404)


def test_swagger_ui_is_served_from_the_package(client):
    docs = client.get("/api/docs").get_data(as_text=True)
    assert '/api/docs/assets/swagger-ui-bundle.js' in docs and "cdn" not in docs
    bundle = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and b"SwaggerUIBundle" in bundle.get_data()


def test_the_pages_are_not_in_the_openapi_document(client):
    paths = client.get("/api/openapi.json").get_json()["paths"]
    assert not [path for path in paths if path.startswith(("/admin", "/v2", "/launch", "/badge"))]
    assert "/" not in paths


def test_the_form_without_script_redirects_to_the_badge_link(client):
    response = client.get("/v2?provider=git&repository=file:///tmp/r&ref=main&file=a.ipynb")
    assert response.status_code == 303
    assert response.headers["Location"] == "/v2/git/file%3A%2F%2F%2Ftmp%2Fr/main?labpath=a.ipynb"
    assert client.get("/v2?provider=svn&repository=x").status_code == 422


def test_the_badge_snippet_follows_the_form(client):
    body = client.get("/badge?provider=gh&repository=org/repo&ref=main").get_json()
    assert body["link"] == "http://binderq.test/v2/gh/org/repo/main"
    assert client.get("/badge?provider=gh&repository=").status_code == 422
    assert client.get("/badge.svg").mimetype == "image/svg+xml"


def test_a_bad_spec_or_a_staging_that_is_not_public_is_an_html_error(
        client, store, queue, runtime):
    ready_staging(store, queue, runtime, "private")
    assert client.get("/v2/svn/org/repo/main").status_code == 422
    response = client.get("/launch/private")
    assert response.status_code == 404 and response.mimetype == "text/html"


# -- the browser's server: bind, resume, start fresh ----------------------------------------


def _ready_server(store, queue, runtime, proxy, settings, name="course"):
    ready_staging(store, queue, runtime, name, public=True)
    _, server = launch_now(store, queue, runtime, proxy, settings, name)
    return server


def _bind(client, path, server_id, token, **headers):
    return client.post(path, json={"action": "bind", "server_id": server_id, "token": token},
                       headers=headers)


def test_binding_needs_the_servers_token_and_sets_a_cookie_without_it(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    token = server_token(settings.secret_key, server.id)
    assert _bind(client, "/launch/course", server.id, "not-its-token").status_code == 403
    assert "Set-Cookie" not in _bind(client, "/launch/course", server.id, "x").headers

    response = _bind(client, "/launch/course?urlpath=tree/data", server.id, token)
    assert response.get_json()["location"] == f"{server.url}tree/data?token={token}"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "Path=/launch/course;" in cookie + ";"
    assert "SameSite=Lax" in cookie and token not in cookie


def test_another_sites_post_is_refused(client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    token = server_token(settings.secret_key, server.id)
    response = _bind(client, "/launch/course", server.id, token, Origin="https://evil.example")
    assert response.status_code == 403 and "Set-Cookie" not in response.headers


def test_the_same_link_again_resumes_the_running_server(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    token = server_token(settings.secret_key, server.id)
    _bind(client, "/launch/course", server.id, token)

    html = client.get("/launch/course").get_data(as_text=True)
    assert f'id="resume-server">{server.id}<' in html
    assert f'data-resume-location="{server.url}?token={token}"' in html
    assert "data-cull-at=" in html and "Start fresh" in html
    assert 'id="resume"' not in client.get("/launch/other").get_data(as_text=True)


def test_a_cookie_for_another_link_or_a_stopped_server_does_not_resume(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    token = server_token(settings.secret_key, server.id)
    cookie = SimpleCookie(_bind(client, "/launch/course", server.id, token)
                          .headers["Set-Cookie"])["binderq_server"].value
    client.set_cookie("binderq_server", cookie, path="/v2/gh/org/repo/main")
    assert 'id="resume"' not in client.get("/v2/gh/org/repo/main").get_data(as_text=True)
    store.servers.transition(server.id, [ServerStatus.READY], status=ServerStatus.STOPPED)
    assert 'id="resume"' not in client.get("/launch/course").get_data(as_text=True)


def test_start_fresh_stops_the_bound_server_and_forgets_it(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    _bind(client, "/launch/course", server.id, server_token(settings.secret_key, server.id))

    response = client.post("/launch/course", data={"action": "fresh"})

    assert response.status_code == 303 and response.headers["Location"] == "/launch/course"
    assert store.servers.get(server.id).status == ServerStatus.STOPPING
    assert "binderq_server=;" in response.headers["Set-Cookie"]
    assert 'id="resume"' not in client.get("/launch/course").get_data(as_text=True)


def test_a_full_service_in_the_repository_stream_says_when_to_try_again(
        store, queue, runtime, settings):
    settings = settings.with_changes(max_servers=1, launch_timeout=1)
    _staged(store, queue, runtime, _built(store, queue, settings))
    clock = FakeClock()  # time passes only when the flow sleeps
    flow = dict(store=store, queue=queue, git=FakeGit(), settings=settings,
                waits=Waits(clock=clock, sleep=clock.sleep))
    list(build_and_launch("https://github.com/org/repo", "main", caller=OPERATOR_CALLER,
                          **flow))  # its server stays pending: no worker here
    last = list(build_and_launch("https://github.com/org/repo", "main",
                                 caller=OPERATOR_CALLER, **flow))[-1]
    assert last.phase == "failed" and last.details["retry_after"] > 0


# -- the operator's dashboard ----------------------------------------------------------------


def _csrf(client) -> str:
    html = client.get("/admin/").get_data(as_text=True)
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _log_in(client) -> str:
    response = client.post("/admin/login", data={"csrf": _csrf(client),
                                                 "token": "operator-secret"})
    assert response.status_code == 303, response.get_data(as_text=True)
    return _csrf(client)


def test_the_dashboard_asks_for_the_token_in_a_posted_form(client):
    response = client.get("/admin/?token=operator-secret")  # a token in a URL logs nobody in
    html = response.get_data(as_text=True)
    assert 'method="post" action="/admin/login"' in html and 'type="password"' in html
    assert 'id="servers"' not in html
    assert client.get("/admin/state.json").status_code == 401


def test_login_needs_the_forms_csrf_token_and_the_right_token(client):
    assert client.post("/admin/login", data={"token": "operator-secret"}).status_code == 403
    wrong = client.post("/admin/login", data={"csrf": _csrf(client), "token": "guess"})
    assert wrong.status_code == 401 and 'id="servers"' not in wrong.get_data(as_text=True)


def test_a_logged_in_browser_sees_the_dashboard_from_a_cookie_without_the_token(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    csrf = _csrf(client)
    response = client.post("/admin/login", data={"csrf": csrf, "token": "operator-secret"})
    cookie = response.headers["Set-Cookie"]
    assert "Path=/admin" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "operator-secret" not in cookie
    assert response.headers["Location"] == "/admin/"

    html = client.get("/admin/").get_data(as_text=True)
    assert f'data-server="{server.id}"' in html and 'data-staging="course"' in html
    state = client.get("/admin/state.json").get_json()
    assert [row["id"] for row in state["servers"]] == [server.id]
    assert set(state["queues"]) == {"launches.local", "builds", "maintenance"}
    assert state["stagings"][0]["pool"]["size"] == 0


def test_a_script_with_the_operators_header_is_logged_in(client):
    response = client.get("/admin/state.json", headers=OPERATOR)
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_state_changing_forms_need_the_sessions_csrf_token(
        client, store, queue, runtime, proxy, settings):
    server = _ready_server(store, queue, runtime, proxy, settings)
    csrf = _log_in(client)
    assert client.post("/admin/pools/course", data={"size": "2"}).status_code == 403
    assert client.post(f"/admin/servers/{server.id}/stop",
                       data={"csrf": "forged"}).status_code == 403
    assert store.servers.get(server.id).status == ServerStatus.READY

    assert client.post("/admin/pools/course", data={"size": "2", "csrf": csrf}).status_code \
        == 303
    assert store.pools.counters("course")["size"] == 2
    assert client.post(f"/admin/servers/{server.id}/stop",
                       data={"csrf": csrf}).status_code == 303
    assert store.servers.get(server.id).status == ServerStatus.STOPPING


def test_logging_out_ends_the_session(client):
    csrf = _log_in(client)
    client.post("/admin/logout", data={"csrf": csrf})
    assert client.get("/admin/state.json").status_code == 401
