"""``deskwire web``: the Flask app served by gunicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from deskwire.compose import broker_url, connection_users, web_app, web_parts
from deskwire.settings import Settings
from rules import RuleLoadError
from rules.reload import RuleSource
from webhooks.pages import register_connection_pages, register_runs_pages


def _errors(count: int) -> str:
    return f"{count} error" + ("" if count == 1 else "s")


def rules_check(source: RuleSource) -> str:
    """Health of the rules: the version in force, and a rejected edit if there is one."""
    try:
        version = source.current().version
    except RuleLoadError as exc:
        return (
            f"error: no valid rules loaded ({_errors(len(exc.errors))}; run deskwire rules check)"
        )
    if source.last_error is not None:
        count = _errors(len(source.last_error.errors))
        return f"ok; version {version}; last edit rejected ({count}; run deskwire rules check)"
    return f"ok; version {version}"


def build_web_app(settings: Settings) -> Flask:
    """The web app with its rules and connections (both hot-reloaded) composed in.

    The parts come from :func:`deskwire.compose.web_parts`; the connection pages learn
    which rules use a connection from the same cached rule source as ``/healthz``.
    """
    parts = web_parts(settings)
    app = web_app(settings, parts, checks={"rules": lambda: rules_check(parts.rules)})
    register_connection_pages(
        app,
        connections=parts.connections,
        settings=settings,
        used_by=lambda: connection_users(parts.rules),
        redis_client=parts.redis,
    )
    register_runs_pages(app, settings)
    return app


# Chosen with bench/slow_clients.py: threads keep idle or slow sockets from blocking ingest
# (the old 2 sync workers stalled for 60 s behind two half-sent headers).
WORKER_CLASS = "deskwire.web_worker.SlowClientSafeWorker"
THREADS = 8


class _Gunicorn(BaseApplication):  # type: ignore[misc]
    def __init__(self, factory: Callable[[], Flask], options: dict[str, Any]) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        # Called in each gunicorn worker after the fork, so no connection is shared.
        return self.factory()


def gunicorn_options(
    *,
    host: str,
    port: int,
    workers: int,
    threads: int,
    log_level: str = "info",
    worker_class: str = WORKER_CLASS,
) -> dict[str, Any]:
    """The gunicorn settings of the web process."""
    return {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": worker_class,
        "threads": threads,
        # The main loop of a threaded worker beats even while clients are slow: a missed
        # heartbeat means a stuck process, not a slow socket.
        "timeout": 60,
        "keepalive": 5,  # idle and kept-alive connections are closed after this
        "worker_connections": 1000,  # open connections per worker process
        "graceful_timeout": 20,
        "accesslog": "-",
        # Path without the query string: ?token= and OAuth callback codes stay out of logs.
        "access_log_format": '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss',
        "loglevel": log_level.lower(),
        "preload_app": False,
        # gunicorn's control socket is one path per user: two web processes on a host (or
        # tests) would take it from each other. deskwire does not use it.
        "control_socket_disable": True,
    }


def run_web(
    settings: Settings,
    *,
    host: str,
    port: int,
    workers: int,
    threads: int = THREADS,
    worker_class: str = WORKER_CLASS,
) -> None:
    """Serve the app until stopped: ``workers`` processes of ``threads`` request threads.

    Threads let webhooks that arrive together share one commit (``webhooks.group_commit``)
    and let one process wait on the disk and the broker for several requests at once; the
    worker class keeps idle and slow clients from holding any of them.
    """
    broker_url(settings)  # raises BrokerNotSetError before anything starts
    # Fail fast (bad database, bad settings) before forking; then close what that opened,
    # so no database connection crosses the fork (a SQLite connection inherited by a
    # worker drops the other connections' locks and loses WAL writes).
    checked = build_web_app(settings)
    engine = checked.extensions["deskwire"].sessions.kw["bind"]
    engine.dispose()
    options = gunicorn_options(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        log_level=settings.log_level,
        worker_class=worker_class,
    )
    _Gunicorn(lambda: build_web_app(settings), options).run()
