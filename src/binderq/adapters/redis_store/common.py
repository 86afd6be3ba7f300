"""What every Redis store shares: key templates, the encoding of record fields, and turning
Redis' connection errors into DependencyDown.

Each record is a hash whose fields are JSON-encoded values, so Lua scripts can compare and
set single fields (status, version) atomically without decoding the rest.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import redis

from binderq.domain.errors import DependencyDown
from binderq.domain.models import jsonable

T = TypeVar("T")


class Keys:
    """Every key binderq writes; scripts that touch several kinds of record use these too."""

    STAGING = "binderq:staging:{name}"
    STAGINGS = "binderq:stagings"
    STAGING_VERSION = "binderq:staging-version:{name}"
    SERVER = "binderq:server:{id}"
    # Published to (the new status) when a server's status changes, by the scripts that
    # change it: a request waiting on it (?wait=) wakes at once. Scripts name it as the
    # server's key followed by ":status" (tests/unit/test_server_wait.py checks they agree).
    SERVER_STATUS_CHANNEL = "binderq:server:{id}:status"
    SERVERS = "binderq:servers"
    ACTIVE_SERVERS = "binderq:servers:active"
    # Fair shares: the servers of one staging, of one client (members pruned as they are counted).
    STAGING_SERVERS = "binderq:servers:staging:{name}"
    CLIENT_SERVERS = "binderq:servers:client:{client}"
    # The active servers of one Docker host, and that host's proofs of life (redis_store/hosts).
    HOST_SERVERS = "binderq:servers:host:{host}"
    HOST_ALIVE = "binderq:host:{host}:alive"
    HOST_SEEN = "binderq:host:{host}:seen"
    HOST_RUNNING = "binderq:host:{host}:running"
    HOST_DOWN_NOTICED = "binderq:host:{host}:down-noticed"
    # The launch queue (redis_store/launch_queue.py): ids by arrival, when each was last
    # polled, the arrival counter, and when the latest ones were promoted (for the eta).
    LAUNCH_QUEUE = "binderq:launch-queue"
    LAUNCH_QUEUE_POLLED = "binderq:launch-queue:polled"
    LAUNCH_QUEUE_ARRIVALS = "binderq:launch-queue:arrivals"
    LAUNCH_QUEUE_PROMOTED = "binderq:launch-queue:promoted"
    POOLS = "binderq:pools"
    POOL = "binderq:pool:{staging}"
    POOL_READY = "binderq:pool:{staging}:ready"
    POOL_DIRTY = "binderq:pool:{staging}:dirty"
    POOL_QUEUED = "binderq:pool:{staging}:replenish-queued"
    POOL_FAILURES = "binderq:pool:{staging}:failures"
    BUILD = "binderq:build:{id}"
    BUILDS = "binderq:builds"
    BUILD_KEY = "binderq:build-key:{key}"
    BUILDS_IN_PROGRESS = "binderq:builds:in-progress"
    BUILD_LOG = "binderq:build:{id}:log"
    # Bytes a build's log lines have counted against BINDERQ_BUILD_LOG_BYTES.
    BUILD_LOG_BYTES = "binderq:build:{id}:log-bytes"
    BUILD_STAGINGS = "binderq:build:{id}:stagings"
    # The clients (domain/access.client_key) that asked for a build, and each one's builds.
    BUILD_READERS = "binderq:build:{id}:readers"
    CLIENT_BUILDS = "binderq:builds:of:{client}"
    LOCK = "binderq:lock:{name}"
    HEALTH = "binderq:health"
    HEALTH_REFRESH = "binderq:health:refresh"
    TASK = "binderq:task:{id}"
    USER_TOKEN = "binderq:user-token:{hash}"
    EPOCH = "binderq:epoch"
    # Metrics every process adds to (redis_store/metrics.py).
    METRICS_HISTOGRAM = "binderq:metrics:histogram:{name}"
    METRICS_COUNTERS = "binderq:metrics:counters"


# Delete a key only if it still holds this value (a lock's holder, a build key's owner).
RELEASE_IF_HELD = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lua_status_set(statuses: Iterable[str]) -> str:
    """A Lua table literal {['"ready"']=true, ...}: statuses as the records hold them."""
    return "{" + ", ".join(f"['{json.dumps(str(s))}']=true" for s in statuses) + "}"


# count_held(set, statuses, prefix): how many members' records (prefix .. id) have one of
# statuses; members that have none (or no record) are dropped from the set as they are seen.
COUNT_HELD = """
local function count_held(set, statuses, prefix)
  local held = 0
  for _, id in ipairs(redis.call('SMEMBERS', set)) do
    if statuses[redis.call('HGET', prefix .. id, 'status') or ''] then held = held + 1
    else redis.call('SREM', set, id) end
  end
  return held
end
"""


# pick_host(hosts, check_up, key_at, arg_at) -> name, free places, its servers' set: the
# placement rule of domain/hosts.pick_host. Host i (1-based) has its set of servers at
# KEYS[key_at + 2i - 2] and its alive key at KEYS[key_at + 2i - 1], its name at
# ARGV[arg_at + 2i - 2] and its capacity at ARGV[arg_at + 2i - 1] (host_placement builds
# them); check_up false (one host): every host counts as up.
PICK_HOST = """
local function pick_host(hosts, check_up, key_at, arg_at)
  local best, best_free, best_set = nil, 0, nil
  for i = 1, hosts do
    local set, alive = KEYS[key_at + 2 * i - 2], KEYS[key_at + 2 * i - 1]
    if not check_up or redis.call('EXISTS', alive) == 1 then
      local free = tonumber(ARGV[arg_at + 2 * i - 1]) - redis.call('SCARD', set)
      if best == nil or free > best_free then
        best, best_free, best_set = ARGV[arg_at + 2 * i - 2], free, set
      end
    end
  end
  return best, best_free, best_set
end
"""


def host_placement(hosts: Sequence[Any]) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of PICK_HOST for hosts (domain.hosts.Host): the keys, then the
    count of hosts, whether to ask which are up (with more than one), and the hosts."""
    keys: list[str] = []
    args: list[Any] = [len(hosts), "1" if len(hosts) > 1 else "0"]
    for host in hosts:
        keys += [Keys.HOST_SERVERS.format(host=host.name), Keys.HOST_ALIVE.format(host=host.name)]
        args += [host.name, host.max_servers]
    return keys, args


def encode(record: dict[str, Any]) -> list[str]:
    """[field, json value, ...] for HSET, with times and statuses made JSON-ready."""
    flat: list[str] = []
    for key, value in record.items():
        flat += [key, json.dumps(jsonable(value))]
    return flat


def pairs(record: dict[str, Any]) -> dict[str, str]:
    flat = encode(record)
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode(raw: dict[bytes | str, bytes | str]) -> dict[str, Any]:
    return {text(key): json.loads(value) for key, value in raw.items()}


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _redis_errors_as_ours(method: Callable[..., T]) -> Callable[..., T]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return method(*args, **kwargs)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise DependencyDown("Redis", str(error)) from error

    return wrapper


def speaks_to_redis(cls: type[T]) -> type[T]:
    """Turn every Redis connection error of the class's public methods into DependencyDown."""
    for name, member in list(vars(cls).items()):
        if callable(member) and not name.startswith("_"):
            setattr(cls, name, _redis_errors_as_ours(member))
    return cls
