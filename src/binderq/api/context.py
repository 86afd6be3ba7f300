"""The adapters and settings the views use, kept on the app (so tests can pass fakes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import current_app, g

from binderq.adapters.redis_store import RedisStore
from binderq.api.auth import identify
from binderq.domain.access import Caller
from binderq.services import deploy
from binderq.services.deploy import StagingCache
from binderq.services.health import HealthCache
from binderq.services.servers import Launch
from binderq.settings import Settings

EXTENSION = "binderq"


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    store: RedisStore
    queue: Any  # CeleryTaskQueue, or a fake in unit tests
    proxy: Any  # ChpProxy, or a fake in unit tests
    git: Any = None  # GitSource: resolves refs when a build is asked for
    stagings: StagingCache = field(default_factory=lambda: StagingCache())
    # This process's last health report (services/health.py).
    health: HealthCache = field(default_factory=HealthCache)

    def caller(self) -> Caller:
        """This request's caller, identified once (the limits and the view both ask)."""
        if "binderq_caller" not in g:
            g.binderq_caller = identify(self.settings, self.store)
        return g.binderq_caller

    def launch(self, staging: str, *, cold: bool = True,
               queue_when_full: bool = False) -> Launch:
        """Launch a server of staging for this request's caller: every door's one call."""
        return deploy.launch(staging, caller=self.caller(), store=self.store,
                             queue=self.queue, settings=self.settings, stagings=self.stagings,
                             cold=cold, queue_when_full=queue_when_full)


def context() -> ApiContext:
    return current_app.extensions[EXTENSION]
