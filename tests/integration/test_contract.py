"""The contract, against the real API: gunicorn, Redis and configurable-http-proxy.

Schemathesis (4.x, its `run` command, every check) fuzzes the OpenAPI document the service
serves and must find no failure, with the operator's token and with none. Bad input is
never a 5xx: a body over the limit answers 413 through the proxy, an id that is not one is
404 before it reaches a Redis key, and the BinderHub door with no builds worker ends its
stream `failed` by its deadline.

The API here has no worker at all, on a Redis database of its own: a launch stays pending
and a staging `staging`, so fuzzing starts no container and no build; what it made (records
and queued tasks) is removed with that database at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import requests

from binderq.processes import free_port, start_proxy, stop_process
from tests.integration.conftest import OPERATOR, gunicorn_api, make_repo

pytestmark = pytest.mark.integration

CONTRACT_DB = 13  # the session's Redis, another database: queues no session worker reads
MAX_EXAMPLES = 25
SEED = 20261130  # reproducible; a failure prints `st replay` and curl lines
BUILD_QUEUE_TIMEOUT = 3

# Schemathesis' configuration (schemathesis.toml), per operation:
# - the health checks answer 503 when a dependency is down, as documented: here no worker
#   answers the canary, so 503 is their truthful answer, not a server error;
# - POST /api/builds and the BinderHub door resolve a repository's host name and run git
#   against it: generated URLs would send DNS queries and git off this machine, which the
#   tests must not. They are tested by name (tests/unit, test_builds.py and below);
# - PUT /api/stagings/{name} refuses a `build` that names no build with 422 (GitHub's
#   `missing` in a body): which builds exist is not something a schema can say.
SCHEMATHESIS_CONFIG = """
[[operations]]
include-name = ["GET /api/health", "GET /health"]
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "503"]

[[operations]]
include-name = ["POST /api/builds", "GET /build/{provider}/{spec}"]
enabled = false

[[operations]]
include-name = "PUT /api/stagings/{name}"
checks.positive_data_acceptance.expected-statuses = [
    "2xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def contract_settings(settings, redis_url):
    base = redis_url.rsplit("/", 1)[0]
    return settings.with_changes(redis_url=f"{base}/{CONTRACT_DB}", allow_local_repos=True,
                                 build_queue_timeout=BUILD_QUEUE_TIMEOUT)


@pytest.fixture(scope="module")
def contract_redis(contract_settings):
    client = redis.Redis.from_url(contract_settings.redis_url)
    client.flushdb()
    yield client
    client.flushdb()  # every record and queued task the tests made


@pytest.fixture(scope="module")
def contract_api(contract_settings, contract_redis, logs_dir):
    """The API under gunicorn, with no worker, on its own Redis database."""
    with gunicorn_api(contract_settings, logs_dir / "contract-gunicorn.log") as url:
        yield url


@pytest.fixture(scope="module")
def contract_proxy(contract_api, logs_dir):
    """configurable-http-proxy in front of that API, as production runs it."""
    port, api_port = free_port(), free_port()
    process = start_proxy(port, api_port, "contract-proxy-token", default_target=contract_api,
                          log_file=logs_dir / "contract-proxy.log")
    yield f"http://127.0.0.1:{port}"
    stop_process(process)


def run_schemathesis(api_url: str, tmp_path: Path, *headers: str) -> dict[str, int]:
    """Schemathesis' `run` over the served document, every check; the JUnit report's counts
    (AssertionError with its output if it found anything)."""
    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    report = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
               f"{api_url}/api/openapi.json", "--checks", "all",
               "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED),
               "--report", "junit", "--report-junit-path", str(report), "--no-color"]
    for header in headers:
        command += ["--header", header]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = done.stdout[-12000:] + done.stderr[-3000:]
    suite = ElementTree.parse(report).getroot()
    counts = {key: sum(int(case.get(key, 0)) for case in suite.iter("testsuite"))
              for key in ("tests", "failures", "errors")}
    assert done.returncode == 0 and counts["failures"] == counts["errors"] == 0, output
    return counts


def _clean_up(api_url: str, store: redis.Redis) -> None:
    """Through the API: every staging (its servers with it) and every user token."""
    session = requests.Session()
    session.headers.update(OPERATOR)
    for staging in session.get(f"{api_url}/api/stagings", timeout=10).json():
        response = session.delete(f"{api_url}/api/stagings/{staging['name']}?force=true")
        assert response.status_code == 204, response.text
    for key in store.scan_iter("binderq:user-token:*"):
        token_id = key.decode().rsplit(":", 1)[1][:16]
        assert session.delete(f"{api_url}/api/tokens/{token_id}").status_code == 204
    assert session.get(f"{api_url}/api/stagings").json() == []
    assert not list(store.scan_iter("binderq:user-token:*"))


