"""Composition of the parts from settings, for the entry points (CLI, serve, tests).

Library packages take what they need as arguments; this module is where settings become
those arguments.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click
from pydantic import SecretStr

from deskwire.broker_file import recorded_broker_url
from deskwire.devsecrets import dev_secret
from deskwire.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """One log format for every process."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic says "Context impl SQLiteImpl" on every schema check; commands say what matters.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def settings_or_exit(
    *, serving: bool = False, recorded_broker: bool = True, **overrides: Any
) -> Settings:
    """Settings with development secrets filled in, or exit 2 with every bad variable.

    ``serving`` (serve, web, worker) creates missing development secrets, with a warning;
    other commands only read the ones that exist, silently. With ``recorded_broker`` an
    unset ``DESKWIRE_BROKER_URL`` is taken from a running ``serve`` (``var/broker-url``).
    """
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level)
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
