"""Wiring: build each adapter, the Flask app and the Celery app from one Settings."""

from __future__ import annotations

import redis
from celery import Celery
from flask import Flask

from binderq.adapters.chp_proxy import ChpProxy
from binderq.adapters.docker_builder import DockerBuilder
from binderq.adapters.docker_runtime import DockerRuntime
from binderq.adapters.redis_store import RedisStore
from binderq.logs import configure_logging
from binderq.settings import Settings

# Seconds a Redis command may take before Redis counts as down (blocking reads stay below).
REDIS_SOCKET_TIMEOUT = 5.0


def build_store(settings: Settings) -> RedisStore:
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_SOCKET_TIMEOUT,
                                  socket_connect_timeout=1, health_check_interval=30)
    return RedisStore(client, record_ttl=settings.record_ttl, build_ttl=settings.build_ttl)


def build_runtime(settings: Settings) -> DockerRuntime:
    return DockerRuntime(instance=settings.instance, publish_ip=settings.publish_ip,
                         docker_host=settings.docker_host, disk=settings.server_disk,
                         deployment=settings.deployment_id, heavy_calls=settings.engine_calls,
                         sockets=settings.launch_concurrency)


def build_builder(settings: Settings) -> DockerBuilder:
    return DockerBuilder(docker_host=settings.docker_host, pids_limit=settings.build_pids)


def build_proxy(settings: Settings) -> ChpProxy:
    return ChpProxy(settings.proxy_api_url, settings.proxy_api_token)


def build_git(settings: Settings):
    from binderq.adapters.git_source import GitSource

    return GitSource(allow_local=settings.allow_local_repos, max_bytes=settings.max_repo_bytes)


def build_celery(settings: Settings) -> Celery:
    from binderq.workers.app import make_celery

    return make_celery(settings)


def create_wsgi_app(settings: Settings | None = None) -> Flask:
    """The API, wired to real Redis, Celery and the proxy (gunicorn's entry point). Unusable
    settings (a short BINDERQ_SECRET_KEY, say) stop it with SettingsError naming the
    setting, so gunicorn refuses to start."""
    from binderq.adapters.task_queue import CeleryTaskQueue
    from binderq.api import create_app

    settings = settings or Settings.from_env()
    settings.validate()
    configure_logging(settings.log_format)
    store = build_store(settings)
    queue = CeleryTaskQueue(build_celery(settings), store)
    return create_app(settings, store=store, queue=queue, proxy=build_proxy(settings),
                      git=build_git(settings))
