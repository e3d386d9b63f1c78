"""``deskwire web``: the Flask app served by gunicorn."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from gunicorn.app.base import BaseApplication

from deskwire.settings import Settings
from deskwire.worker_runtime import broker_url_or_exit
from webhooks.app import create_app


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


def run_web(settings: Settings, *, host: str, port: int, workers: int) -> None:
    """Serve the app until stopped."""
    broker_url_or_exit(settings)
    create_app(settings)  # fail fast (bad database, bad settings) before forking
    options = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": "-",
        "loglevel": settings.log_level.lower(),
        "preload_app": False,
    }
    _Gunicorn(lambda: create_app(settings), options).run()
