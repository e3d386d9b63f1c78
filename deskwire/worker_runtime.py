"""Composition of the worker: the Celery app with its task and sweeper, and per-process parts."""

from __future__ import annotations

import logging
import os
import threading
from functools import partial
from typing import Any

import click
import httpx
import redis
from celery import Celery
from celery.signals import worker_shutting_down
from sqlalchemy.orm import Session, sessionmaker

from connections import ConnectionsError, SdpEndpoint
from connections.outbound import AddressPolicy, guarded_transport
from connections.transport import HttpsOnlyTransport, SharedTransport
from deskwire.database import make_engine, session_factory
from deskwire.live_connections import LiveConnections
from deskwire.rule_parse_cache import DiskParseStore
from deskwire.schema import require_current
from deskwire.settings import Settings
from rules.reload import RuleSource
from sdp import SdpClient
from worker.celery_app import QUEUE, create_celery
from worker.heartbeat import Heartbeat
from worker.processing import Runtime
from worker.reconcile_step import Reconciler
from worker.sweeper import Sweeper
from worker.tasks import register_tasks
from worker.would_send import PLACEHOLDER_BASE, Address

log = logging.getLogger(__name__)


def broker_url_or_exit(settings: Settings) -> str:
    """The broker URL, or a clear usage error naming the variable."""
    if settings.broker_url is None:
        raise click.UsageError(
            "DESKWIRE_BROKER_URL is not set and no `deskwire serve` is running with the var "
            f"folder {settings.var_dir.resolve()}: point DESKWIRE_BROKER_URL at Redis "
            "(redis://host:6379/0), or start `deskwire serve` (it runs a Redis of its own)"
        )
    return settings.broker_url


class ConnectionClients:
    """HTTP and SDP clients through the configured connections (``worker.steps.Clients``)."""

    def __init__(
        self, connections: LiveConnections, timeout: float, policy: AddressPolicy | None = None
    ) -> None:
        self._connections = connections
        self._timeout = timeout
        self._policy = policy or AddressPolicy()
        # One pooled transport for steps without a connection, address-checked.
        self._pool = SharedTransport(lambda: HttpsOnlyTransport(guarded_transport(self._policy)))

    def http(self, link: str | None, *, user: str | None = None) -> httpx.Client:
        """An authenticated client for ``link``, or a plain verified one."""
        if link is None:
            # No credentials: HTTPS (loopback excepted), verified, timed out, and only to
            # public addresses unless DESKWIRE_HTTP_ALLOW lists the destination.
            return httpx.Client(
                transport=self._pool.borrow(),
                timeout=httpx.Timeout(self._timeout),
                verify=True,
                trust_env=False,  # an environment proxy would bypass the address check
            )
        return self._connections().client(link, user=user)

    def _sdp_link(self, link: str | None, source: str) -> str:
        """``link``, or by default the source's own SDP connection, else ``sdp``."""
        if link is not None:
            return link
        spec = self._connections().config.connections.get(source)
        return source if spec is not None and spec.service.sdp else "sdp"

    def sdp(self, link: str | None, *, source: str) -> tuple[SdpClient, str]:
        """The SDP client of ``link``; by default the source's own SDP connection, else ``sdp``."""
        connections = self._connections()
        link = self._sdp_link(link, source)
        endpoint = connections.sdp_endpoint(link)
        client = SdpClient(
            connections.client(link),
            endpoint.api_base,
            accept=endpoint.accept,
            onprem=endpoint.onprem,
        )
        return client, link

    def sdp_links(self) -> list[str]:
        """Link names of every declared SDP connection (Cloud or on-premises)."""
        declared = self._connections().config.connections
        return sorted(link for link, spec in declared.items() if spec.service.sdp is not None)

    def is_sdp(self, link: str) -> bool:
        """Whether ``link`` is a declared connection to SDP (Cloud or on-premises)."""
        spec = self._connections().config.connections.get(link)
        return spec is not None and spec.service.sdp is not None

    def address(self, link: str | None, *, source: str, sdp: bool) -> Address:
        """Where a call through ``link`` goes, from the configuration alone: no token is
        read or fetched, so a declared but unconnected connection resolves too."""
        if sdp:
            link = self._sdp_link(link, source)
        if link is None:
            return Address(None)
        connections = self._connections()
        spec = connections.config.connections.get(link)
        if spec is None:
            what = "sdp connection" if sdp else f"connection {link!r}"
            base = PLACEHOLDER_BASE + ("/api/v3" if sdp else "")
            return Address(link, base, missing=f"<no {what} configured>")
        names = spec.service.secret_params
        try:
            secrets = connections.known_secrets(link)
        except ConnectionsError:  # an unreadable store: nothing of it can reach the record
            secrets = frozenset()
        base, accept, onprem = spec.base_url or "", None, False
        if spec.service.sdp:
            try:
                endpoint: SdpEndpoint | None = connections.sdp_endpoint(link)
            except ConnectionsError:
                endpoint = None
            # Cloud with neither a base URL nor a token yet gives a relative ``/app/…``.
            if endpoint is None or not httpx.URL(endpoint.api_base).is_absolute_url:
                base = ""
            else:
                base, accept, onprem = endpoint.api_base, endpoint.accept, endpoint.onprem
        if not base:
            return Address(
                link,
                PLACEHOLDER_BASE + ("/api/v3" if spec.service.sdp else ""),
                accept=accept,
                onprem=onprem,
                missing=f"<connection {link!r} has no base URL configured>",
                secrets=secrets,
                secret_params=names,
            )
        return Address(link, base, accept, onprem, None, secrets, names)


