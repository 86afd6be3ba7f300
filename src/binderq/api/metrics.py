"""/metrics: pool and server figures in Prometheus' text format (operator token)."""

from __future__ import annotations

from collections import Counter

from flask import Blueprint, Response

from binderq.api.context import context
from binderq.domain.access import require_operator
from binderq.services import pools

blp = Blueprint("metrics", __name__)

_POOL_METRICS = (
    ("binderq_pool_size", "gauge", "servers the pool keeps ready", "size"),
    ("binderq_pool_ready", "gauge", "servers ready in the pool", "ready"),
    ("binderq_pool_starting", "gauge", "pooled servers starting", "starting"),
    ("binderq_pool_in_use", "gauge", "servers claimed from the pool and running", "in_use"),
    ("binderq_pool_hits_total", "counter", "launches served from the pool", "hits"),
    ("binderq_pool_misses_total", "counter", "launches that found the pool empty", "misses"),
)


@blp.route("/metrics")
def metrics() -> Response:
    ctx = context()
    require_operator(ctx.caller())
    all_pools = pools.list_pools(store=ctx.store)
    lines = []
    for name, kind, help_text, attribute in _POOL_METRICS:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f'{name}{{staging="{_escape(pool.staging)}"}} {getattr(pool, attribute)}'
                  for pool in all_pools]
    by_status = Counter(str(server.status) for server in ctx.store.servers.active())
    lines += ["# HELP binderq_servers servers that hold a place, by status",
              "# TYPE binderq_servers gauge"]
    lines += [f'binderq_servers{{status="{status}"}} {count}'
              for status, count in sorted(by_status.items())]
    lines += ["# HELP binderq_servers_capacity servers that may exist at once",
              "# TYPE binderq_servers_capacity gauge",
              f"binderq_servers_capacity {ctx.settings.max_servers}"]
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
