"""Health: is each dependency up, and does a worker really consume its queue?"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from binderq.domain.errors import BinderqError
from binderq.services.ports import Proxy, Runtime
from binderq.tasks import HEALTH_PING

HEALTH_BUDGET = 1.8  # seconds: /api/health must answer within 2 s even when all is down


def _check(probe: Callable[[], Any]) -> dict[str, Any]:
    started = time.monotonic()
    try:
        probe()
    except BinderqError as error:
        return {"ok": False, "error": str(error)}
    except Exception as error:  # a health check reports every failure, it never raises
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    return {"ok": True, "latency_ms": round((time.monotonic() - started) * 1000, 1)}


def check_docker(runtime: Runtime) -> dict[str, Any]:
    return _check(lambda: runtime.ping(timeout=1.0))


def health_report(*, store: Any, proxy: Proxy, queue: Any) -> dict[str, Any]:
    """Each dependency's state; the Docker engine as the launch worker's canary saw it."""
    canary_answer: dict[str, Any] = {}

    def run_canary() -> None:
        canary_answer.update(queue.ping_worker(HEALTH_PING.queue, timeout=HEALTH_BUDGET - 0.3))

    probes = {
        "redis": lambda: store.ping(),
        "proxy": lambda: proxy.ping(timeout=1.0),
        "workers": run_canary,
    }
    # Not a `with` block: its exit would wait for a check stuck on a dead dependency.
    pool = ThreadPoolExecutor(max_workers=len(probes))
    futures = {name: pool.submit(_check, probe) for name, probe in probes.items()}
    wait(futures.values(), timeout=HEALTH_BUDGET)
    checks = {name: _result(future) for name, future in futures.items()}
    pool.shutdown(wait=False, cancel_futures=True)
    checks["docker"] = canary_answer.get("docker") or {
        "ok": False, "error": "unknown: no launch worker answered to check the Docker engine"}
    return {"ok": all(check["ok"] for check in checks.values()), "checks": checks}


def _result(future: Any) -> dict[str, Any]:
    if not future.done():
        return {"ok": False, "error": f"no answer within {HEALTH_BUDGET} s"}
    return future.result()
