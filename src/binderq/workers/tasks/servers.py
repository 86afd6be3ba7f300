"""Server tasks: thin wrappers that take a server id and re-read its state."""

from __future__ import annotations

from celery import shared_task

from binderq.domain.models import ServerStatus
from binderq.services import launch_queue, servers
from binderq.tasks import LAUNCH, STOP
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(LAUNCH))
def launch(server_id: str) -> str | None:
    """Start a pending server; every failure ends it `failed` with a reason, not a retry."""
    context = worker_context()
    server = servers.launch_server(server_id, store=context.store, runtime=context.runtime,
                                   proxy=context.proxy, probe=context.probe,
                                   settings=context.settings)
    if server is not None and server.status == ServerStatus.FAILED:  # its room is free
        launch_queue.serve_queue_if_waiting(store=context.store, queue=context.queue,
                                            settings=context.settings)
    return str(server.status) if server else None


@shared_task(**task_options(STOP))
def stop(server_id: str) -> str | None:
    """Remove a server's route, containers and network; retried while Docker is down.
    Its room is free then: the launch queue is served."""
    context = worker_context()
    server = servers.stop_server(server_id, store=context.store, runtime=context.runtime,
                                 proxy=context.proxy)
    launch_queue.serve_queue_if_waiting(store=context.store, queue=context.queue,
                                        settings=context.settings)
    return str(server.status) if server else None
