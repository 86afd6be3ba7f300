"""Kinds of application, their readiness probes, their tokens and their activity, with fake
adapters (the probes themselves against sockets on loopback)."""

from __future__ import annotations

import http.server
import socket
import threading
from datetime import timedelta

import pytest

from binderq.adapters.readiness import http_answers, tcp_answers, wait_until_ready
from binderq.domain.applications import JUPYTER_STATUS, Probe
from binderq.domain.errors import LaunchFailed
from binderq.domain.models import ServerStatus, Staging, utcnow
from binderq.domain.spec import LABEL_KIND, server_spec
from binderq.services import deploy, lifecycle, pools
from tests.helpers import (
    IMAGE,
    assert_error_format,
    launch_now,
    ready_staging,
    run_queued_launches,
)
from tests.unit.conftest import OPERATOR

WEB = {"kind": "web", "command": ["serve", "--port={port}", "--token={token}"]}


def _put(client, **fields):
    return client.put("/api/stagings/app", json={"image": IMAGE, **fields}, headers=OPERATOR)


@pytest.mark.parametrize(("fields", "field"), [
    ({"kind": "voila"}, "kind"),
    ({"probe": {"http": "x", "tcp": True}}, "probe"),
    ({"probe": {"http": "/api/status"}}, "probe"),
    ({"probe": {"http": "../../api"}}, "probe"),
    ({"probe": {"tcp": False}}, "probe"),
    ({"probe": {"grpc": "x"}}, "probe"),
    ({"kind": "web"}, "public_url_is_secret"),
    ({"kind": "web", "command": ["serve", "--port={port}"]}, "public_url_is_secret"),
])
def test_bad_kinds_probes_and_unchecked_tokens_are_refused_before_anything(
        client, queue, fields, field):
    body = assert_error_format(_put(client, **fields), 422)
    assert field in {error["field"].split(".")[0] for error in body["errors"]}, body
    assert queue.sent == []


@pytest.mark.parametrize("fields", [
    WEB,
    {"kind": "web", "public_url_is_secret": True},
    {"kind": "kernel-gateway"},
    {"kind": "notebook", "probe": {"http": "lab?reset"}},
    {"kind": "web", "probe": {"tcp": True}, "public_url_is_secret": True,
     "command": ["python3", "-m", "http.server", "{port}"]},
])
def test_kinds_and_probes_are_accepted_and_shown(client, fields):
    response = _put(client, **fields)
    assert response.status_code == 202, response.get_json()
    shown = client.get("/api/stagings/app", headers=OPERATOR).get_json()
    assert {key: shown[key] for key in fields} == fields


def test_the_defaults_are_a_notebook_probed_by_jupyters_status(client):
    shown = _put(client).get_json()
    assert (shown["kind"], shown["probe"], shown["public_url_is_secret"]) == (
        "notebook", None, False)


def _spec(**fields):
    staging = Staging(name="app", image=IMAGE, image_id="sha256:x", **fields)
    return server_spec(staging, "s1", "tok", instance="bq", allow_origin="https://a.org")


def test_a_kernel_gateway_runs_with_its_token_base_url_and_origin():
    spec = _spec(kind="kernel-gateway").notebook
    assert spec.command[:2] == ["jupyter", "kernelgateway"]
    for option in ("--KernelGatewayApp.auth_token=tok", "--KernelGatewayApp.base_url=/user/s1/",
                   "--KernelGatewayApp.port=8888", "--KernelGatewayApp.allow_origin=https://a.org",
                   "--KernelGatewayApp.allow_headers=Authorization,Content-Type"):
        assert option in spec.command
    assert spec.env["KG_AUTH_TOKEN"] == "tok"  # its own command too is held to the token
    assert spec.labels[LABEL_KIND] == "kernel-gateway"


def test_a_web_app_without_a_command_runs_its_images_own():
    spec = _spec(kind="web", public_url_is_secret=True).notebook
    assert spec.command is None and "KG_AUTH_TOKEN" not in spec.env


def _probed(store, queue, runtime, proxy, settings, **fields):
    checks = []

    def probe(base, token, *, timeout, still_running, check):
        checks.append(check)
        return {}

    ready_staging(store, queue, runtime, name="app", **fields)
    _, server = launch_now(store, queue, runtime, proxy, settings, name="app", probe=probe)
    assert server.status == ServerStatus.READY, server.error
    return checks[0], server


