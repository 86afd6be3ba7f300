"""Fair shares for real: the API under gunicorn (2 worker processes, as production runs it)
behind a real configurable-http-proxy, with the counts in a real Redis. A concurrent burst of
ten times a limit from one client gets exactly the limit served and 429s with Retry-After and
the limit's name for the rest, while a second client is still served. Clients are two tokens,
or two addresses as the proxy appends them to X-Forwarded-For (BINDERQ_TRUSTED_PROXIES=1),
and a client that forges X-Forwarded-For is still itself.

No notebook starts here: the staging is written ready into Redis and no launch worker runs,
so every launch served stays `pending` (and holds its client's place). Run with -s to see
the figures.
"""

from __future__ import annotations

import secrets
import subprocess
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from requests.adapters import HTTPAdapter

from binderq.cli import WSGI_APP, gunicorn_command
from binderq.domain.errors import QuotaExceeded
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus
from binderq.domain.tokens import hash_token
from binderq.processes import free_port, start_proxy, stop_process, wait_until
from tests.integration.conftest import NOTEBOOK_IMAGE, OPERATOR, make_repo, pinned

pytestmark = pytest.mark.integration

A, B = "127.0.0.2", "127.0.0.3"  # two clients' own addresses (all of 127/8 is loopback)
OFF = {"client_launches_per_minute": 0, "client_builds_per_hour": 0, "client_max_servers": 0,
       "client_max_builds": 0}


