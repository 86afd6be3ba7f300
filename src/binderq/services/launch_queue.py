"""The launch queue: a launch asked with `?queue=true` that finds no room waits, first come
first served, instead of a 429 (domain/launch_queue.py says which refusals wait).

API side: join the queue, answer where a launch stands (and note that its asker still
waits); leaving it is a stop (services/servers.request_stop). Either side: serve the
queue (drop launches nobody polls any more, then promote the oldest that fit, then queue
their launch tasks). It is served wherever room may
have freed: after a server stopped or failed (the launch and stop tasks), before any cold
launch (so a newcomer never takes the room of one who waited), and every few seconds with
pool upkeep, as a backstop.
"""

from __future__ import annotations

import logging
import time

from binderq.adapters.redis_store import RedisStore
from binderq.domain.errors import BinderqError
from binderq.domain.launch_queue import QueuePlace, is_unpolled, queue_eta
from binderq.domain.models import Server, ServerStatus, Staging, utcnow
from binderq.domain.shares import NO_SHARE, ClientShare
from binderq.domain.tokens import new_server_id, new_task_id, server_token
from binderq.services.ports import TaskQueue
from binderq.services.servers import Launch
from binderq.settings import Settings
from binderq.tasks import LAUNCH

log = logging.getLogger(__name__)


def join_queue(staging: Staging, *, store: RedisStore, queue: TaskQueue, settings: Settings,
               share: ClientShare = NO_SHARE) -> Launch:
    """Queue a launch of a ready staging for share's client; its token at once (it opens
    the server once ready). Served at once if room freed since it was refused."""
    server = Server(id=new_server_id(), staging=staging.name, staging_version=staging.version,
                    status=ServerStatus.QUEUED, task_id=new_task_id(), client=share.client,
                    kind=staging.kind)
    store.launch_queue.join(server, max_queued=settings.max_queued,
                            client_limit=share.max_servers, now=time.time())
    serve_queue(store=store, queue=queue, settings=settings)
    return Launch(store.servers.get(server.id) or server,
                  server_token(settings.secret_key, server.id))


def place_in_queue(server: Server, *, store: RedisStore, polled: bool = False
                   ) -> QueuePlace | None:
    """Where a queued server stands; None if it is not queued. polled: its asker is
    still waiting (it keeps the launch from being dropped)."""
    if server.status != ServerStatus.QUEUED:
        return None
    now = time.time()
    position = store.launch_queue.position(server.id, polled_at=now if polled else None)
    if position is None:
        return None
    return QueuePlace(position, queue_eta(position, store.launch_queue.promotions(), now=now))


def serve_queue(*, store: RedisStore, queue: TaskQueue, settings: Settings) -> list[str]:
    """Drop the launches nobody polls any more, promote the oldest that fit (one atomic
    step), and queue their launch tasks; the promoted ids."""
    drop_unpolled(store=store, settings=settings)
    promoted = store.launch_queue.promote(settings.max_servers, now=time.time(),
                                          poll_timeout=settings.queue_poll_timeout,
                                          changed_at=utcnow().isoformat(),
                                          hosts=settings.hosts)
    for server_id in promoted:
        _queue_launch(server_id, store=store, queue=queue)
    return promoted


def serve_queue_if_waiting(*, store: RedisStore, queue: TaskQueue,
                           settings: Settings) -> list[str]:
    """serve_queue, when anything waits (one Redis round trip when nothing does)."""
    if not store.launch_queue.length():
        return []
    return serve_queue(store=store, queue=queue, settings=settings)


def drop_unpolled(*, store: RedisStore, settings: Settings) -> list[str]:
    """Stop the queued launches not polled for BINDERQ_QUEUE_POLL_TIMEOUT: whoever asked
    is gone, and a server made for nobody would hold room until culled."""
    now, timeout = time.time(), settings.queue_poll_timeout
    dropped = []
    for server_id, polled_at in store.launch_queue.polled().items():
        if not is_unpolled(polled_at, now=now, poll_timeout=timeout):
            continue
        if store.servers.transition(
                server_id, [ServerStatus.QUEUED], status=ServerStatus.STOPPED,
                stopped_at=utcnow(), error=f"left the launch queue: not polled for "
                                           f"{timeout:g} s (BINDERQ_QUEUE_POLL_TIMEOUT)"):
            dropped.append(server_id)
        store.launch_queue.forget(server_id)
    if dropped:
        log.info("launch queue: dropped %d unpolled launches: %s", len(dropped),
                 ", ".join(dropped))
    return dropped


def _queue_launch(server_id: str, *, store: RedisStore, queue: TaskQueue) -> None:
    server = store.servers.get(server_id)
    if server is None:
        return
    try:
        queue.enqueue(LAUNCH.name, server_id, task_id=server.task_id)
    except BinderqError as error:  # reconcile would relaunch it; say why now instead
        store.servers.transition(server_id, [ServerStatus.PENDING], status=ServerStatus.FAILED,
                                 error=f"could not queue the launch: {error}")
        raise
