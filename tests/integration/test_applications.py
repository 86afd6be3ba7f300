"""Applications that are not Jupyter notebooks, on the real stack: a plain HTTP app probed
by a path, a TCP-probed app, and a Jupyter Kernel Gateway running code with its token. Each
is reached through configurable-http-proxy, kept by the activity the proxy's route sees and
culled without it, and fails clearly when its probe never answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import time

import docker.errors
import pytest
import requests
import websocket

from binderq.adapters.readiness import wait_until_ready
from binderq.adapters.task_queue import CeleryTaskQueue
from binderq.bootstrap import build_celery
from binderq.domain.models import ServerStatus
from binderq.domain.tokens import server_token
from binderq.services import deploy, servers
from binderq.services.lifecycle import cull_idle_servers
from tests.fakes import FakeQueue
from tests.integration.conftest import (
    NOTEBOOK_IMAGE,
    ROOT,
    launch_settled,
    run_code,
    stage,
    wait_for,
)

WHEELS = os.environ.get("BINDERQ_KERNEL_GATEWAY_WHEELS",
                        str(ROOT / ".cache/wheels/kernel-gateway"))
ROOMY = {"memory": "512m", "cpus": 1.0, "pids": 256}


def _site(before: str = "") -> list[str]:
    """Python's http.server on the notebook image, serving index.html under base_url."""
    return ["sh", "-c", f'{before}mkdir -p "$HOME/site{{base_url}}" && '
            f'echo hello > "$HOME/site{{base_url}}index.html" && cd "$HOME/site" && '
            "exec python3 -m http.server {port}"]


HTTP_APP = {"kind": "web", "command": _site(), "probe": {"http": "index.html"},
            "public_url_is_secret": True}
# Listens only after 2 s: a probe that passed before would hand out a url that fails.
TCP_APP = {"kind": "web", "command": _site("sleep 2; "), "probe": {"tcp": True},
           "public_url_is_secret": True}


@pytest.fixture(scope="module")
def kernel_gateway_image(runtime, notebook_image, instance, tmp_path_factory):
    """The notebook image with PyPI's jupyter-kernel-gateway installed from wheels fetched
    on the host (deploy/setup.sh); image builds have no network. Removed at the end."""
    if not os.path.isdir(WHEELS):
        pytest.fail(f"no Kernel Gateway wheels at {WHEELS}: run deploy/setup.sh")
    context = tmp_path_factory.mktemp("kernel-gateway")
    shutil.copytree(WHEELS, context / "wheels")
    (context / "Dockerfile").write_text(
        f"FROM {notebook_image}\nUSER root\nCOPY wheels /tmp/wheels\n"
        "RUN python3 -m pip install --no-index --find-links /tmp/wheels "
        "--break-system-packages jupyter-kernel-gateway && rm -rf /tmp/wheels\nUSER jovyan\n")
    tag = f"{instance}-kernel-gateway:test"
    runtime.client.images.build(path=str(context), tag=tag, network_mode="none", rm=True,
                                forcerm=True)
    yield tag
    with contextlib.suppress(docker.errors.APIError):
        runtime.client.images.remove(tag, force=True)


