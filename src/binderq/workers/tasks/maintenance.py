"""Maintenance tasks, sent by celery beat: cull idle servers, reconcile state, collect what
outlived BINDERQ_BUILD_TTL."""

from __future__ import annotations

from datetime import datetime

from celery import shared_task

from binderq.adapters.notebook_probe import last_activity, notebook_status
from binderq.domain.models import Server
from binderq.domain.spec import server_path
from binderq.domain.tokens import server_token
from binderq.services import collect as collector
from binderq.services import lifecycle
from binderq.tasks import COLLECT, CULL, RECONCILE
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(CULL))
def cull() -> list[str]:
    """Stop servers idle past their cull_timeout or older than their max_age."""
    context = worker_context()
    culls = lifecycle.cull_idle_servers(store=context.store, proxy=context.proxy,
                                        queue=context.queue, activity_of=notebook_activity)
    return [cull.server_id for cull in culls]


@shared_task(**task_options(RECONCILE))
def reconcile(adopt: bool | None = None, host: str | None = None) -> dict | None:
    """Repair what crashes and restarts left behind in Redis, Docker and the proxy. With
    more than one Docker host, one reconcile per host, each on its host's queue (sent to
    host; without one, this run sends them)."""
    context = worker_context()
    if context.settings.many_hosts and host is None:
        names = [each.name for each in context.settings.hosts]
        for name in names:
            context.queue.enqueue(RECONCILE.name, adopt, name, host=name)
        return {"hosts": names}
    repairs = lifecycle.reconcile(store=context.store, runtime=context.runtime,
                                  proxy=context.proxy, queue=context.queue,
                                  settings=context.settings, adopt=adopt)
    if repairs is None:
        return None
    return {name: sorted(value) for name, value in vars(repairs).items() if value}


@shared_task(**task_options(COLLECT))
def collect() -> dict | None:
    """Remove door-made stagings and built images past BINDERQ_BUILD_TTL that nothing uses."""
    context = worker_context()
    collected = collector.collect(store=context.store, builder=context.builder,
                                  queue=context.queue, settings=context.settings)
    return vars(collected) if collected is not None else None


def notebook_activity(server: Server) -> datetime | None:
    """What the server's notebook says of its last activity; None if it does not answer."""
    if not server.target:
        return None
    token = server_token(worker_context().settings.secret_key, server.id)
    status = notebook_status(f"{server.target}{server_path(server.id)}", token, timeout=2)
    return last_activity(status) if status else None
