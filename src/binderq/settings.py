"""One frozen Settings object, read from ``BINDERQ_*`` environment variables.

Every setting is documented in the README's configuration table; keep the two in step.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from binderq.domain.hosts import Host, HostsError, parse_hosts

LAUNCH_AUTH_MODES = ("open", "token")
# Bytes a secret key needs at least: server tokens are HMACs of it, so a short or empty one
# lets anyone compute every server's token.
MIN_SECRET_KEY_BYTES = 32
ORPHAN_POLICIES = ("remove", "adopt")
LOG_FORMATS = ("json", "text")


class SettingsError(ValueError):
    """A setting has a value binderq cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable about one binderq deployment."""

    # Redis URL for state and queues; empty means `binderq up` embeds a redis-server.
    redis_url: str = ""
    # Docker engine address; empty means the docker SDK's default (DOCKER_HOST or the socket).
    docker_host: str = ""
    # Where users reach the proxy: server urls are {public_url}/user/{id}/.
    public_url: str = "http://127.0.0.1:8000"
    # Token with every right; empty disables operator calls.
    operator_token: str = ""
    # Secret from which server tokens are derived (HMAC); at least 32 bytes, or nothing starts.
    secret_key: str = ""
    proxy_api_url: str = "http://127.0.0.1:8001"
    proxy_api_token: str = ""
    # Host address on which server ports are published (never 0.0.0.0: see HOST.md).
    publish_ip: str = "127.0.0.1"
    # How many servers may exist at once (pending to ready); launches past it get 429.
    max_servers: int = 50
    # "open": public stagings launch without a token; "token": every launch needs one.
    launch_auth: str = "token"
    allow_local_repos: bool = False
    default_staging: str = ""
    cors_allow_origin: str = ""
    # How many proxies in front of the API append to X-Forwarded-For (configurable-http-proxy
    # is one); a client's address is read that many hops from the end. 0: the peer address.
    trusted_proxies: int = 0
    # Names containers, networks and labels, so that two deployments on one engine never meet.
    instance: str = "binderq"
    notebook_image: str = "binderq/notebook:bookworm"
    # Seconds a launch may take from container start until the notebook answers.
    launch_timeout: float = 120.0
    # Seconds stopped and failed servers stay readable before Redis forgets them.
    record_ttl: int = 7 * 24 * 3600
    # Seconds between culler runs, and between reconcile runs (celery beat sends both).
    cull_interval: float = 30.0
    reconcile_interval: float = 60.0
    # Limits of one docker build, and the largest repository a build fetches.
    build_memory: str = "2g"
    build_cpu_shares: int = 1024
    build_timeout: float = 1800.0
    # Seconds the BinderHub door waits for a builds worker to start a queued build before
    # its stream ends `failed` (the build stays queued, for a worker that comes later); a
    # build's log stream waits this long plus build_timeout.
    build_queue_timeout: float = 600.0
    max_repo_bytes: int = 500 * 1024**2
    # How many builds may be in progress (queued or running) at once; more get 429 and fail.
    max_builds: int = 10
    # Comma-separated images that builds without a token may start FROM, besides the
    # notebook image; empty: the images of public stagings (services/build_rules.py).
    build_base_images: str = ""
    # What reconcile does with a labelled container Redis does not know: remove or adopt.
    orphans: str = "remove"
    # Who made a container (its binderq.deployment label); empty: derived from the secret
    # key and where Redis is. `binderq up` sets it from where its Redis keeps its data.
    deployment: str = ""
    # Fair shares of one client (its token, else its address; the operator is exempt), each
    # answered 429 past it; 0 is no limit. See docs/security.md.
    client_max_servers: int = 10
    client_launches_per_minute: int = 20
    client_max_builds: int = 2
    client_builds_per_hour: int = 30
    # The uid (and gid) every server container runs as, whatever its image's USER; never 0.
    server_uid: int = 1000
    # Largest writable layer of a server container, where the engine can limit it; "" = none.
    server_disk: str = "10g"
    # Most processes one build step may run at once.
    build_pids: int = 1024
    # Made by `binderq up` for each start: the API signs X-Binderq-Challenge with it (answer
    # X-Binderq-Proof), so `binderq up` can tell its own API from another on the same port.
    deployment_key: str = ""
    # Log lines as JSON objects (for a log collector) or text (for a person reading a file).
    log_format: str = "json"
    # Seconds a finished build (record, log) lives; then its image goes unless a staging uses
    # it, and door-made stagings unused that long go too (services/collect.py).
    build_ttl: int = 7 * 24 * 3600
    # A build's log: bytes kept of one line (longer ones are cut), and in all.
    build_log_line_bytes: int = 4096
    build_log_bytes: int = 2 * 1024**2
    # Seconds between collector runs (celery beat sends it).
    collect_interval: float = 3600.0
    # The Docker hosts servers are spread over: "name=url;max=N,name=url" (domain/hosts.py);
    # empty: one host, `local`, on DOCKER_HOST, holding up to max_servers.
    docker_hosts: str = ""
    # The host a launch worker owns (its queue launches.<host>, its engine); empty: the first.
    worker_host: str = ""
    # The image registry ("127.0.0.1:5055") images go through to reach every host; empty with
    # one host: none needed (`binderq up` starts one when more hosts are named).
    registry: str = ""
    # The launch queue (`?queue=true` at capacity): seconds a queued launch waits without
    # being polled (GET /api/servers/{id}) before it is dropped, and how many may wait.
    queue_poll_timeout: float = 60.0
    max_queued: int = 100
    # A launch worker's threads: launches (and stops, probes, upkeep) it runs at once. A
    # launch mostly waits on the engine and the notebook, so threads, not processes.
    launch_concurrency: int = 32
    # Servers a launch worker makes or removes at once on its engine (networks, containers,
    # starts; docker_engine.EngineGate); 0: no bound. The readiness probes are not counted.
    engine_calls: int = 16

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *,
                 secret_required: bool = True) -> Settings:
        """Read settings from ``BINDERQ_<FIELD>`` variables (and ``DOCKER_HOST``). Only
        `binderq up`, which makes a secret key when none is given, reads them without one."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in fields(cls):
            name = "DOCKER_HOST" if field.name == "docker_host" else f"BINDERQ_{field.name.upper()}"
            if name in environ:
                values[field.name] = _parse(field.name, field.type, environ[name])
        settings = cls(**values)
        settings.validate(secret_required=secret_required)
        return settings

    def validate(self, *, secret_required: bool = True) -> None:
        """Refuse combinations that cannot work, or are unsafe, naming the setting."""
        if secret_required or self.secret_key:
            check_secret_key(self.secret_key)
        if self.launch_auth not in LAUNCH_AUTH_MODES:
            raise SettingsError(f"BINDERQ_LAUNCH_AUTH must be one of {LAUNCH_AUTH_MODES}")
        if self.orphans not in ORPHAN_POLICIES:
            raise SettingsError(f"BINDERQ_ORPHANS must be one of {ORPHAN_POLICIES}")
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"BINDERQ_LOG_FORMAT must be one of {LOG_FORMATS}")
        if self.max_servers < 1:
            raise SettingsError("BINDERQ_MAX_SERVERS must be at least 1")
        if self.trusted_proxies < 0:
            raise SettingsError("BINDERQ_TRUSTED_PROXIES must be 0 or more")
        if self.max_builds < 1:
            raise SettingsError("BINDERQ_MAX_BUILDS must be at least 1")
        for name in ("client_max_servers", "client_launches_per_minute", "client_max_builds",
                     "client_builds_per_hour"):
            if getattr(self, name) < 0:
                raise SettingsError(f"BINDERQ_{name.upper()} must be 0 (no limit) or more")
        _check_retention(self)
        if self.queue_poll_timeout <= 0:
            raise SettingsError("BINDERQ_QUEUE_POLL_TIMEOUT must be above 0")
        if self.max_queued < 0:
            raise SettingsError("BINDERQ_MAX_QUEUED must be 0 (no queue) or more")
        if self.launch_concurrency < 1:
            raise SettingsError("BINDERQ_LAUNCH_CONCURRENCY must be at least 1")
        if self.engine_calls < 0:
            raise SettingsError("BINDERQ_ENGINE_CALLS must be 0 (no bound) or more")
        if self.server_uid < 1:
            raise SettingsError("BINDERQ_SERVER_UID must be above 0: containers never run as root")
        if self.publish_ip in ("0.0.0.0", "::"):
            raise SettingsError("BINDERQ_PUBLISH_IP must name one address, not all of them")
        _check_hosts(self)

    def with_changes(self, **changes: Any) -> Settings:
        """A copy with some fields changed (for tests and `binderq up`)."""
        return replace(self, **changes)

    def to_env(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """Environment variables that give a child process exactly these settings."""
        env = {k: v for k, v in (os.environ if base is None else base).items()
               if not k.startswith("BINDERQ_")}
        for field in fields(self):
            value = getattr(self, field.name)
            text = str(value).lower() if isinstance(value, bool) else str(value)
            if field.name == "docker_host":
                if value:
                    env["DOCKER_HOST"] = text
                continue
            env[f"BINDERQ_{field.name.upper()}"] = text
        return env

    @functools.cached_property
    def hosts(self) -> tuple[Host, ...]:
        """The Docker hosts, sorted by name (domain/hosts.py); parsed once (the pooled
        claim asks on every launch)."""
        return parse_hosts(self.docker_hosts, default_url=self.docker_host,
                           default_max=self.max_servers)

    @property
    def many_hosts(self) -> bool:
        return len(self.hosts) > 1

    def host(self, name: str = "") -> Host:
        """The host called name (empty: the worker's own, else the first: where builds run
        and stagings find their images). KeyError for a name not configured."""
        name = name or self.worker_host
        if not name:
            return self.hosts[0]
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def public_url_base(self) -> str:
        return self.public_url.rstrip("/")

    @property
    def deployment_id(self) -> str:
        """This deployment's binderq.deployment label (domain/spec.deployment_id)."""
        from binderq.domain.spec import deployment_id

        return self.deployment or deployment_id(self.secret_key, self.redis_url)


def _check_retention(settings: Settings) -> None:
    """Build retention and log caps that would keep nothing, or lose the log's notice."""
    if settings.build_ttl < 1:
        raise SettingsError("BINDERQ_BUILD_TTL must be at least 1 second")
    if settings.build_log_line_bytes < 80:
        raise SettingsError("BINDERQ_BUILD_LOG_LINE_BYTES must be at least 80")
    if settings.build_log_bytes < settings.build_log_line_bytes:
        raise SettingsError("BINDERQ_BUILD_LOG_BYTES must be at least "
                            "BINDERQ_BUILD_LOG_LINE_BYTES")
    if settings.collect_interval <= 0:
        raise SettingsError("BINDERQ_COLLECT_INTERVAL must be above 0")


def _check_hosts(settings: Settings) -> None:
    try:
        hosts = settings.hosts
    except HostsError as error:
        raise SettingsError(f"BINDERQ_DOCKER_HOSTS: {error}") from error
    if settings.worker_host and settings.worker_host not in {host.name for host in hosts}:
        raise SettingsError(f"BINDERQ_WORKER_HOST={settings.worker_host!r} is not one of the "
                            "hosts BINDERQ_DOCKER_HOSTS names: "
                            + ", ".join(host.name for host in hosts))


def check_secret_key(secret_key: str) -> None:
    """Refuse a secret key too short to keep server tokens unguessable."""
    if len(secret_key.encode("utf-8")) < MIN_SECRET_KEY_BYTES:
        raise SettingsError(
            f"BINDERQ_SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes (it is "
            f"{len(secret_key.encode('utf-8'))}): every server's token is derived from it. "
            "Make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'")


def _parse(name: str, type_name: Any, raw: str) -> Any:
    kind = type_name if isinstance(type_name, str) else type_name.__name__
    try:
        if kind == "bool":
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
    except ValueError as error:
        raise SettingsError(f"BINDERQ_{name.upper()}={raw!r} is not a valid {kind}") from error
    return raw