@pytest.mark.parametrize(("fields", "check"), [
    ({}, JUPYTER_STATUS),
    ({"kind": "kernel-gateway"}, Probe(http="api")),
    ({"kind": "web", "public_url_is_secret": True}, Probe(tcp=True)),
    ({**WEB, "probe": {"http": "index.html"}}, Probe(http="index.html")),
    ({"probe": {"tcp": True}}, Probe(tcp=True)),
])
def test_a_launch_waits_for_the_stagings_probe_or_its_kinds(store, queue, runtime, proxy,
                                                           settings, fields, check):
    probed, server = _probed(store, queue, runtime, proxy, settings, **fields)
    assert probed == check
    assert server.kind == fields.get("kind", "notebook")


def test_every_server_answer_carries_its_kind(client, store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime, name="app", kind="kernel-gateway")
    cold = client.post("/api/stagings/app/servers", headers=OPERATOR).get_json()
    assert cold["kind"] == "kernel-gateway" and cold["status"] == "pending"
    pools.set_pool_size("app", 1, store=store, queue=queue, settings=settings)
    pools.replenish_pool("app", store=store, runtime=runtime, queue=queue, settings=settings)
    run_queued_launches(store, queue, runtime, proxy, settings)
    pooled = client.post("/api/stagings/app/servers", headers=OPERATOR)
    assert pooled.status_code == 201 and pooled.get_json()["kind"] == "kernel-gateway"
    listed = client.get("/api/servers", headers=OPERATOR).get_json()
    assert {server["kind"] for server in listed} == {"kernel-gateway"}


def test_only_notebooks_are_asked_for_their_activity_the_others_go_by_the_route(
        store, queue, runtime, proxy, settings):
    ready_staging(store, queue, runtime, name="nb", cull_timeout=60)
    ready_staging(store, queue, runtime, name="app", cull_timeout=60, **WEB)
    _, notebook = launch_now(store, queue, runtime, proxy, settings, name="nb")
    _, app = launch_now(store, queue, runtime, proxy, settings, name="app")
    past = utcnow() - timedelta(seconds=120)
    for server in (notebook, app):
        store.servers.transition(server.id, [ServerStatus.READY], last_activity=past,
                                 ready_at=past)
    proxy.routes_[f"/user/{app.id}"]["last_activity"] = utcnow().isoformat()
    asked = []

    def activity_of(server):
        asked.append(server.id)
        return None

    culls = lifecycle.cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                        activity_of=activity_of)
    assert asked == [notebook.id]
    assert [cull.server_id for cull in culls] == [notebook.id]
    assert store.servers.get(app.id).status == ServerStatus.READY


# -- the probes themselves, against sockets on loopback ------------------------------------


class _Pages(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        codes = {"/app/ok": 200, "/app/moved": 302, "/app/token": 200}
        code = codes.get(self.path, 404)
        if self.path == "/app/token" and self.headers.get("Authorization") != "token tok":
            code = 403
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def web_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/app/"
    server.shutdown()


def test_an_http_probe_takes_2xx_and_3xx_and_sends_the_token(web_server):
    assert http_answers(web_server, "ok", "tok") and http_answers(web_server, "moved", "tok")
    assert http_answers(web_server, "token", "tok")
    assert not http_answers(web_server, "missing", "tok")
    assert not http_answers(web_server, "token", "wrong")


def test_a_tcp_probe_needs_a_connection_that_stays_open(web_server):
    assert tcp_answers(web_server)
    # What the engine's port publisher does while nothing listens in the container: it
    # accepts, then closes.
    publisher = socket.create_server(("127.0.0.1", 0))

    def accept_and_close():
        connection, _ = publisher.accept()
        connection.close()

    threading.Thread(target=accept_and_close, daemon=True).start()
    port = publisher.getsockname()[1]
    assert not tcp_answers(f"http://127.0.0.1:{port}/user/x/")
    publisher.close()
    assert not tcp_answers(f"http://127.0.0.1:{port}/user/x/")


def test_a_probe_that_never_answers_fails_the_launch_naming_the_probe(web_server):
    with pytest.raises(LaunchFailed, match=r"did not answer its readiness probe \(GET "
                                           r"\{base_url\}missing\) within 0.3 s"):
        wait_until_ready(web_server, "tok", timeout=0.3, still_running=lambda: None,
                         check=Probe(http="missing"))


def test_deploy_launch_of_a_web_staging_is_pending_with_its_kind(store, queue, runtime,
                                                                 settings):
    ready_staging(store, queue, runtime, name="app", **WEB)
    launch = deploy.request_launch("app", store=store, queue=queue, settings=settings)
    assert launch.server.kind == "web" and launch.server.status == ServerStatus.PENDING
