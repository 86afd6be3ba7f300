"""Stage, deploy, reach through the proxy, stop: the API, a real Celery worker, real Redis,
the real Docker engine, a real notebook and configurable-http-proxy."""

from __future__ import annotations

import time

import requests

from tests.integration.conftest import OPERATOR, stage_in_app, wait_for


def launch(api, name):
    response = api.post(f"/api/stagings/{name}/servers", headers=OPERATOR)
    assert response.status_code == 202, response.get_json()
    return response.get_json()


def settle(api, server_id, timeout=90):
    def done():
        server = api.get(f"/api/servers/{server_id}", headers=OPERATOR).get_json()
        return server if server["status"] not in ("pending", "starting", "stopping") else None

    return wait_for(done, timeout=timeout, what=f"server {server_id} settles")


def test_a_staged_notebook_launches_answers_through_the_proxy_and_stops_clean(
        api, notebook_image, clean_runtime, proxy):
    staging = stage_in_app(api, "e2e", image=notebook_image,
                           resources={"memory": "256m", "cpus": 0.5, "pids": 128})
    assert staging["status"] == "ready", staging

    launched = launch(api, "e2e")
    server = settle(api, launched["id"])
    assert server["status"] == "ready", server
    assert server["url"].endswith(f"/user/{launched['id']}/")

    status = requests.get(f"{server['url']}api/status", params={"token": launched["token"]},
                          timeout=10)
    assert status.status_code == 200 and "last_activity" in status.json()
    forbidden = requests.get(f"{server['url']}api/status", params={"token": "wrong"},
                             timeout=10)
    assert forbidden.status_code == 403

    own = {"Authorization": f"token {launched['token']}"}
    assert api.delete(f"/api/servers/{launched['id']}", headers=own).status_code == 202
    assert settle(api, launched["id"])["status"] == "stopped"
    assert clean_runtime.server_containers() == []
    assert f"/user/{launched['id']}" not in proxy.routes()
    assert requests.get(f"{server['url']}api/status", timeout=10).status_code != 200


def test_a_staging_whose_image_is_missing_fails_and_says_so(api):
    staging = stage_in_app(api, "ghost", image="binderq/not-built:1")
    assert staging["status"] == "failed"
    assert "binderq/not-built:1" in staging["error"]
    assert "not on the Docker engine" in staging["error"]
    refused = api.post("/api/stagings/ghost/servers", headers=OPERATOR)
    assert refused.status_code == 409


def test_a_notebook_that_crashes_fails_with_its_log_and_leaves_no_container(
        api, notebook_image, clean_runtime, proxy):
    stage_in_app(api, "crash", image=notebook_image,
          command=["python3", "-c", "import sys; print('boom: no notebook here'); sys.exit(3)"])
    launched = launch(api, "crash")
    server = settle(api, launched["id"])
    assert server["status"] == "failed"
    assert "stopped before the notebook answered" in server["error"]
    assert "boom: no notebook here" in server["error"]
    assert clean_runtime.server_containers() == []
    assert f"/user/{launched['id']}" not in proxy.routes()


def test_a_server_deleted_while_starting_ends_stopped_with_nothing_left(
        api, notebook_image, clean_runtime, proxy):
    stage_in_app(api, "quick", image=notebook_image)
    launched = launch(api, "quick")
    wait_for(lambda: api.get(f"/api/servers/{launched['id']}", headers=OPERATOR)
             .get_json()["status"] == "starting", timeout=30, what="server starts")
    api.delete(f"/api/servers/{launched['id']}", headers=OPERATOR)
    assert settle(api, launched["id"])["status"] == "stopped"
    time.sleep(2)  # let the launch task, which may still be probing, finish its cleanup
    assert clean_runtime.server_containers() == []
    assert f"/user/{launched['id']}" not in proxy.routes()


def test_health_is_green_with_every_dependency_up(api):
    started = time.monotonic()
    response = api.get("/api/health")
    assert time.monotonic() - started < 2
    assert response.status_code == 200, response.get_json()
    assert set(response.get_json()["checks"]) == {"redis", "docker", "proxy", "workers"}
