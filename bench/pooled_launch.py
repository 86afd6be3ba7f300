"""Pooled launch: latency, throughput against a floor, cold/pooled, and refill time.

Part 1, the real service (`binderq up`'s stack: gunicorn, Celery workers, Redis, dockerd,
configurable-http-proxy) with a real pool of 20 notebooks:
  - pooled launch latency for 1 client, claiming the pool empty three times;
  - how long a pool of 20, drained at once, takes to be full again;
  - the cold launch (POST to a url that answers), for the ratio cold/pooled.

Part 2, throughput: 50 clients claim for 10 s, far more servers than a 2-core machine can
run, so the pool is seeded with ready server records in Redis (the claim path never touches
Docker or the proxy: a seeded record is claimed exactly as a real one). The API runs under
the same gunicorn configuration as part 1 and as the floors: a trivial Flask endpoint, and
one that makes a single Redis GET (the least a pooled launch must do: Redis shares these
two cores). wrk loads each alike.

    .venv/bin/python bench/pooled_launch.py
"""

from __future__ import annotations

import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import describe, operator, percentile, poll, stage, start_stack  # noqa: E402

from binderq.adapters.redis_store import RedisStore  # noqa: E402
from binderq.cli import WSGI_APP, gunicorn_command  # noqa: E402
from binderq.domain.models import Server, ServerStatus, Staging, StagingStatus  # noqa: E402
from binderq.processes import free_port, start_redis, stop_process, wait_until  # noqa: E402
from binderq.settings import Settings  # noqa: E402

POOL = 20
SEEDED = 40_000
SMALL = {"memory": "192m", "cpus": 1.0, "pids": 128}


# -- part 1: the real service and a real pool ---------------------------------------------


def real_pool_figures() -> dict[str, object]:
    stack = start_stack(f"bench{secrets.token_hex(2)}", max_servers=3 * POOL)
    session = requests.Session()
    session.headers.update(operator(stack))
    base = stack.local_url
    try:
        stage(stack, "bench", resources=SMALL)
        cold = [cold_launch(session, base) for _ in range(5)]
        set_pool(session, base, POOL)
        latencies = []
        for _ in range(3):
            wait_full(session, base)
            claimed = [timed_claim(session, base) for _ in range(POOL)]
            latencies += [seconds for seconds, _ in claimed]
            stop_all(session, base, [server for _, server in claimed])
        wait_full(session, base)
        refill = drain_at_once_and_refill(session, base)
        set_pool(session, base, 0)
    finally:
        stack.stop()
    return {"pooled_1": latencies, "cold": cold, "refill": refill}


def set_pool(session, base, size):
    session.put(f"{base}/api/pools/bench", json={"size": size}).raise_for_status()


def wait_full(session, base, timeout=240):
    def full():
        pool = session.get(f"{base}/api/pools/bench").json()
        return pool["ready"] == POOL and pool["starting"] == 0
    poll(full, timeout=timeout, interval=0.05)


def timed_claim(session, base):
    started = time.perf_counter()
    response = session.post(f"{base}/api/stagings/bench/servers")
    elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.text
    return elapsed, response.json()


def stop_all(session, base, servers):
    for server in servers:
        session.delete(f"{base}/api/servers/{server['id']}")
    for server in servers:
        poll(lambda s=server: session.get(f"{base}/api/servers/{s['id']}").json()["status"]
             == "stopped", timeout=60, interval=0.1)


def drain_at_once_and_refill(session, base) -> float:
    """Claim the whole pool concurrently; seconds until it is full again."""
    with ThreadPoolExecutor(max_workers=POOL) as pool:
        claimed = list(pool.map(lambda _: session.post(f"{base}/api/stagings/bench/servers"),
                                range(POOL)))
    started = time.monotonic()
    assert all(response.status_code == 201 for response in claimed)
    wait_full(session, base)
    refill = time.monotonic() - started
    stop_all(session, base, [response.json() for response in claimed])
    return refill


def cold_launch(session, base) -> float:
    started = time.monotonic()
    server = session.post(f"{base}/api/stagings/bench/servers").json()
    url = f"{base}/api/servers/{server['id']}"
    ready = poll(lambda: _ready_url(session, url), timeout=60)
    poll(lambda: requests.get(f"{ready}api/status", params={"token": server["token"]},
                              timeout=5).status_code == 200, timeout=30)
    elapsed = time.monotonic() - started
    stop_all(session, base, [server])
    return elapsed


def _ready_url(session, url):
    server = session.get(url).json()
    return server["url"] if server["status"] == "ready" else None


# -- part 2: throughput under wrk, against the floor --------------------------------------


def throughput_figures() -> dict[str, dict[str, float]]:
    redis_port, api_port, floor_port = free_port(), free_port(), free_port()
    logs = Path(tempfile.mkdtemp(prefix="binderq-bench-"))
    redis_server = start_redis(redis_port, log_file=logs / "redis.log")
    settings = Settings(redis_url=f"redis://127.0.0.1:{redis_port}/0", operator_token="bench",
                        secret_key=secrets.token_hex(32), max_servers=10 * SEEDED,
                        instance="benchseed")
    seed_pool(settings)
    api = _serve(gunicorn_command(WSGI_APP, f"127.0.0.1:{api_port}"), settings, logs / "api")
    floor = _serve(gunicorn_command("trivial_app:app", f"127.0.0.1:{floor_port}"), settings,
                   logs / "floor", cwd=Path(__file__).parent)
    try:
        for port in (api_port, floor_port):
            wait_until(lambda p=port: _answers(p), timeout=30, what=f"gunicorn on {port}")
        launch = f"http://127.0.0.1:{api_port}/api/stagings/bench/servers"
        ping = f"http://127.0.0.1:{floor_port}/ping"
        one_get = f"http://127.0.0.1:{floor_port}/redis"
        figures = {
            "pooled_1": wrk(launch, connections=1, seconds=5),
            "floor_1": wrk(ping, connections=1, seconds=5),
            "pooled_50": wrk(launch, connections=50, seconds=10),
            "floor_50": wrk(ping, connections=50, seconds=10),
            "redis_50": wrk(one_get, connections=50, seconds=10),
        }
        counters = RedisStore(redis.Redis.from_url(settings.redis_url)).pools.counters("bench")
        figures["pool"] = counters
    finally:
        for process in (api, floor, redis_server):
            stop_process(process)
    return figures