def test_schemathesis_finds_no_failure_with_the_operators_token(contract_api, contract_redis,
                                                                 tmp_path):
    started = time.monotonic()
    operator = f"Authorization: {OPERATOR['Authorization']}"
    counts = run_schemathesis(contract_api, tmp_path, operator)
    assert counts["tests"] >= 20  # every operation but the two left out
    _clean_up(contract_api, contract_redis)
    assert time.monotonic() - started < 120


def test_schemathesis_finds_no_failure_without_a_token(contract_api, contract_redis,
                                                       tmp_path):
    counts = run_schemathesis(contract_api, tmp_path)
    assert counts["tests"] >= 20
    _clean_up(contract_api, contract_redis)


def test_the_document_declares_each_path_pattern_and_security_truthfully(contract_api):
    spec = requests.get(f"{contract_api}/api/openapi.json", timeout=10).json()
    for path, item in spec["paths"].items():
        for parameter in item.get("parameters", []):
            if parameter["in"] == "path" and parameter["name"] not in ("provider", "spec"):
                assert parameter["schema"].get("pattern"), (path, parameter)
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "default" not in operation["responses"], (method, path)
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")) and path not in ("/api/health", "/health"):
                    if "$ref" in response:  # a registered one: UNPROCESSABLE_ENTITY
                        response = spec["components"]["responses"][
                            response["$ref"].rsplit("/", 1)[1]]
                    schema = response["content"]["application/json"]["schema"]
                    assert "Error" in json.dumps(schema), (method, path, status)
    assert spec["paths"]["/api/health"]["get"]["security"] == []
    assert spec["paths"]["/health"]["get"]["security"] == []


@pytest.mark.parametrize("method, path", [("PUT", "/api/stagings/demo"),
                                          ("POST", "/api/stagings/demo/servers")])
def test_a_body_over_the_limit_answers_413_through_the_proxy(contract_proxy, contract_redis,
                                                             method, path):
    body = b"x" * (4 * 1024 * 1024)
    before = set(contract_redis.scan_iter("binderq:*"))
    answers = [requests.request(method, contract_proxy + path, data=body, timeout=30,
                                headers={**OPERATOR, "Content-Type": "application/json"})
               for _ in range(10)]
    assert [response.status_code for response in answers] == [413] * 10
    assert all(response.json()["message"] == "Request body too large" for response in answers)
    assert set(contract_redis.scan_iter("binderq:*")) == before  # refused before any effect
    # The connection is still good for the next request.
    assert requests.get(f"{contract_proxy}/api/stagings", headers=OPERATOR,
                        timeout=10).status_code == 200


def test_ids_in_paths_are_checked_before_they_reach_redis(contract_api, contract_redis,
                                                          tmp_path):
    repo = make_repo(tmp_path, "ids", {"Dockerfile": "FROM binderq/notebook:bookworm\n"})
    build = requests.post(f"{contract_api}/api/builds", json={"repo": repo, "ref": "main"},
                          headers=OPERATOR, timeout=30)
    assert build.status_code == 202, build.text
    build_id = build.json()["id"]
    for path in (f"/api/builds/{build_id}:log", f"/api/builds/{build_id}:readers/logs",
                 "/api/servers/abc:x", f"/api/tokens/{'*' * 16}", "/api/tasks/a:b",
                 "/api/builds/..", "/api/servers/%00"):
        for method in ("GET", "DELETE"):
            response = requests.request(method, contract_api + path, headers=OPERATOR,
                                        timeout=10)
            assert response.status_code in (404, 405), (method, path, response.text)
            assert response.json()["message"], (method, path)
    for path in ("/api/stagings/a:b", "/api/pools/-x", "/api/stagings/%C3%A9/servers"):
        response = requests.request("POST" if path.endswith("servers") else "GET",
                                    contract_api + path, headers=OPERATOR, timeout=10)
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["field"] == "name"
    # The build itself is untouched, and still queued for a worker that comes later.
    found = requests.get(f"{contract_api}/api/builds/{build_id}", headers=OPERATOR, timeout=10)
    assert found.json()["status"] == "queued"


def test_the_binderhub_door_with_no_builds_worker_ends_failed_by_its_deadline(
        contract_api, tmp_path):
    repo = make_repo(tmp_path, "door", {"Dockerfile": "FROM binderq/notebook:bookworm\n"})
    url = f"{contract_api}/build/git/{quote(repo, safe='')}/main"
    started = time.monotonic()
    with requests.get(url, headers=OPERATOR, stream=True, timeout=60) as response:
        assert response.status_code == 200
        events = [json.loads(line[len("data: "):]) for line in
                  response.iter_lines(decode_unicode=True) if line.startswith("data: ")]
    took = time.monotonic() - started
    assert events[-1]["phase"] == "failed", events
    assert "no builds worker started build" in events[-1]["message"]
    # The deadline, plus at most one quiet interval of the log follower (4 s).
    assert BUILD_QUEUE_TIMEOUT <= took < BUILD_QUEUE_TIMEOUT + 10
