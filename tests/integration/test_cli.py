"""The command line's API verbs against the real service: gunicorn, Redis, a build worker, a
launch worker, the proxy and the Docker engine. Each verb is run as `binderq` runs it (the
Click command, with BINDERQ_URL and BINDERQ_TOKEN in its environment)."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from binderq.cli import binderq
from binderq.client import (
    EXIT_DENIED,
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
)
from binderq.processes import free_port
from tests.integration.conftest import (
    NOTEBOOK_IMAGE,
    OPERATOR,
    OPERATOR_TOKEN,
    SMALL,
    celery_worker,
    gunicorn_api,
    make_repo,
    remove_built_images,
    wait_for,
)


@pytest.fixture(scope="module")
def cli_settings(settings):
    return settings.with_changes(allow_local_repos=True, build_memory="512m",
                                 build_timeout=60)


@pytest.fixture(scope="module")
def service(cli_settings, logs_dir, runtime, launch_worker):
    """The API (allowed to build local repositories) and a build worker; built images go."""
    with celery_worker(cli_settings, "builds", logs_dir / "cli-build-worker.log",
                       name="cli-build@%h", concurrency=1), \
            gunicorn_api(cli_settings, logs_dir / "cli-gunicorn.log") as url:
        yield url
    remove_built_images(runtime, cli_settings.instance)


@pytest.fixture
def run(service, store, proxy, clean_runtime):
    """Run `binderq ARGS` (as the operator unless token says otherwise); afterwards no
    staging or server of the test is left."""
    runner = CliRunner()

    def binderq_command(*args: str, token: str = OPERATOR_TOKEN, url: str = service):
        return runner.invoke(binderq, list(args), catch_exceptions=False,
                             env={"BINDERQ_URL": url, "BINDERQ_TOKEN": token})

    yield binderq_command
    for staging in requests.get(f"{service}/api/stagings", headers=OPERATOR).json():
        requests.delete(f"{service}/api/stagings/{staging['name']}?force=true",
                        headers=OPERATOR)
    wait_for(lambda: not store.servers.active(), timeout=90, what="every server stops")


def test_a_script_builds_stages_launches_and_stops_a_server(run, tmp_path):
    repo = make_repo(tmp_path, "cli", {"Dockerfile": f"FROM {NOTEBOOK_IMAGE}\n"
                                                     "RUN echo built-by-the-cli\n"})
    built = run("build", repo, "--stage", "cli-demo", "--public")
    assert built.exit_code == 0, built.output + built.stderr
    assert built.stdout.startswith("build ") and " succeeded: " in built.stdout
    assert "built-by-the-cli" in built.stderr  # the log streamed while it ran
    assert "staging cli-demo: ready" in built.stderr

    launched = run("launch", "cli-demo")
    assert launched.exit_code == 0, launched.output + launched.stderr
    base, token = launched.stdout.strip().split("?token=")
    assert requests.get(f"{base}api/status", params={"token": token},
                        timeout=10).status_code == 200

    (server,) = [s for s in json.loads(run("servers", "--json").stdout)
                 if s["staging"] == "cli-demo"]
    assert (server["url"], server["status"]) == (base, "ready")
    stopped = run("stop", server["id"])
    assert stopped.exit_code == 0
    assert stopped.stdout.strip() == f"server {server['id']} stopped"
    assert requests.get(f"{base}api/status", params={"token": token},
                        timeout=10).status_code != 200

    build_id = json.loads(run("build", repo, "--json").stdout)["id"]  # cached: same commit
    log = run("logs", build_id)
    assert log.exit_code == 0 and "built-by-the-cli" in log.stdout


def test_a_failing_build_exits_with_its_own_code_and_its_log(run, tmp_path):
    repo = make_repo(tmp_path, "broken", {"Dockerfile": f"FROM {NOTEBOOK_IMAGE}\n"
                                                        "RUN echo about-to-fail && false\n"})
    failed = run("build", repo)
    assert failed.exit_code == EXIT_FAILED
    assert "about-to-fail" in failed.stderr
    assert failed.stdout.startswith("build ") and " failed" in failed.stdout


def test_stage_pool_and_launch_from_the_pool(run, tmp_path):
    spec = tmp_path / "staging.json"
    spec.write_text(json.dumps({"resources": SMALL}))
    staged = run("stage", "cli-pool", "--image", NOTEBOOK_IMAGE, "--public", "--file",
                 str(spec))
    assert staged.exit_code == 0, staged.output + staged.stderr
    assert staged.stdout.startswith("staging cli-pool ready")

    sized = json.loads(run("pool", "cli-pool", "1", "--json").stdout)
    assert (sized["staging"], sized["size"]) == ("cli-pool", 1)
    wait_for(lambda: json.loads(run("pool", "cli-pool", "--json").stdout)["ready"] == 1,
             timeout=120, what="the pool fills")
    table = run("pool").stdout
    assert "cli-pool" in table and "ready" in table

    pooled = json.loads(run("launch", "cli-pool", "--json").stdout)
    assert pooled["pooled"] is True and pooled["status"] == "ready" and pooled["token"]


def test_tokens_issue_and_revoke(run):
    assert run("stage", "cli-tokens", "--image", NOTEBOOK_IMAGE, "--private").exit_code == 0
    issued = json.loads(run("tokens", "issue", "--scope", "launch", "--note", "cli",
                            "--json").stdout)
    assert issued["scopes"] == ["launch"] and issued["token"]

    denied = run("servers", token=issued["token"])  # operator only
    assert denied.exit_code == EXIT_DENIED
    assert denied.stderr.startswith("binderq: ") and denied.stderr.count("\n") == 1

    revoked = run("tokens", "revoke", issued["id"])
    assert revoked.exit_code == 0 and issued["id"] in revoked.stdout
    refused = run("launch", "cli-tokens", token=issued["token"])
    assert refused.exit_code == EXIT_DENIED


@pytest.mark.parametrize(("args", "code"), [
    (("launch", "no-such-staging"), EXIT_NOT_FOUND),
    (("stage", "cli-bad", "--image", "Not An Image"), EXIT_REFUSED),
    (("pool", "no-such-staging", "1"), EXIT_NOT_FOUND),
    (("stop", "0123456789ab"), EXIT_NOT_FOUND),
])
def test_errors_are_one_line_with_the_apis_message_and_a_code_that_says_why(run, args, code):
    result = run(*args)
    assert result.exit_code == code, result.output + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("binderq: ") and "Traceback" not in line


def test_no_service_at_the_url_is_its_own_exit_code(run):
    result = run("servers", url=f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == EXIT_UNAVAILABLE
    assert "cannot reach binderq at" in result.stderr
