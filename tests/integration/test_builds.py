"""Builds on the real stack: git repositories made on disk, a builds worker, docker build
FROM the local notebook image. Every image built here is removed at the end."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import os
import signal
import subprocess
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from binderq.bootstrap import create_wsgi_app
from tests.integration.conftest import (
    OPERATOR,
    celery_worker,
    git,
    make_repo,
    remove_built_images,
    run_code,
    wait_for,
)


@pytest.fixture(scope="module")
def build_settings(settings):
    return settings.with_changes(allow_local_repos=True, build_memory="512m", build_timeout=20,
                                 max_repo_bytes=8 * 1024**2)


@pytest.fixture(scope="module")
def build_worker(build_settings, logs_dir, runtime):
    with celery_worker(build_settings, "builds", logs_dir / "build-worker.log",
                       name="build@%h", concurrency=1) as process:
        yield process
    remove_built_images(runtime, build_settings.instance)


@pytest.fixture
def api(build_settings, store, build_worker, launch_worker, notebook_image):
    return create_wsgi_app(build_settings).test_client()


def finished(api, build_id, timeout=240):
    def done():
        build = api.get(f"/api/builds/{build_id}", headers=OPERATOR).get_json()
        return build if build["status"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(done, timeout=timeout, what=f"build {build_id} finishes")


DOCKERFILE = "FROM binderq/notebook:bookworm\nRUN echo made-by-binderq > /tmp/proof\n"


def test_a_dockerfile_repository_builds_once_and_then_comes_from_the_cache(
        api, tmp_path, runtime):
    url = make_repo(tmp_path, "plain", {"Dockerfile": DOCKERFILE})
    first = api.post("/api/builds", json={"repo": url, "ref": "main"}, headers=OPERATOR)
    assert first.status_code == 202, first.get_json()
    build = finished(api, first.get_json()["id"])
    assert build["status"] == "succeeded", build
    image = runtime.client.images.get(build["image"])
    assert image.labels["binderq.build.commit"] == build["commit"]
    assert image.labels["binderq.build.repo"] == url
    log = api.get(f"/api/builds/{build['id']}/logs", headers=OPERATOR).get_data(as_text=True)
    assert "RUN echo made-by-binderq" in log and "[binderq] succeeded" in log

    again = api.post("/api/builds", json={"repo": url, "ref": "main"}, headers=OPERATOR)
    assert again.status_code == 200
    assert again.get_json()["cached"] is True and again.get_json()["image"] == build["image"]


def test_identical_requests_while_building_share_one_build(api, tmp_path, store):
    url = make_repo(tmp_path, "shared", {"Dockerfile": DOCKERFILE + "RUN sleep 2\n"})
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: api.post("/api/builds", json={"repo": url},
                                                   headers=OPERATOR), range(6)))
    ids = {answer.get_json()["id"] for answer in answers}
    assert len(ids) == 1, ids
    assert finished(api, ids.pop())["status"] == "succeeded"
    assert len([b for b in store.builds.recent(100) if b.repo == url]) == 1


def test_a_failing_dockerfile_fails_keeps_its_log_and_leaves_no_image(api, tmp_path, runtime):
    half_images_before = set(_dangling(runtime))
    url = make_repo(tmp_path, "broken", {"Dockerfile": DOCKERFILE + f"RUN echo {tmp_path}\n"
                                                       "RUN exit 3\n"})
    build = finished(api, api.post("/api/builds", json={"repo": url},
                                   headers=OPERATOR).get_json()["id"])
    assert build["status"] == "failed"
    assert build["error"].startswith("building failed") and "exit 3" in build["error"]
    log = api.get(f"/api/builds/{build['id']}/logs", headers=OPERATOR).get_data(as_text=True)
    assert "RUN exit 3" in log
    assert runtime.client.images.list(name=build["image"]) == []
    assert set(_dangling(runtime)) <= half_images_before  # no half-image either
    retry = api.post("/api/builds", json={"repo": url}, headers=OPERATOR)
    assert retry.status_code == 202 and retry.get_json()["id"] != build["id"]  # not cached


@pytest.mark.parametrize("attack, error", [
    ("symlink", "fetching failed: the symlink passwords points outside the repository"),
    ("large", "fetching failed: the repository's files are 12 MiB, over the 8 MiB limit"),
])
def test_a_repository_that_attacks_gets_a_failed_build_and_nothing_else(
        api, tmp_path, runtime, attack, error, no_build_containers):
    url = make_repo(tmp_path, attack, {"Dockerfile": DOCKERFILE, **(
        {"zeros.bin": bytes(12 * 1024**2)} if attack == "large" else {})})
    if attack == "symlink":
        path = Path(url.removeprefix("file://"))
        (path / "passwords").symlink_to("/etc/passwd")
        git(path, "add", ".")
        git(path, "commit", "--quiet", "-m", "link")
    half_images_before = set(_dangling(runtime))
    build = finished(api, api.post("/api/builds", json={"repo": url},
                                   headers=OPERATOR).get_json()["id"])
    assert (build["status"], build["error"]) == ("failed", error)
    assert build["image"] is None  # it never reached docker build
    assert set(_dangling(runtime)) <= half_images_before and no_build_containers()


def test_a_build_past_its_memory_limit_fails_naming_the_limit(api, tmp_path, runtime,
                                                              no_build_containers):
    hog = "RUN python3 -c 'b = bytearray(1024**3); print(len(b))'\n"  # 1 GiB, limit 512 MiB
    url = make_repo(tmp_path, "hog", {"Dockerfile": DOCKERFILE + hog})
    build = finished(api, api.post("/api/builds", json={"repo": url},
                                   headers=OPERATOR).get_json()["id"])
    assert build["status"] == "failed"
    assert "memory limit of 512 MiB, BINDERQ_BUILD_MEMORY" in build["error"], build["error"]
    wait_for(no_build_containers, timeout=30, what="the build is gone")
    assert runtime.client.images.list(name=build["image"]) == []


def test_an_environment_binderq_cannot_honour_fails_naming_the_file(api, tmp_path):
    url = make_repo(tmp_path, "conda", {"binder/environment.yml": "dependencies: []\n"})
    build = finished(api, api.post("/api/builds", json={"repo": url},
                                   headers=OPERATOR).get_json()["id"])
    assert build["status"] == "failed"
    assert "binder/environment.yml" in build["error"]


def test_postbuild_and_start_run_in_a_generated_image_that_is_then_staged(api, tmp_path,
                                                                          runtime):
    url = make_repo(tmp_path, "generated", {
        ".binder/postBuild": "#!/bin/sh\necho from-postbuild > ~/postbuild-ran\n",
        ".binder/start": '#!/bin/sh\nexport STARTED_BY=binderq\nexec "$@"\n',
    })
    answer = api.post("/api/builds", json={"repo": url, "staging": {
        "name": "from-build", "public": True, "resources": {"memory": "256m"},
        "pool_size": 1}}, headers=OPERATOR)
    build = finished(api, answer.get_json()["id"])
    assert build["status"] == "succeeded", build
    output = runtime.client.containers.run(
        build["image"], ["sh", "-c", "cat ~/postbuild-ran; echo $STARTED_BY"], remove=True)
    assert output.decode().split() == ["from-postbuild", "binderq"]
    staging = wait_for(lambda: _ready(api, "from-build"), timeout=60,
                       what="the built image is staged")
    assert staging["image"] == build["image"] and staging["public"] is True
    source = staging["source"]  # the build's provenance labels, read back from the image
    assert (source["repo"], source["commit"], source["build"]) == (url, build["commit"],
                                                                   build["id"])
    assert source["spec_hash"] and source["labels"]["binderq.build.commit"] == build["commit"]
    pool = wait_for(lambda: _pool_with_one_ready(api, "from-build"), timeout=90,
                    what="the pool of the built image has its server")
    assert pool["size"] == 1
    assert api.delete("/api/stagings/from-build?force=true",
                      headers=OPERATOR).status_code == 204
    wait_for(lambda: not runtime.server_containers(), timeout=60,
             what="the pooled server is stopped")


def _pool_with_one_ready(api, name):
    pool = api.get(f"/api/pools/{name}", headers=OPERATOR).get_json()
    return pool if pool.get("ready") == 1 else None


def wheel(name: str, version: str, module_text: str) -> bytes:
    """A pure-Python wheel of one module, made here: pip installs it with no network."""
    files = {f"{name}.py": module_text.encode(),
             f"{name}-{version}.dist-info/METADATA":
                 f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL":
                 b"Wheel-Version: 1.0\nGenerator: binderq-tests\nRoot-Is-Purelib: true\n"
                 b"Tag: py3-none-any\n"}
    record = "".join(f"{path},sha256={_digest(data)},{len(data)}\n"
                     for path, data in files.items())
    files[f"{name}-{version}.dist-info/RECORD"] = \
        (record + f"{name}-{version}.dist-info/RECORD,,\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return buffer.getvalue()


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def test_requirements_txt_is_installed_with_pip_in_the_generated_image(api, tmp_path,
                                                                       runtime):
    url = make_repo(tmp_path, "requirements", {
        "binder/requirements.txt": "./wheels/greeting-1.0-py3-none-any.whl\n",
        "wheels/greeting-1.0-py3-none-any.whl": wheel("greeting", "1.0", "WORD = 'hello'\n"),
    })
    answer = api.post("/api/builds", json={"repo": url}, headers=OPERATOR)
    build = finished(api, answer.get_json()["id"])
    assert build["status"] == "succeeded", build
    output = runtime.client.containers.run(
        build["image"], ["python3", "-c", "import greeting; print(greeting.WORD)"], remove=True)
    assert output.decode().strip() == "hello"


def _ready(api, name):
    staging = api.get(f"/api/stagings/{name}", headers=OPERATOR).get_json()
    return staging if staging.get("status") == "ready" else None


@pytest.mark.parametrize("body", [
    {"repo": "--upload-pack=touch {sentinel}"},
    {"repo": "ext::sh -c touch% {sentinel}"},
    {"repo": "ssh://-oProxyCommand=touch%20{sentinel}/x"},
    {"repo": "https://169.254.169.254/latest"},
    {"repo": "https://100.100.100.200/latest"},
    {"repo": "https://reader:hunter2@example.org/x"},
    {"repo": "https://example.org/x", "ref": "--upload-pack=touch {sentinel}"},
    {"repo": "https://example.org/x", "ref": "-bx"},
    {"repo": "https://example.org/x", "ref": ".."},
    {"repo": "https://example.org/" + "x" * 3000},
])
def test_hostile_input_is_422_before_any_git_process(api, tmp_path, body):
    sentinel = tmp_path / "pwned"
    body = {key: value.format(sentinel=sentinel) for key, value in body.items()}
    response = api.post("/api/builds", json=body, headers=OPERATOR)
    assert response.status_code == 422, response.get_json()
    assert response.get_json()["errors"][0]["resource"] == "Build"
    assert not sentinel.exists()


def test_an_unknown_ref_is_422_saying_so(api, tmp_path):
    url = make_repo(tmp_path, "refs", {"Dockerfile": DOCKERFILE})
    response = api.post("/api/builds", json={"repo": url, "ref": "nope"}, headers=OPERATOR)
    assert response.status_code == 422
    assert "no branch or tag 'nope'" in response.get_json()["message"]


def test_the_live_log_streams_phases_and_lines_and_ends_with_done(api, tmp_path):
    url = make_repo(tmp_path, "live", {"Dockerfile": DOCKERFILE + "RUN sleep 1\n"})
    build_id = api.post("/api/builds", json={"repo": url}, headers=OPERATOR).get_json()["id"]
    stream = api.get(f"/api/builds/{build_id}/logs",
                     headers={**OPERATOR, "Accept": "text/event-stream"})
    assert stream.mimetype == "text/event-stream"
    events = [block for block in stream.get_data(as_text=True).split("\n\n") if block]
    kinds = [block.split("\n")[0] for block in events]
    assert "event: phase" in kinds and "event: log" in kinds
    assert kinds[-1] == "event: done"
    done = json.loads(events[-1].split("data: ", 1)[1])
    assert done["status"] == "succeeded" and done["id"] == build_id


def test_following_a_stream_does_not_hold_up_other_requests(api, api_url, tmp_path):
    # A step silent for longer than the API's Redis socket timeout (5 s): the stream must
    # outlast it with keepalives and end with `done`, not as if Redis were down.
    url = make_repo(tmp_path, "slow", {"Dockerfile": DOCKERFILE + "RUN sleep 7\n"})
    build_id = api.post("/api/builds", json={"repo": url}, headers=OPERATOR).get_json()["id"]
    streamed = {}
    follow = threading.Thread(target=lambda: streamed.update(text=requests.get(
        f"{api_url}/api/builds/{build_id}/logs", timeout=60, stream=True,
        headers={**OPERATOR, "Accept": "text/event-stream"}).text))
    follow.start()
    time.sleep(1)
    started = time.monotonic()
    assert requests.get(f"{api_url}/api/openapi.json", timeout=10).status_code == 200
    assert time.monotonic() - started < 1
    follow.join(timeout=60)
    assert finished(api, build_id)["status"] == "succeeded"
    last = [block for block in streamed["text"].split("\n\n") if block][-1]
    assert last.startswith("event: done"), streamed["text"][-500:]
    assert json.loads(last.split("data: ", 1)[1])["status"] == "succeeded"


def test_a_running_build_can_be_cancelled(api, tmp_path, runtime, no_build_containers):
    ticking = "RUN for i in $(seq 1 60); do echo tick $i; sleep 0.5; done\n"
    url = make_repo(tmp_path, "cancel", {"Dockerfile": DOCKERFILE + ticking})
    build_id = api.post("/api/builds", json={"repo": url}, headers=OPERATOR).get_json()["id"]
    wait_for(lambda: "tick 2" in api.get(f"/api/builds/{build_id}/logs", headers=OPERATOR)
             .get_data(as_text=True), timeout=60, what="the build runs")
    answer = api.delete(f"/api/builds/{build_id}", headers=OPERATOR)
    assert answer.status_code == 202 and answer.get_json()["status"] == "cancelled"
    wait_for(no_build_containers, timeout=30, what="the build stops")
    log = api.get(f"/api/builds/{build_id}/logs", headers=OPERATOR).get_data(as_text=True)
    assert "tick 60" not in log
    assert api.get(f"/api/builds/{build_id}", headers=OPERATOR).get_json()["status"] == \
        "cancelled"


def test_cancelling_a_silent_step_stops_it_at_once_and_leaves_nothing(
        api, tmp_path, runtime, no_build_containers):
    url = make_repo(tmp_path, "silent", {"Dockerfile": DOCKERFILE + "RUN sleep 600\n"})
    build_id = api.post("/api/builds", json={"repo": url}, headers=OPERATOR).get_json()["id"]
    wait_for(lambda: "RUN sleep 600" in api.get(f"/api/builds/{build_id}/logs",
                                                headers=OPERATOR).get_data(as_text=True),
             timeout=60, what="the silent step runs")
    half_images_before = set(_dangling(runtime))
    cancelled_at = time.monotonic()
    assert api.delete(f"/api/builds/{build_id}", headers=OPERATOR).status_code == 202
    wait_for(no_build_containers, timeout=15, what="the silent step stops")
    stopped_after = time.monotonic() - cancelled_at
    print(f"\nsilent step stopped {stopped_after:.1f} s after the cancel")
    assert stopped_after < 10  # the time limit (20 s here) would be later
    assert api.get(f"/api/builds/{build_id}", headers=OPERATOR).get_json()["status"] == \
        "cancelled"
    wait_for(lambda: set(_dangling(runtime)) <= half_images_before, timeout=30,
             what="the cancelled build's half-images are removed")
    # The builds worker is free again: the next build runs now, not after the time limit.
    after = finished(api, api.post("/api/builds", json={"repo": make_repo(
        tmp_path, "next", {"Dockerfile": DOCKERFILE + "RUN echo next\n"})},
        headers=OPERATOR).get_json()["id"], timeout=60)
    assert after["status"] == "succeeded", after


def test_a_postbuild_that_never_ends_fails_on_the_time_limit_and_leaves_nothing(
        api, tmp_path, runtime, no_build_containers):
    url = make_repo(tmp_path, "forever", {"postBuild": "#!/bin/sh\nsleep 600\n"})
    half_images_before = set(_dangling(runtime))
    started = time.monotonic()
    build = finished(api, api.post("/api/builds", json={"repo": url},
                                   headers=OPERATOR).get_json()["id"], timeout=120)
    assert build["status"] == "failed"
    assert "time limit of 20 s" in build["error"]
    assert time.monotonic() - started < 60
    wait_for(no_build_containers, timeout=30, what="the build is gone")
    assert runtime.client.images.list(name=build["image"]) == []
    assert set(_dangling(runtime)) <= half_images_before, "a half-image stayed"


def _dangling(runtime) -> list[str]:
    return [image.id for image in runtime.client.images.list(filters={"dangling": True})]


def _build_containers(runtime) -> set[str]:
    """Containers of builds (they have no labels: they run a Dockerfile step)."""
    # The plain list: inspecting each container races with the engine removing a step's.
    return {entry["Id"] for entry in runtime.client.api.containers(all=True)
            if not (entry.get("Labels") or {}).get("binderq.instance")}


@pytest.fixture
def no_build_containers(runtime):
    """Whether no build container is left but those there before the test (another
    project's, or one a killed run left): this test's builds must leave none."""
    before = _build_containers(runtime)
    return lambda: not _build_containers(runtime) - before


def test_the_binderhub_door_builds_stages_and_launches_a_reachable_server(
        api, tmp_path, clean_runtime, proxy):
    url = make_repo(tmp_path, "door", {"Dockerfile": DOCKERFILE + "CMD []\n"})
    stream = api.get(f"/build/git/{quote(url, safe='')}/main", headers=OPERATOR)
    assert stream.mimetype == "text/event-stream"
    events = [json.loads(line[len("data: "):]) for line in
              stream.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    phases = [event["phase"] for event in events]
    assert phases[-1] == "ready", events[-3:]
    in_order = [phase for index, phase in enumerate(phases) if phases.index(phase) == index]
    assert in_order == ["waiting", "fetching", "building", "built", "launching", "ready"]
    ready = events[-1]
    assert ready["image"].startswith("binderq-build/") and ready["token"]
    status = requests.get(f"{ready['url']}api/status", params={"token": ready["token"]},
                          timeout=10)
    assert status.status_code == 200

    again = [json.loads(line[len("data: "):]) for line in api.get(
        f"/build/git/{quote(url, safe='')}/main", headers=OPERATOR).get_data(
            as_text=True).splitlines()
        if line.startswith("data: ")]
    assert again[0]["phase"] == "built" and again[-1]["phase"] == "ready"  # from the cache


ROOT_ONLY_DOCKERFILE = ("FROM binderq/notebook:bookworm\nUSER root\nRUN userdel -r jovyan\n"
                        "ENV HOME=/root\nWORKDIR /root\n")


def test_an_anonymous_reader_gets_a_kernel_from_a_repository_that_leaves_no_user(
        build_settings, store, build_worker, launch_worker, tmp_path, clean_runtime, proxy):
    """As on mybinder: the open door builds a Dockerfile whose image runs as root (no
    non-root user at all), launches it as uid 1000, and a Thebe-style page gets a kernel."""
    door = create_wsgi_app(build_settings.with_changes(launch_auth="open")).test_client()
    url = make_repo(tmp_path, "rootonly", {"Dockerfile": ROOT_ONLY_DOCKERFILE})
    stream = door.get(f"/build/git/{quote(url, safe='')}/main").get_data(as_text=True)
    events = [json.loads(line[len("data: "):]) for line in stream.splitlines()
              if line.startswith("data: ")]
    ready = events[-1]
    assert ready["phase"] == "ready", events[-3:]
    auth = {"Authorization": f"token {ready['token']}"}
    kernel = requests.post(f"{ready['url']}api/kernels", headers=auth, timeout=10)
    assert kernel.status_code == 201, kernel.text
    printed = run_code(ready["url"], ready["token"], kernel.json()["id"],
                       "import os; print(os.getuid(), os.environ['HOME'])")
    assert printed.split() == ["1000", "/home/binderq"]  # never root, a HOME of its own
    [build] = [build for build in store.builds.recent(50) if build.repo == url]
    assert build.requested_by == "addr:127.0.0.1"  # built for an anonymous reader


@pytest.mark.parametrize("path, status", [
    ("/build/svn/org/repo/main", 422), ("/build/gh/only-one-part", 422),
    ("/build/git/--upload-pack%3Dtouch%20x/main", 422),
    ("/build/git/https%3A%2F%2Fexample.org%2Fx/main", 401),
])
def test_the_binderhub_door_refuses_bad_specs(api, path, status):
    headers = {} if status == 401 else OPERATOR  # token launch auth: a token is needed
    response = api.get(path, headers=headers)
    assert response.status_code == status and response.get_json()["message"]


def test_health_answers_as_binderhub_does(api):
    body = api.get("/health").get_json()
    assert body["ok"] is True
    assert {check["service"] for check in body["checks"]} == {"redis", "docker", "proxy",
                                                              "workers"}


def test_add_from_a_url_is_refused_and_the_engine_never_fetches_it(api, tmp_path):
    # The engine fetches ADD's URLs itself, from this machine: here, a service on loopback.
    asked = []

    class Secret(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            asked.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"secret")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Secret)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        url = make_repo(tmp_path, "add-url", {"Dockerfile": DOCKERFILE + (
            f"ADD --chown=1000:1000 \\\n  http://127.0.0.1:{port}/latest/meta-data /x\n")})
        build = finished(api, api.post("/api/builds", json={"repo": url},
                                       headers=OPERATOR).get_json()["id"])
    finally:
        server.shutdown()
        server.server_close()
    assert build["status"] == "failed"
    assert build["error"].startswith("checking the build rules failed: Dockerfile: line 3: "
                                     f"ADD http://127.0.0.1:{port}/latest/meta-data would be "
                                     "fetched by the Docker engine"), build["error"]
    assert asked == []


def _pool_children(worker) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def test_a_build_whose_worker_is_killed_is_run_again_and_given_up_after_three(
        api, tmp_path, store, build_worker, no_build_containers):
    url = make_repo(tmp_path, "killed", {"Dockerfile": DOCKERFILE + "RUN sleep 60\n"})
    build_id = api.post("/api/builds", json={"repo": url}, headers=OPERATOR).get_json()["id"]
    for attempt in (1, 2, 3):
        wait_for(lambda a=attempt: (store.builds.get(build_id).attempts == a and
                                    store.builds.get(build_id).status.value == "building"),
                 timeout=90, what=f"run {attempt} of the build is building")
        time.sleep(1)  # into its RUN step
        (child,) = _pool_children(build_worker)
        os.kill(child, signal.SIGKILL)  # as the OOM killer would
    build = finished(api, build_id, timeout=90)
    assert build["status"] == "failed"
    assert build["error"].startswith("gave up after 3 attempts: each ended without a result")
    log = api.get(f"/api/builds/{build_id}/logs", headers=OPERATOR).get_data(as_text=True)
    assert "(attempt 3: the last one ended without a result)" in log
    wait_for(no_build_containers, timeout=60, what="the killed builds' steps are gone")
    # The worker lives on, with a new pool process, and builds the next build.
    after = finished(api, api.post("/api/builds", json={"repo": make_repo(
        tmp_path, "after-kill", {"Dockerfile": DOCKERFILE + "RUN echo alive\n"})},
        headers=OPERATOR).get_json()["id"], timeout=90)
    assert after["status"] == "succeeded", after