def seed_pool(settings: Settings) -> None:
    """SEEDED ready, pooled server records, as upkeep and the launch task leave them."""
    store = RedisStore(redis.Redis.from_url(settings.redis_url))
    store.stagings.save(Staging(name="bench", image="binderq/notebook:bookworm", version=1,
                                status=StagingStatus.READY))
    store.pools.set_size("bench", SEEDED)
    for index in range(SEEDED):
        server = Server(id=f"seed{index:06d}", staging="bench", staging_version=1,
                        pooled=True, status=ServerStatus.STARTING)
        store.servers.reserve(server, settings.max_servers)
        store.servers.mark_ready(server, url=f"http://127.0.0.1/user/{server.id}/", target="seeded")


def wrk(url: str, *, connections: int, seconds: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Authorization"] = "token bench"\n')
    output = subprocess.run(
        ["wrk", "--latency", "-t", str(min(2, connections)), "-c", str(connections),
         "-d", f"{seconds}s", "-s", str(script), url],
        check=True, capture_output=True, text=True).stdout
    if "Non-2xx" in output:
        raise RuntimeError(f"errors under load:\n{output}")
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50": _ms(re.search(r"50%\s+([\d.]+\w+)", output).group(1)),
            "p99": _ms(re.search(r"99%\s+([\d.]+\w+)", output).group(1))}


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _serve(args, settings, log, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(args, env=settings.to_env(), cwd=cwd, stdout=open(log, "wb"),  # noqa: SIM115
                            stderr=subprocess.STDOUT, start_new_session=True)


def _answers(port: int) -> bool:
    try:
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
        return True
    except requests.RequestException:
        return False


# -- report -------------------------------------------------------------------------------


def main() -> int:
    real = real_pool_figures()
    load = throughput_figures()
    pooled_ms = [seconds * 1000 for seconds in real["pooled_1"]]
    p50, p99 = statistics.median(pooled_ms), percentile(pooled_ms, 0.99)
    cold = statistics.median(real["cold"]) * 1000
    p1, f1 = load["pooled_1"], load["floor_1"]
    p50c, f50c = load["pooled_50"], load["floor_50"]
    throughput_ratio = p50c["rps"] / f50c["rps"]
    p99_ratio = p50c["p99"] / f50c["p99"]
    print("part 1: the real service, a real pool of 20 notebooks")
    print(describe("pooled launch, 1 client", real["pooled_1"]))
    print(describe("cold launch (POST -> url answers)", real["cold"]))
    print(f"cold/pooled (medians): {cold / p50:.0f}x  (target >= 100x)")
    print(f"pool of {POOL} drained at once, full again after {real['refill']:.1f} s")
    print(f"part 2: wrk against gunicorn, pool seeded with {SEEDED} ready records")
    print(f"pooled launch, 1 client:  p50 {p1['p50']:.2f} ms  p99 {p1['p99']:.2f} ms  "
          f"{p1['rps']:.0f} req/s   (target p50 <= 5 ms, p99 <= 15 ms)")
    print(f"floor, 1 client:          p50 {f1['p50']:.2f} ms  p99 {f1['p99']:.2f} ms  "
          f"{f1['rps']:.0f} req/s")
    print(f"pooled launch, 50 clients: {p50c['rps']:.0f} req/s  p50 {p50c['p50']:.1f} ms  "
          f"p99 {p50c['p99']:.1f} ms")
    print(f"floor, 50 clients:         {f50c['rps']:.0f} req/s  p50 {f50c['p50']:.1f} ms  "
          f"p99 {f50c['p99']:.1f} ms")
    r50 = load["redis_50"]
    print(f"floor + one Redis GET, 50: {r50['rps']:.0f} req/s  p50 {r50['p50']:.1f} ms  "
          f"p99 {r50['p99']:.1f} ms")
    print(f"throughput pooled/floor {throughput_ratio:.2f} (target >= 0.50), "
          f"p99 pooled/floor {p99_ratio:.2f} (target <= 2.0)")
    print(f"against one Redis GET: throughput {p50c['rps'] / r50['rps']:.2f}, "
          f"p99 {p50c['p99'] / r50['p99']:.2f}; one GET against the floor: throughput "
          f"{r50['rps'] / f50c['rps']:.2f}, p99 {r50['p99'] / f50c['p99']:.2f}")
    print(f"pool counters after part 2: {load['pool']} (every launch pooled: misses 0)")
    met = (p50 <= 5 and p99 <= 15 and p1["p50"] <= 5 and p1["p99"] <= 15 and cold / p50 >= 100
           and throughput_ratio >= 0.5 and p99_ratio <= 2.0 and load["pool"]["misses"] == 0)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
