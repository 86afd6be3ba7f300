"""The pages in a real browser (Debian's chromium, driven by Playwright) against the real
stack: gunicorn, Redis, Celery launch and build workers, dockerd and configurable-http-proxy.
From the launch form to a running notebook, a badge link that resumes and starts fresh, a
staging's link that waits in the launch queue behind a full staging, the operator's
dashboard, and /api/docs with nothing fetched from another host. Each test takes
screenshots of its pages: into docs/screenshots/ with BINDERQ_SCREENSHOTS=1 (how the README's
are made), else into the test's logs, so that a test run leaves the work tree as it was."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from tests.integration.conftest import (
    celery_worker,
    gunicorn_api,
    make_repo,
    remove_built_images,
    stage,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
NOTEBOOK = '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}\n'
SERVER_IN_URL = re.compile(r"/user/([0-9a-f]+)/")


@pytest.fixture(scope="module")
def page_settings(settings):
    """Open launch auth, as `binderq up` runs, and local repositories for the builds."""
    return settings.with_changes(launch_auth="open", allow_local_repos=True,
                                 build_memory="512m", build_timeout=60)


@pytest.fixture(scope="module")
def build_worker(page_settings, logs_dir, runtime):
    with celery_worker(page_settings, "builds", logs_dir / "pages-build.log",
                       name="pages-build@%h", concurrency=1) as process:
        yield process
    remove_built_images(runtime, page_settings.instance)


@pytest.fixture(scope="module")
def pages_url(page_settings, logs_dir):
    """The service under gunicorn, as production runs it, with open launch auth."""
    with gunicorn_api(page_settings, logs_dir / "pages-gunicorn.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    yield context.new_page()
    context.close()


@pytest.fixture
def stack(http, pages_url, build_worker, notebook_image):
    """(pages url, API url, an operator's requests session); every server stops after."""
    base, session = http
    return pages_url, base, session


@pytest.fixture(scope="module")
def repo_url(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages-repos")
    # No Dockerfile: binderq generates one on the notebook image that copies the repository.
    return make_repo(root, "pages", {"hello.ipynb": NOTEBOOK})


@pytest.fixture(scope="module")
def shot(logs_dir):
    """shot(page, name) saves a screenshot: into docs/screenshots/ when asked for, else into
    the test logs."""
    where = SHOTS if os.environ.get("BINDERQ_SCREENSHOTS") == "1" else logs_dir / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    return lambda page, name: page.screenshot(path=str(where / f"{name}.png"), full_page=True)


def server_of(page) -> str:
    found = SERVER_IN_URL.search(page.url)
    assert found, page.url
    return found.group(1)


def test_the_launch_form_builds_a_repository_and_ends_in_its_notebook(
        stack, page, repo_url, page_settings, shot):
    pages, _, session = stack
    public_url = page_settings.public_url
    page.goto(pages + "/")
    page.select_option("#provider", "git")
    page.fill("#repository", repo_url)
    page.fill("#ref", "main")
    page.fill("#file", "hello.ipynb")
    page.wait_for_selector("#badge:not([hidden])")
    assert "/v2/git/" in page.input_value("#badge-markdown")
    shot(page, "launch-form")

    held = []  # hold the page's bind request, to see the finished progress
    page.route(re.compile(r".*/v2/git/.*"),
               lambda route: held.append(route) if route.request.method == "POST"
               else route.continue_())
    page.click("#launch-button")
    page.wait_for_selector('#phases li.current[data-phase="ready"]', timeout=240_000)
    phases = page.eval_on_selector_all("#phases li.done",
                                       "items => items.map(item => item.dataset.phase)")
    assert phases == ["waiting", "fetching", "building", "built", "launching"]
    assert page.inner_text("#log").strip()  # the build's own log lines
    shot(page, "launch-progress")
    wait_for(lambda: held, timeout=10, what="the page binds its server")
    held.pop().continue_()

    page.wait_for_url(re.compile(r".*/user/[0-9a-f]+/notebooks/hello\.ipynb"), timeout=60_000)
    assert page.url.startswith(public_url)  # through the proxy
    notebook_renders(page)
    server = session.get(f"{stack[1]}/api/servers/{server_of(page)}").json()
    assert server["status"] == "ready"
    shot(page, "notebook")


def notebook_renders(page) -> None:
    """The classic notebook's page shows its notebook; reloaded once, as a reader would, if
    it has not after 30 s (once in three CI runs it never did: its scripts, loaded through
    the proxy, never reached their page.show(); not reproduced in seven runs since)."""
    try:
        page.wait_for_selector("#notebook", timeout=30_000)
    except PlaywrightTimeout:
        page.reload()
        page.wait_for_selector("#notebook", timeout=60_000)


def test_a_badge_link_launches_resumes_and_starts_fresh(stack, page, repo_url, shot):
    pages, api, session = stack
    link = f"{pages}/v2/git/{quote(repo_url, safe='')}/main?urlpath=tree"
    page.goto(link)
    page.wait_for_url(re.compile(r".*/user/[0-9a-f]+/tree"), timeout=240_000)
    first = server_of(page)

    page.goto(link)  # the same browser, the same link: its server, not another
    page.wait_for_selector("#resume")
    assert page.inner_text("#resume-server") == first
    assert re.search(r"\d+ s$", page.inner_text("#cull-countdown"))
    shot(page, "resume")
    page.click("#resume-open")
    page.wait_for_url(re.compile(rf".*/user/{first}/tree"))

    page.goto(link)
    page.click("#start-fresh")
    page.wait_for_url(re.compile(r".*/user/[0-9a-f]+/tree"), timeout=120_000)
    second = server_of(page)
    assert second != first
    assert session.get(f"{api}/api/servers/{first}").json()["status"] in ("stopping",
                                                                           "stopped")


def test_a_staging_link_launches_from_its_pool_and_queues_behind_a_full_staging(
        stack, browser, page, shot):
    pages, api, session = stack
    stage(api, session, "pagesdemo", public=True, max_servers=1,
          description="A demo notebook")
    session.put(f"{api}/api/pools/pagesdemo", json={"size": 1}).raise_for_status()
    wait_for(lambda: session.get(f"{api}/api/pools/pagesdemo").json()["ready"] == 1,
             timeout=120, what="the pool has a ready server")

    page.goto(pages + "/")
    page.click('a[data-staging="pagesdemo"]')
    page.wait_for_url(re.compile(r".*/user/[0-9a-f]+/"), timeout=60_000)
    first = server_of(page)
    assert session.get(f"{api}/api/servers/{first}").json()["pooled"] is True

    other = browser.new_context().new_page()  # another reader: the staging is full
    other.goto(f"{pages}/launch/pagesdemo")
    other.wait_for_function("document.getElementById('status').textContent"
                            ".includes('number 1 in line')", timeout=30_000)
    queued = session.get(f"{api}/api/servers?staging=pagesdemo&status=queued").json()
    assert len(queued) == 1  # it waits in the launch queue, polling keeps it there
    shot(other, "launch-waiting")
    session.delete(f"{api}/api/servers/{first}").raise_for_status()
    other.wait_for_url(re.compile(r".*/user/[0-9a-f]+/"), timeout=120_000)
    assert server_of(other) != first
    other.context.close()


def test_the_dashboard_logs_in_resizes_a_pool_and_stops_a_server(stack, page, shot):
    pages, api, session = stack
    stage(api, session, "dashdemo", public=True)
    launched = session.post(f"{api}/api/stagings/dashdemo/servers").json()

    page.goto(pages + "/admin/")
    page.fill("#token", "integration-operator")
    page.click("#login-button")
    assert "token" not in urlsplit(page.url).query
    row = page.wait_for_selector(f'tr[data-server="{launched["id"]}"]')
    assert "dashdemo" in row.inner_text()

    page.fill('tr[data-staging="dashdemo"] input[name="size"]', "1")
    page.click('tr[data-staging="dashdemo"] button')
    page.wait_for_url(pages + "/admin/")
    assert session.get(f"{api}/api/pools/dashdemo").json()["size"] == 1
    wait_for(lambda: session.get(f"{api}/api/servers/{launched['id']}").json()["status"]
             == "ready", timeout=60, what="the launched server is ready")
    page.reload()
    page.wait_for_function("document.querySelector('.cull[data-cull-at]:not([data-cull-at=\"\"])')"
                           " && /\\d+ s/.test(document.querySelector("
                           "'.cull[data-cull-at]:not([data-cull-at=\"\"])').textContent)")
    shot(page, "admin")

    page.click(f'tr[data-server="{launched["id"]}"] button')
    page.wait_for_url(pages + "/admin/")
    assert session.get(f"{api}/api/servers/{launched['id']}").json()["status"] in (
        "stopping", "stopped")


def test_the_api_docs_render_every_operation_with_nothing_from_another_host(stack, page, shot):
    pages = stack[0]
    elsewhere = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            elsewhere.append(route.request.url)
            return route.abort()
        return route.continue_()

    page.route("**/*", only_loopback)
    page.goto(pages + "/api/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    operations = page.locator(".opblock").count()
    paths = requests.get(f"{pages}/api/openapi.json", timeout=5).json()["paths"]
    methods = {"get", "put", "post", "delete", "patch"}
    assert operations == sum(len(methods & set(item)) for item in paths.values()) > 20
    assert not elsewhere
    shot(page, "api-docs")