class FromAddress(HTTPAdapter):
    """Connect from a given local address, as a client on another machine would."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def _send(method: str, url: str, *, address: str = "127.0.0.1", token: str = "",
          headers: dict[str, str] | None = None, **kwargs) -> requests.Response:
    with requests.Session() as session:
        session.mount("http://", FromAddress(address))
        headers = dict(headers or {})
        if token:
            headers["Authorization"] = f"token {token}"
        return session.request(method, url, headers=headers, timeout=30, **kwargs)


@pytest.fixture
def service(settings, store, logs_dir):
    """start(**settings changes): the API under gunicorn behind its own proxy, as `binderq
    up` runs it (launch auth open, the proxy trusted); the proxy's public URL."""
    started: list[subprocess.Popen] = []

    def start(**changes) -> str:
        changed = settings.with_changes(launch_auth="open", trusted_proxies=1,
                                        allow_local_repos=True, **{**OFF, **changes})
        api_port, port, proxy_api_port = free_port(), free_port(), free_port()
        started.append(subprocess.Popen(
            gunicorn_command(WSGI_APP, f"127.0.0.1:{api_port}"), env=changed.to_env(),
            stdout=open(logs_dir / "shares-gunicorn.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT, start_new_session=True))
        api = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _answers(f"{api}/api/openapi.json") or started[-1].poll() is not None,
                   timeout=30, what="gunicorn")
        assert started[-1].poll() is None, (logs_dir / "shares-gunicorn.log").read_text()[-3000:]
        started.append(start_proxy(port, proxy_api_port, secrets.token_hex(8),
                                   default_target=api, log_file=logs_dir / "shares-proxy.log"))
        return f"http://127.0.0.1:{port}"

    yield start
    for process in reversed(started):
        stop_process(process)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _ready_staging(store, name: str = "shares", **fields) -> str:
    store.stagings.save(pinned(Staging(name=name, image=NOTEBOOK_IMAGE, public=True,
                                       status=StagingStatus.READY,
                                       version=store.stagings.next_version(name), **fields)))
    return name


def _user_tokens(store, *names: str) -> list[str]:
    tokens = [f"{name}-{secrets.token_hex(8)}" for name in names]
    for token in tokens:
        store.tokens.save(hash_token(token), {"scopes": ["launch", "build"]})
    return tokens


def _burst(count: int, send) -> list[requests.Response]:
    """count requests at once (threads), so that both gunicorn workers answer them."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: send(), range(count)))


def _check_refusals(answers, served_status: int, *, limit: int, names: str, what: str) -> None:
    """Exactly limit served; every other answer a 429 in binderq's format, with Retry-After,
    naming the limit. Prints the figures (-s)."""
    statuses = Counter(answer.status_code for answer in answers)
    refused = [answer for answer in answers if answer.status_code == 429]
    waits = sorted(int(answer.headers["Retry-After"]) for answer in refused)
    print(f"\n[shares] {what}: one client sent {len(answers)}, {statuses[served_status]} "
          f"served, {len(refused)} answered 429 (Retry-After {waits[0]}-{waits[-1]} s); "
          f"a refusal: {refused[0].json()}")
    assert statuses == {served_status: limit, 429: len(answers) - limit}, statuses
    for answer in refused:
        body = answer.json()
        assert names in body["message"] and body["errors"][0]["field"], body
        assert int(answer.headers["Retry-After"]) > 0


def _launch(base: str, staging: str = "shares", **kwargs) -> requests.Response:
    return _send("POST", f"{base}/api/stagings/{staging}/servers", **kwargs)


def test_launches_per_minute_per_address_with_a_forged_x_forwarded_for(service, store):
    base = service(client_launches_per_minute=3)
    _ready_staging(store)

    _check_refusals(_burst(30, lambda: _launch(base, address=A)), 202, limit=3,
                    names="BINDERQ_CLIENT_LAUNCHES_PER_MINUTE",
                    what="launches per minute (3), by address")
    forged = _launch(base, address=A, headers={"X-Forwarded-For": B})
    other = [_launch(base, address=B).status_code for _ in range(3)]
    print(f"[shares] client A forging X-Forwarded-For: {B}: {forged.status_code}; "
          f"second client (address {B}): {other}")
    assert forged.status_code == 429  # the proxy appended A's own address: A it is
    assert other == [202, 202, 202]  # B's three were not spent by A's forgery
    assert list(store.redis.scan_iter("binderq:limits:*")), "the counts are in Redis"


def test_launches_per_minute_per_token(service, store):
    base = service(client_launches_per_minute=3)
    _ready_staging(store)
    first, second = _user_tokens(store, "first", "second")

    _check_refusals(_burst(30, lambda: _launch(base, token=first)), 202, limit=3,
                    names="BINDERQ_CLIENT_LAUNCHES_PER_MINUTE",
                    what="launches per minute (3), by token")
    other = _launch(base, token=second)  # from the same address: another client
    operator = [_launch(base, headers=OPERATOR).status_code for _ in range(4)]
    print(f"[shares] second token: {other.status_code}; operator (exempt): {operator}")
    assert other.status_code == 202 and operator == [202] * 4


def test_servers_at_once_per_client_and_a_stopped_one_frees_its_place(service, store):
    base = service(client_max_servers=2)
    _ready_staging(store)
    first, second = _user_tokens(store, "first", "second")

    answers = _burst(20, lambda: _launch(base, token=first))
    _check_refusals(answers, 202, limit=2, names="BINDERQ_CLIENT_MAX_SERVERS",
                    what="servers at once (2), by token")
    assert _launch(base, token=second).status_code == 202
    held = next(answer.json() for answer in answers if answer.status_code == 202)
    stop = _send("DELETE", f"{base}/api/servers/{held['id']}", token=held["token"])
    again = _launch(base, token=first)
    print(f"[shares] second token: served; first token after stopping one ({stop.status_code}):"
          f" {again.status_code}")
    assert stop.status_code == 202 and again.status_code == 202


def test_a_stagings_max_servers_holds_for_a_burst_over_both_workers(service, store):
    base = service()
    _ready_staging(store, max_servers=3)
    _check_refusals(_burst(30, lambda: _launch(base, headers=OPERATOR)), 202, limit=3,
                    names="max_servers", what="a staging's max_servers (3), the operator")


def test_build_requests_per_hour_per_token(service, store, tmp_path):
    base = service(client_builds_per_hour=2)
    repo = make_repo(tmp_path, "repo", {"requirements.txt": ""})
    first, second = _user_tokens(store, "first", "second")

    def build(token):
        return _send("POST", f"{base}/api/builds", token=token, json={"repo": repo})

    _check_refusals(_burst(20, lambda: build(first)), 202, limit=2,
                    names="BINDERQ_CLIENT_BUILDS_PER_HOUR",
                    what="build requests per hour (2), by token")
    other = build(second)
    print(f"[shares] second token: {other.status_code}")
    assert other.status_code == 202


def test_builds_in_progress_per_client(service, store, tmp_path):
    base = service(client_max_builds=1)
    repos = iter([make_repo(tmp_path, f"repo{n}", {"requirements.txt": f"# {n}\n"})
                  for n in range(11)])
    first, second = _user_tokens(store, "first", "second")

    def build(token):
        return _send("POST", f"{base}/api/builds", token=token, json={"repo": next(repos)})

    _check_refusals(_burst(10, lambda: build(first)), 202, limit=1,
                    names="BINDERQ_CLIENT_MAX_BUILDS", what="builds in progress (1), by token")
    other = build(second)
    print(f"[shares] second token: {other.status_code}")
    assert other.status_code == 202


def test_the_pool_claim_counts_the_clients_servers_in_real_redis(store):
    _ready_staging(store, "pooled")
    version = store.stagings.get("pooled").version
    for n in range(3):
        server = Server(id=f"p{n}", staging="pooled", staging_version=version, pooled=True)
        store.servers.reserve(server, 50)
        store.servers.transition(server.id, [ServerStatus.PENDING],
                                 status=ServerStatus.STARTING)
        store.servers.mark_ready(store.servers.get(server.id))
    claimed = store.pools.claim("pooled", client="addr:a", client_limit=1)
    assert claimed.server.client == "addr:a"
    with pytest.raises(QuotaExceeded):
        store.pools.claim("pooled", client="addr:a", client_limit=1)
    assert store.pools.ready_count("pooled") == 2  # the refused claim popped nothing
    store.servers.transition(claimed.server.id, [ServerStatus.READY],
                             status=ServerStatus.STOPPING)
    assert store.pools.claim("pooled", client="addr:a", client_limit=1) is not None
