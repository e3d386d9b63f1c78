"""The composition root: the one module where settings become the parts a process runs with.

The CLI commands, the web app (:mod:`deskwire.web_server`), the worker
(:mod:`deskwire.worker_runtime`) and ``serve`` build their parts here: the database engine
and sessions, Redis clients, the Celery app and the enqueue API, the connections facade
(one-shot or reloading), the rule source and the worker's SDP/HTTP clients. Library
packages take these parts as arguments and never read settings to build one themselves.

Nothing here raises a click exception: a part that settings do not allow raises a
:class:`CompositionError` saying what to set; the CLI maps it to its exit codes
(:mod:`deskwire.cli_errors`), and the web process never sees click at all.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from flask import Flask
from pydantic import SecretStr
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from connections import Connections, ConnectionsConfig, load_config
from connections.errors import UsageUnknownError
from connections.outbound import AddressPolicy
from deskwire.broker_file import recorded_broker_url
from deskwire.connection_clients import ConnectionClients
from deskwire.database import make_engine, session_factory
from deskwire.devsecrets import dev_secret
from deskwire.live_connections import LiveConnections
from deskwire.log_context import ContextFilter, JsonFormatter
from deskwire.metrics_store import MetricsStore
from deskwire.rule_parse_cache import DiskParseStore
from deskwire.schema import require_current
from deskwire.settings import Settings, load_settings
from rules import RuleLoadError
from rules.reload import RuleSource
from webhooks.app import create_app
from webhooks.context import EventQueue
from worker.celery_app import create_celery
from worker.enqueue import Enqueuer
from worker.processing import Runtime
from worker.redis_transport import ReusedClientAMQP

log = logging.getLogger(__name__)


class CompositionError(Exception):
    """The settings do not allow building a part; the message says what to set."""


class BrokerNotSetError(CompositionError):
    """No broker URL: neither ``DESKWIRE_BROKER_URL`` nor a running ``deskwire serve``."""


class SecretKeyMissingError(CompositionError):
    """No ``DESKWIRE_SECRET_KEY`` and no development key to read stored credentials with."""


# ---- settings ------------------------------------------------------------------------------


def configure_logging(level: str, log_format: str = "text") -> None:
    """One log format for every process: text lines, or one JSON object per line.

    Either way each record carries the event, rule and step ids the worker bound
    (:mod:`deskwire.log_context`); the JSON lines show them as fields.
    """
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)  # warnings become JSON lines too, not raw stderr text
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")
        )
    handler.addFilter(ContextFilter())
    logging.basicConfig(level=level, handlers=[handler])
    # Alembic says "Context impl SQLiteImpl" on every schema check; commands say what matters.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def process_settings(
    *, serving: bool = False, recorded_broker: bool = True, **overrides: Any
) -> Settings:
    """This process's settings, logging configured, development secrets filled in.

    ``serving`` (serve, web, worker) creates missing development secrets, with a warning;
    other commands only read the ones that exist, silently. With ``recorded_broker`` an
    unset ``DESKWIRE_BROKER_URL`` is taken from a running ``serve`` (``var/broker-url``).
    Raises :class:`deskwire.settings.SettingsError` listing every bad variable.
    """
    settings = load_settings(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    if recorded_broker:
        settings = with_recorded_broker(settings)
    return with_dev_secrets(settings, create=serving)


def with_recorded_broker(settings: Settings) -> Settings:
    """Use the embedded Redis of a running ``serve`` when ``DESKWIRE_BROKER_URL`` is unset."""
    if settings.broker_url is not None:
        return settings
    url = recorded_broker_url(settings.var_dir)
    return settings if url is None else settings.model_copy(update={"broker_url": url})


def with_dev_secrets(settings: Settings, *, create: bool) -> Settings:
    """Fill an unset secret key, webhook token and admin password from ``var/``."""
    updates: dict[str, Any] = {}
    if not settings.secret_key:
        value = dev_secret(settings.var_dir, "secret.key", "DESKWIRE_SECRET_KEY", create=create)
        if value is not None:
            updates["secret_key"] = [SecretStr(value)]
    if not settings.webhook_tokens:
        value = dev_secret(
            settings.var_dir, "webhook-token", "DESKWIRE_WEBHOOK_TOKENS", create=create
        )
        if value is not None:
            updates["webhook_tokens"] = [SecretStr(value)]
    if settings.admin_password is None:
        value = dev_secret(
            settings.var_dir, "admin-password", "DESKWIRE_ADMIN_PASSWORD", create=create
        )
        if value is not None:
            updates["admin_password"] = SecretStr(value)
    return settings.model_copy(update=updates) if updates else settings


def secret_environment(settings: Settings) -> dict[str, str]:
    """The secret settings as environment variables, for child processes."""
    return {
        "DESKWIRE_SECRET_KEY": ",".join(k.get_secret_value() for k in settings.secret_key),
        "DESKWIRE_WEBHOOK_TOKENS": ",".join(t.get_secret_value() for t in settings.webhook_tokens),
        **(
            {"DESKWIRE_ADMIN_PASSWORD": settings.admin_password.get_secret_value()}
            if settings.admin_password is not None
            else {}
        ),
    }


def secret_keys(settings: Settings) -> list[str]:
    """The keys stored credentials are encrypted with, newest first.

    Falls back to the quick start's key in ``var/`` (made by ``deskwire serve``).
    """
    keys = [key.get_secret_value() for key in settings.secret_key if key.get_secret_value()]
    if keys:
        return keys
    key = dev_secret(settings.var_dir, "secret.key", "DESKWIRE_SECRET_KEY", create=False)
    if key is None:
        raise SecretKeyMissingError(
            "DESKWIRE_SECRET_KEY is not set and there is no development key at "
            f"{(settings.var_dir / 'secret.key').resolve()}: set DESKWIRE_SECRET_KEY to the "
            "key your web and worker processes use"
        )
    return [key]


# ---- database and broker -------------------------------------------------------------------


def database_engine(settings: Settings) -> Engine:
    """The engine of the configured database (one per process; dispose before a fork)."""
    return make_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)


def database_sessions(settings: Settings) -> sessionmaker[Session]:
    """Sessions on a new engine of the configured database."""
    return session_factory(database_engine(settings))


def broker_url(settings: Settings) -> str:
    """The broker URL; :class:`BrokerNotSetError` says what to set when there is none."""
    if settings.broker_url is None:
        raise BrokerNotSetError(
            "DESKWIRE_BROKER_URL is not set and no `deskwire serve` is running with the var "
            f"folder {settings.var_dir.resolve()}: point DESKWIRE_BROKER_URL at Redis "
            "(redis://host:6379/0), or start `deskwire serve` (it runs a Redis of its own)"
        )
    return settings.broker_url


def redis_client(url: str | None, *, timeout: float | None = None) -> redis.Redis:
    """A Redis client (it connects lazily); ``timeout`` bounds connecting and each reply.

    Without a URL, a client that fails when used: for commands that need Redis on some
    paths only, and say so there.
    """
    if url is None:
        return redis.Redis(unix_socket_path="/nonexistent/deskwire-no-broker.sock")
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


def celery_app(settings: Settings) -> Celery:
    """The configured Celery app on the broker (tasks are registered by the worker).

    Its Redis channels reuse one client for the commands they send (acks, task events for
    Flower, publishes), as the web's do: see :mod:`worker.redis_transport`.
    """
    return create_celery(settings, broker_url(settings), amqp=ReusedClientAMQP)


def event_queue(settings: Settings) -> Enqueuer:
    """The worker's enqueue API: how the web process and the CLI queue stored events."""
    return Enqueuer(settings, broker_url(settings))