def _page(server) -> str:
    response = requests.get(f"{server['url']}index.html", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


def _gateway_api(server) -> dict:
    """Kernel Gateway's version, for the holder of the token (listing its kernels is off by
    default: list_kernels)."""
    response = requests.get(f"{server['url']}api", timeout=10,
                            headers={"Authorization": f"token {server['token']}"})
    assert response.status_code == 200, response.text
    return response.json()


def _culler(settings, store, proxy):
    queue = CeleryTaskQueue(build_celery(settings), store)
    asked = []

    def cull() -> list[str]:
        culls = cull_idle_servers(store=store, proxy=proxy, queue=queue,
                                  activity_of=lambda server: asked.append(server.id))
        assert asked == [], "only notebooks are asked for their activity"
        return [cull.server_id for cull in culls]

    return cull


def _kept_by_route_activity_then_culled(server, use, cull):
    """In use for twice the cull_timeout (3 s) through the proxy: kept. Then idle: culled."""
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        use(server)
        assert server["id"] not in cull()
        time.sleep(0.5)
    culled = wait_for(lambda: server["id"] in cull() or None, timeout=20,
                      what=f"server {server['id']} is culled once idle")
    assert culled


@pytest.mark.parametrize(("name", "fields", "use"), [
    ("plain-http", HTTP_APP, _page),
    ("tcp-probed", TCP_APP, _page),
    ("gateway", {"kind": "kernel-gateway", "resources": ROOMY}, _gateway_api),
])
def test_an_application_answers_through_the_proxy_and_is_culled_by_route_activity(
        http, settings, store, proxy, kernel_gateway_image, name, fields, use):
    base, session = http
    image = kernel_gateway_image if fields["kind"] == "kernel-gateway" else NOTEBOOK_IMAGE
    stage(base, session, name, image=image, cull_timeout=3, **fields)
    shown = session.get(f"{base}/api/stagings/{name}").json()
    assert {key: shown[key] for key in fields} == {**fields}

    server = launch_settled(base, session, name)
    assert server["status"] == "ready", server
    assert server["kind"] == server["launch_kind"] == fields["kind"]
    assert server["url"].startswith(settings.public_url)  # the proxy's address
    if name != "gateway":
        assert _page(server) == "hello\n"
    _kept_by_route_activity_then_culled(server, use, _culler(settings, store, proxy))
    stopped = wait_for(lambda: (lambda s: s if s["status"] == "stopped" else None)(
        session.get(f"{base}/api/servers/{server['id']}").json()), timeout=60,
        what="the culled server stops")
    assert "culled: idle" in stopped["error"]


def test_a_kernel_gateway_runs_code_through_the_proxy_for_the_holder_of_its_token(
        http, kernel_gateway_image):
    base, session = http
    stage(base, session, "thebe", image=kernel_gateway_image, kind="kernel-gateway",
          resources=ROOMY)
    server = launch_settled(base, session, "thebe")
    assert (server["status"], server["kind"]) == ("ready", "kernel-gateway"), server
    url, token = server["url"], server["token"]
    kernels = f"{url}api/kernels"
    assert requests.post(kernels, timeout=10).status_code in (401, 403)
    assert requests.post(kernels, timeout=10,
                         headers={"Authorization": "token wrong"}).status_code in (401, 403)
    started = requests.post(kernels, timeout=60, headers={"Authorization": f"token {token}"})
    assert started.status_code == 201, started.text
    assert run_code(url, token, started.json()["id"], "print(6 * 7)") == "42\n"


THEBE_SITE = "https://thebe.example.org"


def test_a_thebe_page_on_the_allowed_site_may_use_the_kernel_gateway_and_others_may_not(
        http, settings, store, clean_runtime, proxy, kernel_gateway_image):
    """BINDERQ_CORS_ALLOW_ORIGIN reaches the Kernel Gateway's default command: a page of that
    site may start a kernel (CORS) and open its channels (the websocket's Origin check)."""
    base, session = http
    stage(base, session, "thebe-site", image=kernel_gateway_image, kind="kernel-gateway",
          resources=ROOMY)
    allowing = settings.with_changes(cors_allow_origin=THEBE_SITE)
    # Launched here, not by the session's worker, whose settings allow no origin.
    launch = deploy.request_launch("thebe-site", store=store, queue=FakeQueue(),
                                   settings=allowing)
    server = servers.launch_server(launch.server.id, store=store, runtime=clean_runtime,
                                   proxy=proxy, probe=wait_until_ready, settings=allowing)
    assert server.status == ServerStatus.READY, server.error
    token, kernels = server_token(settings.secret_key, server.id), f"{server.url}api/kernels"

    # A page's JSON POST is preflighted, without its Authorization header: Kernel Gateway 3
    # (on jupyter_server 2) refuses a preflight that carries no token, so the page sends it
    # in the query too (docs/applications.md).
    preflight = {"Origin": THEBE_SITE, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization,content-type"}
    allowed = requests.options(f"{kernels}?token={token}", timeout=10, headers=preflight)
    assert allowed.status_code in (200, 204), allowed.text
    assert allowed.headers.get("Access-Control-Allow-Origin") == THEBE_SITE
    assert {"authorization", "content-type"} <= set(
        allowed.headers.get("Access-Control-Allow-Headers", "").lower().split(","))
    assert requests.options(kernels, timeout=10, headers=preflight).status_code == 403

    started = requests.post(f"{kernels}?token={token}", json={}, timeout=60, headers={
        "Origin": THEBE_SITE, "Authorization": f"token {token}"})
    assert started.status_code == 201, started.text
    assert started.headers.get("Access-Control-Allow-Origin") == THEBE_SITE
    kernel = started.json()["id"]
    assert run_code(server.url, token, kernel, "print(6 * 7)", origin=THEBE_SITE) == "42\n"
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        run_code(server.url, token, kernel, "print(1)", origin="https://elsewhere.example")
    assert refused.value.status_code == 403
    elsewhere = requests.post(kernels, json={}, timeout=10, headers={
        "Origin": "https://elsewhere.example", "Authorization": f"token {token}"})
    assert elsewhere.status_code in (403, 404)  # jupyter_server's origin check
    assert "Access-Control-Allow-Origin" not in elsewhere.headers or \
        elsewhere.headers["Access-Control-Allow-Origin"] != "https://elsewhere.example"


def test_a_probe_that_never_answers_fails_the_launch_clearly_and_leaves_nothing(
        http, settings, clean_runtime, proxy, kernel_gateway_image):
    base, session = http
    stage(base, session, "no-page", **{**HTTP_APP, "probe": {"http": "missing.html"}})
    stage(base, session, "no-port", kind="web", command=["sleep", "600"],
          probe={"tcp": True}, public_url_is_secret=True)
    stage(base, session, "no-api", image=kernel_gateway_image, kind="kernel-gateway",
          resources=ROOMY, probe={"http": "no/such/page"})
    launched = [session.post(f"{base}/api/stagings/{name}/servers").json()["id"]
                for name in ("no-page", "no-port", "no-api")]

    def all_failed():
        found = [session.get(f"{base}/api/servers/{sid}").json() for sid in launched]
        return found if all(s["status"] == "failed" for s in found) else None

    failed = wait_for(all_failed, timeout=settings.launch_timeout + 60,
                      what="every launch fails")
    within = f"within {settings.launch_timeout:g} s"
    for server, probe in zip(failed, ("GET {base_url}missing.html",
                                      "a TCP connection to its port",
                                      "GET {base_url}no/such/page"), strict=True):
        assert f"did not answer its readiness probe ({probe}) {within}" in server["error"]
    assert clean_runtime.server_containers() == []
    assert not any(f"/user/{sid}" in proxy.routes() for sid in launched)
