"""Redis holds binderq's records. One store per kind of record (stagings, servers, pools,
builds, tokens and task names, locks, the epoch, the launch queue), sharing the key templates
and the encoding of `common`; RedisStore bundles them over one client, as the services take them."""

from __future__ import annotations

import redis

from binderq.adapters.redis_store.builds import BuildStore
from binderq.adapters.redis_store.common import Keys, speaks_to_redis
from binderq.adapters.redis_store.epochs import EpochStore
from binderq.adapters.redis_store.health import HealthStore
from binderq.adapters.redis_store.hosts import HostStore
from binderq.adapters.redis_store.launch_queue import LaunchQueueStore
from binderq.adapters.redis_store.locks import LockStore
from binderq.adapters.redis_store.metrics import MetricsStore
from binderq.adapters.redis_store.pools import PoolClaim, PoolStore
from binderq.adapters.redis_store.servers import ServerStore
from binderq.adapters.redis_store.stagings import StagingStore
from binderq.adapters.redis_store.tokens import TaskStore, TokenStore

__all__ = ["Keys", "PoolClaim", "RedisStore"]


@speaks_to_redis
class RedisStore:
    """Every store of binderq's state, over one Redis client."""

    def __init__(self, client: redis.Redis, *, record_ttl: int = 7 * 24 * 3600,
                 build_ttl: int = 7 * 24 * 3600) -> None:
        self.redis = client
        self.stagings = StagingStore(client)
        self.servers = ServerStore(client, record_ttl=record_ttl)
        self.pools = PoolStore(client)
        self.builds = BuildStore(client, build_ttl=build_ttl)
        self.tokens = TokenStore(client)
        self.tasks = TaskStore(client)
        self.locks = LockStore(client)
        self.health = HealthStore(client)
        self.hosts = HostStore(client)
        self.epochs = EpochStore(client)
        self.metrics = MetricsStore(client)
        self.launch_queue = LaunchQueueStore(client)

    @property
    def record_ttl(self) -> int:
        return self.servers.record_ttl

    def ping(self) -> bool:
        return bool(self.redis.ping())