def metrics_store(settings: Settings) -> MetricsStore | None:
    """The shared counters in Redis; None without a broker (nothing is counted then)."""
    if settings.broker_url is None:
        return None
    return MetricsStore(redis_client(settings.broker_url, timeout=5))


# ---- connections and rules -----------------------------------------------------------------


def connections_config(path: Path) -> ConnectionsConfig:
    """The connections file at ``path``; its ``${ENV}`` references read this process's environment.

    Raises :class:`~connections.ConnectionsConfigError` listing every problem.
    """
    return load_config(path, dict(os.environ))


def connections_facade(
    settings: Settings,
    sessions: sessionmaker[Session],
    client: redis.Redis,
    *,
    config: ConnectionsConfig | None = None,
    keys: list[str] | None = None,
) -> Connections:
    """A :class:`~connections.Connections` over the configured file (or ``config``)."""
    return Connections(
        config if config is not None else connections_config(settings.connections_file),
        sessions,
        client,
        keys if keys is not None else [key.get_secret_value() for key in settings.secret_key],
        timeout=settings.http_timeout,
        public_url=settings.public_url,
    )


def live_connections(
    settings: Settings, sessions: sessionmaker[Session], client: redis.Redis
) -> LiveConnections:
    """The facade of a long-running process, rebuilt when the connections file changes."""
    return LiveConnections(
        settings.connections_file,
        lambda: connections_facade(settings, sessions, client),
        interval=settings.reload_interval,
    )


