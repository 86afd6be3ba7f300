"""Pure domain rules: memory sizes, commands, server specs and paths, records, tokens."""

from __future__ import annotations

import pytest

from binderq.domain.models import (
    DataVolume,
    ExtraService,
    Resources,
    Server,
    ServerStatus,
    Staging,
    server_from_dict,
    staging_from_dict,
    to_dict,
)
from binderq.domain.spec import (
    LABEL_ROLE,
    LABEL_SERVER,
    LABEL_STAGING_VERSION,
    memory_bytes,
    render_command,
    server_of_route,
    server_path,
    server_spec,
)
from binderq.domain.tokens import is_server_token, server_token


@pytest.mark.parametrize("text, expected", [
    ("512m", 512 * 1024**2), ("1g", 1024**3), ("1.5G", int(1.5 * 1024**3)), ("64k", 65536),
    ("1000", 1000),
])
def test_memory_sizes_are_read_as_docker_reads_them(text, expected):
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("text", ["lots", "", "12 m", "-1m", "1t"])
def test_memory_sizes_that_are_not_sizes_are_refused(text):
    with pytest.raises(ValueError):
        memory_bytes(text)


def test_command_placeholders_are_filled_and_other_braces_kept():
    command = ["run", "--url={base_url}", "--port={port}", "--t={token}", '{"json": 1}']
    assert render_command(command, base_url="/user/a/", port=8888, token="tok") == [
        "run", "--url=/user/a/", "--port=8888", "--t=tok", '{"json": 1}']


@pytest.mark.parametrize("path, server_id", [
    (server_path("abc123"), "abc123"),
    ("/user/abc123", "abc123"),  # as configurable-http-proxy lists it
    ("/api", None),
    ("/", None),
])
def test_a_route_path_names_the_server_whose_path_it_is(path, server_id):
    assert server_path("abc123") == "/user/abc123/"
    assert server_of_route(path) == server_id


def _staging(**changes) -> Staging:
    """A staged staging: its image ids recorded (the sidecar db's among them)."""
    return Staging(name="demo", image="img:1", version=3, image_id="sha256:img1",
                   service_image_ids={"db": "sha256:pg1"}, **changes)


def test_server_spec_names_labels_and_limits_come_from_the_server_and_staging():
    staging = _staging(resources=Resources(memory="256m", cpus=0.5, pids=64))
    spec = server_spec(staging, "abc123", "tok", instance="bq")
    notebook = spec.notebook
    assert notebook.name == "bq-abc123" and spec.network == "bq-abc123"
    assert notebook.labels[LABEL_SERVER] == "abc123"
    assert notebook.labels[LABEL_STAGING_VERSION] == "3"
    assert notebook.labels[LABEL_ROLE] == "notebook"
    assert (notebook.mem_limit, notebook.nano_cpus, notebook.pids_limit) == (
        256 * 1024**2, 500_000_000, 64)
    assert "--NotebookApp.base_url=/user/abc123/" in notebook.command
    assert "--NotebookApp.token=tok" in notebook.command
    assert notebook.port == 8888


def test_cors_origin_reaches_the_default_notebook_command_only():
    default = server_spec(_staging(), "s1", "t", instance="bq", allow_origin="https://a.org")
    custom = server_spec(_staging(command=["start", "{port}"]), "s1", "t", instance="bq",
                         allow_origin="https://a.org")
    assert "--NotebookApp.allow_origin=https://a.org" in default.notebook.command
    assert custom.notebook.command == ["start", "8888"]


def test_services_join_the_server_network_under_their_name_and_volumes_mount():
    staging = _staging(services=[ExtraService(name="db", image="pg:1", env={"A": "1"})],
                       data=[DataVolume(volume="corpus", target="/data")])
    spec = server_spec(staging, "s1", "t", instance="bq")
    (db,) = spec.services
    assert db.name == "bq-s1-db" and db.aliases == ("db",) and db.port is None
    assert db.labels[LABEL_ROLE] == "service"
    assert spec.notebook.volumes == {"corpus": {"bind": "/data", "mode": "ro"}}
    assert spec.containers[-1] is spec.notebook


def test_records_survive_a_round_trip_through_dicts():
    staging = _staging(services=[ExtraService(name="db", image="pg:1")],
                       data=[DataVolume(volume="v", target="/d", read_only=False)])
    assert staging_from_dict(to_dict(staging)) == staging
    server = Server(id="s1", staging="demo", staging_version=1, status=ServerStatus.READY)
    assert server_from_dict(to_dict(server)) == server


def test_server_tokens_are_derived_per_server_and_secret():
    token = server_token("secret", "s1")
    assert token == server_token("secret", "s1")
    assert token not in (server_token("secret", "s2"), server_token("other", "s1"))
    assert is_server_token("secret", "s1", token)
    assert not is_server_token("secret", "s2", token)


@pytest.mark.parametrize("repo", [
    "file:///tmp/pytest-of-root/pytest-42/test_dbg0/live",
    "https://github.com/Org/Repo.git", "https://x.org/---/", "https://x.org/",
])
def test_build_image_names_are_valid_docker_references(repo):
    import re

    from binderq.domain.builds import BuildSpec, image_name

    name = image_name(repo, "a" * 40, BuildSpec("FROM x\n", "", (), True))
    repository, tag = name.split(":")
    component = r"[a-z0-9]+(?:[._-][a-z0-9]+)*"
    assert re.fullmatch(rf"{component}(?:/{component})*", repository), name
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", tag), name


def test_client_key_is_the_hashed_token_or_the_address():
    from binderq.domain.access import Caller, is_anonymous_client
    with_token = Caller(token="secret-token", scopes=frozenset({"launch"}), address="10.0.0.1")
    anonymous = Caller(address="10.0.0.1")
    assert "secret-token" not in with_token.client
    assert with_token.client == Caller(token="secret-token", address="10.9.9.9").client
    assert anonymous.client == "addr:10.0.0.1"
    assert is_anonymous_client(anonymous.client) and not is_anonymous_client(with_token.client)
    assert Caller(token="x", is_operator=True).client == "operator"


def test_an_ipv6_client_is_its_64_so_rotating_addresses_makes_no_new_client():
    from binderq.domain.access import client_key
    assert client_key("", "2001:db8:1:2::5") == client_key("", "2001:db8:1:2:ffff::9")
    assert client_key("", "2001:db8:1:2::5") != client_key("", "2001:db8:1:3::5")
    assert client_key("", "::ffff:203.0.113.9") == client_key("", "203.0.113.9")
