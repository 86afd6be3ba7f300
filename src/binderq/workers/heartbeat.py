"""A launch worker's proof of life for its host: a thread in the worker's main process that,
every HEARTBEAT_INTERVAL seconds, asks its engine and writes the answer to Redis
(services/hosts.beat). A thread, not a beat task: a task would wait behind slow launches,
and the host would look down while its worker is only busy."""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from binderq.domain.hosts import HEARTBEAT_INTERVAL

log = logging.getLogger(__name__)
_stop = threading.Event()


def consumes(app: Celery, queue: str) -> bool:
    """Whether this worker consumes queue (its -Q)."""
    return queue in (app.amqp.queues.consume_from or {})


@worker_ready.connect(weak=False, dispatch_uid="binderq-host-heartbeat")
def start_heartbeat(sender: Any = None, **_: Any) -> None:
    """In a launch worker (one that consumes its host's queue), start the heartbeat."""
    from binderq.workers.app import settings_of

    app = sender.app
    settings = settings_of(app)
    host = settings.host()
    if not consumes(app, host.queue):
        return
    thread = threading.Thread(target=_beat_forever, args=(settings,), daemon=True,
                              name=f"heartbeat-{host.name}")
    thread.start()
    log.info("host %s: heartbeat every %g s", host.name, HEARTBEAT_INTERVAL)


@worker_shutdown.connect(weak=False, dispatch_uid="binderq-host-heartbeat-stop")
def stop_heartbeat(**_: Any) -> None:
    _stop.set()


def _beat_forever(settings: Any) -> None:
    # Its own adapters: the worker's cached ones belong to the pool's processes.
    from binderq.bootstrap import build_runtime, build_store
    from binderq.services.hosts import beat

    host = settings.host()
    own = settings.with_changes(docker_host=host.url)
    store, runtime = build_store(own), build_runtime(own)
    while not _stop.is_set():
        try:
            beat(host, store=store, runtime=runtime)
        except Exception as error:  # Redis down, say: try again at the next beat
            log.warning("host %s: heartbeat failed: %s", host.name, error)
        _stop.wait(HEARTBEAT_INTERVAL)