def rule_source(settings: Settings) -> RuleSource:
    """The rules folder, reloaded on change; parses are kept under ``var/cache/rules``.

    No connection check: connections.yml may gain a connection later without a restart; a
    step naming an unknown one fails naming it, and ``rules check`` reports it.
    """
    return RuleSource(
        settings.rules_dir,
        interval=settings.reload_interval,
        store=DiskParseStore(settings.var_dir / "cache" / "rules"),
    )


def connection_users(rules: RuleSource) -> dict[str, list[str]]:
    """Link name → ids of the rules in force whose steps name it (``with: {connection: …}``).

    While no valid rules are loaded, which connections they use cannot be known:
    :class:`~connections.errors.UsageUnknownError` says so (a delete is refused).
    """
    if not rules.directory.is_dir():
        return {}
    try:
        rule_set = rules.current()
    except RuleLoadError as exc:
        raise UsageUnknownError(
            f"the rules in {rules.directory} have {len(exc.errors)} error(s), so which rules "
            "use a connection cannot be told; fix them first (deskwire rules check)"
        ) from None
    return {link: list(ids) for link, ids in rule_set.connections_used().items()}


# ---- the worker ----------------------------------------------------------------------------


def build_runtime(settings: Settings) -> Runtime:
    """Database, rules, connections, clients and Redis for one worker process."""
    client = redis_client(broker_url(settings))
    sessions = database_sessions(settings)
    connections = live_connections(settings, sessions, client)
    clients = ConnectionClients(
        connections, settings.http_timeout, AddressPolicy.from_entries(settings.http_allow)
    )
    return Runtime(settings, sessions, rule_source(settings), clients, client)


def sdp_access(settings: Settings, sessions: sessionmaker[Session]) -> ConnectionClients:
    """The connections reconciliation reads SDP through (built in the worker's main process)."""
    client = redis_client(broker_url(settings))
    return ConnectionClients(live_connections(settings, sessions, client), settings.http_timeout)


# ---- the web process -----------------------------------------------------------------------


@dataclass(frozen=True)
class WebParts:
    """What one web process runs with: built once per process, after gunicorn's fork."""

    sessions: sessionmaker[Session]
    queue: EventQueue
    metrics: MetricsStore | None
    rules: RuleSource
    redis: redis.Redis
    connections: LiveConnections


def web_parts(settings: Settings, *, queue: EventQueue | None = None) -> WebParts:
    """The parts of the web process; the database is checked to be at the current schema.

    ``queue`` replaces the worker's enqueue API (tests that run no worker pass their own).
    Raises :class:`BrokerNotSetError` without a broker, and
    :class:`deskwire.schema.SchemaError` saying what to run for an outdated database.
    """
    client = redis_client(broker_url(settings))
    engine = database_engine(settings)
    require_current(engine)
    sessions = session_factory(engine)
    return WebParts(
        sessions=sessions,
        queue=queue if queue is not None else event_queue(settings),
        metrics=metrics_store(settings),
        rules=rule_source(settings),
        redis=client,
        connections=live_connections(settings, sessions, client),
    )


def web_app(
    settings: Settings,
    parts: WebParts | None = None,
    *,
    queue: EventQueue | None = None,
    checks: Mapping[str, Callable[[], str]] | None = None,
) -> Flask:
    """The webhook endpoint and the health pages on ``parts`` (default: made from settings).

    The admin pages are added by :func:`deskwire.web_server.build_web_app`; ``queue`` as
    for :func:`web_parts`.
    """
    if parts is None:
        parts = web_parts(settings, queue=queue)
    return create_app(
        settings,
        sessions=parts.sessions,
        queue=parts.queue,
        metrics=parts.metrics,
        checks=checks,
    )