class _PerProcess:
    """Builds the runtime once per process (after the fork), never in the parent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._runtime: Runtime | None = None

    def __call__(self) -> Runtime:
        with self._lock:
            if self._runtime is None or self._pid != os.getpid():
                self._runtime = build_runtime(self._settings)
                self._pid = os.getpid()
            return self._runtime


def build_runtime(settings: Settings) -> Runtime:
    """Database, rules, connections and Redis for one worker process."""
    broker = broker_url_or_exit(settings)
    sessions = session_factory(
        make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    )
    client = redis.Redis.from_url(broker)
    connections = LiveConnections(settings, sessions, client)
    # No connection check here: connections.yml may gain a connection later without a
    # restart; a step naming an unknown one fails naming it, and `rules check` reports it.
    rules = RuleSource(
        settings.rules_dir,
        interval=settings.reload_interval,
        store=DiskParseStore(settings.var_dir / "cache" / "rules"),
    )
    clients = ConnectionClients(
        connections, settings.http_timeout, AddressPolicy.from_entries(settings.http_allow)
    )
    return Runtime(settings, sessions, rules, clients, client)


def sdp_access(settings: Settings, sessions: sessionmaker[Session]) -> ConnectionClients:
    """The connections reconciliation reads SDP through (built in the worker's main process)."""
    client = redis.Redis.from_url(broker_url_or_exit(settings))
    return ConnectionClients(LiveConnections(settings, sessions, client), settings.http_timeout)


def build_worker_app(settings: Settings) -> Celery:
    """The Celery app of a worker: task registered, sweeper added, schema checked."""
    broker = broker_url_or_exit(settings)
    engine = make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    require_current(engine)  # raises SchemaError saying what to run
    app = create_celery(settings, broker)
    app.conf.deskwire_settings = settings
    app.conf.deskwire_sessions = session_factory(engine)
    app.steps["worker"].add(Sweeper)
    app.steps["worker"].add(Heartbeat)
    app.steps["worker"].add(Reconciler)
    app.conf.deskwire_sdp_access = partial(sdp_access, settings, app.conf.deskwire_sessions)
    engine.dispose()  # the sweeper reconnects lazily; no connection crosses the fork
    register_tasks(app, _PerProcess(settings))
    return app


def run_worker(app: Celery, settings: Settings, *, concurrency: int, name: str) -> int:
    """Run a worker until it stops; the exit code a supervisor should see.

    0 only when an operator asked it to stop (SIGTERM, SIGINT, SIGQUIT). Any other end
    (an unrecoverable error, a remote shutdown) is non-zero even when Celery says 0, so
    ``deskwire serve``, systemd's ``Restart=on-failure`` and the compose file restart it.
    """
    asked: list[str] = []

    def on_shutting_down(sig: Any = None, **_: Any) -> None:
        asked.append(str(sig))

    worker_shutting_down.connect(on_shutting_down, weak=False)
    try:
        code = app.start(
            [
                # JSON logs: no start-up banner on stdout, so every line is a JSON object.
                *(["--quiet"] if settings.log_format == "json" else []),
                "worker",
                f"--loglevel={settings.log_level}",
                f"--concurrency={concurrency}",
                f"--hostname={name}",
                f"--queues={QUEUE}",
                # Event heartbeats stay on: without them Flower shows live workers as offline.
            ]
        )
    finally:
        worker_shutting_down.disconnect(on_shutting_down)
    # Celery may end with a message instead of a number (a remote shutdown does).
    code = code if isinstance(code, int) else (1 if code else 0)
    if asked:
        return code
    log.error("the worker stopped without being asked to (exit code %s); exiting with 1", code)
    return code or 1
