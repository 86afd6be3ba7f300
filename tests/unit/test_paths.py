"""Names and ids in paths are checked at the edge, with one pattern that the OpenAPI
document declares too; bodies over the limit are refused before any view runs."""

from __future__ import annotations

import re

import pytest

from binderq.api.paths import PATH_PARTS
from tests.fakes import FakeGit
from tests.helpers import IMAGE, assert_error_format
from tests.unit.conftest import OPERATOR


@pytest.fixture
def builds_client(settings, store, queue, proxy):
    from binderq.api import create_app

    return create_app(settings, store=store, queue=queue, proxy=proxy,
                      git=FakeGit()).test_client()


def test_a_build_id_with_a_key_suffix_is_404_not_a_read_of_its_log(builds_client):
    built = builds_client.post("/api/builds", json={"repo": "https://github.com/org/repo"},
                               headers=OPERATOR).get_json()
    for suffix in (":log", ":readers"):
        for method in ("get", "delete"):
            response = getattr(builds_client, method)(f"/api/builds/{built['id']}{suffix}",
                                                      headers=OPERATOR)
            body = assert_error_format(response, 404)
            assert body["errors"][0] == {"resource": "Build", "code": "missing"}
    assert builds_client.get(f"/api/builds/{built['id']}",
                             headers=OPERATOR).get_json()["status"] == "queued"


@pytest.mark.parametrize("method, url", [
    ("get", "/api/servers/S1"), ("get", "/api/tasks/a:b"), ("delete", "/api/tokens/*"),
    ("get", "/api/builds/0123abc:x/logs"), ("delete", "/api/servers/%2A")])
def test_ids_that_are_not_ids_are_404(client, method, url):
    assert_error_format(getattr(client, method)(url, headers=OPERATOR), 404)


def test_each_path_parameter_declares_the_pattern_it_is_checked_with(client):
    spec = client.get("/api/openapi.json").get_json()
    patterns = {part.pattern.pattern for part in PATH_PARTS}
    declared = {parameter["schema"]["pattern"] for item in spec["paths"].values()
                for parameter in item.get("parameters", []) if "pattern" in
                parameter.get("schema", {})}
    assert declared == patterns
    assert re.search(r"\{name\}", str(list(spec["paths"])))


def test_the_document_has_no_catch_all_and_api_mds_error_schema(client):
    spec = client.get("/api/openapi.json").get_json()
    error = spec["components"]["schemas"]["Error"]
    assert error["required"] == ["message"] and error["properties"]["errors"]["type"] == "array"
    for item in spec["paths"].values():
        for method, operation in item.items():
            if method != "parameters":
                assert "default" not in operation["responses"]
    staging_in = spec["components"]["schemas"]["StagingIn"]
    assert staging_in["oneOf"] == [{"required": ["image"]}, {"required": ["build"]}]
    launch = spec["paths"]["/api/stagings/{name}/servers"]["post"]
    assert launch["security"] == [{}, {"token": []}]
    assert {"401", "403", "404", "409", "429", "503"} <= set(launch["responses"])


def test_a_body_over_the_limit_is_413_before_the_view_runs(client, queue):
    response = client.post("/api/stagings/demo/servers", data=b"x" * (2 * 1024 * 1024),
                           headers={**OPERATOR, "Content-Type": "application/json"})
    assert_error_format(response, 413)
    response = client.put("/api/stagings/demo", data=b"x" * (2 * 1024 * 1024),
                          headers={**OPERATOR, "Content-Type": "application/json"})
    assert_error_format(response, 413)
    assert queue.sent == []
    assert client.put("/api/stagings/demo", json={"image": IMAGE},
                      headers=OPERATOR).status_code == 202
