"""Pool tasks: replenish one pool (after a claim or a size change), or all (celery beat)."""

from __future__ import annotations

from celery import shared_task

from binderq.services import hosts, launch_queue, lifecycle, pools
from binderq.tasks import REPLENISH, UPKEEP
from binderq.workers.app import task_options
from binderq.workers.context import worker_context


@shared_task(**task_options(REPLENISH))
def replenish(staging: str) -> dict | None:
    """Bring one staging's pool to its size: retire dead, old or stale servers, start new."""
    context = worker_context()
    plan = pools.replenish_pool(staging, store=context.store, runtime=context.runtime,
                                queue=context.queue, settings=context.settings)
    return {"start": plan.start, "retire": plan.retire} if plan else None


@shared_task(**task_options(UPKEEP))
def upkeep() -> dict:
    """Every pool's upkeep, after hosts that went down gave up their servers (services/
    hosts.py), the launch queue's backstop (room freed unnoticed, launches nobody polls),
    and a reconcile at once if Redis lost its data; celery beat runs this every few
    seconds."""
    context = worker_context()
    hosts.watch_hosts(store=context.store, proxy=context.proxy, queue=context.queue,
                      settings=context.settings)
    lifecycle.reconcile_if_redis_forgot(store=context.store, queue=context.queue)
    launch_queue.serve_queue_if_waiting(store=context.store, queue=context.queue,
                                        settings=context.settings)
    plans = pools.upkeep_all_pools(store=context.store, runtime=context.runtime,
                                   queue=context.queue, settings=context.settings)
    return {name: plan.start if plan else None for name, plan in plans.items()}
