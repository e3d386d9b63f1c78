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


def settings_or_exit(**overrides: Any) -> Settings:
    """Settings with development secrets filled in, or exit 2 with every bad variable."""
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level)
    return with_dev_secrets(settings)


def with_dev_secrets(settings: Settings) -> Settings:
    """Fill an unset secret key and webhook token from ``var/`` (with a warning)."""
    updates: dict[str, Any] = {}
    if not settings.secret_key:
        value = dev_secret(settings.var_dir, "secret.key", "DESKWIRE_SECRET_KEY")
        updates["secret_key"] = [SecretStr(value)]
    if not settings.webhook_tokens:
        value = dev_secret(settings.var_dir, "webhook-token", "DESKWIRE_WEBHOOK_TOKENS")
        updates["webhook_tokens"] = [SecretStr(value)]
    if settings.admin_password is None:
        value = dev_secret(settings.var_dir, "admin-password", "DESKWIRE_ADMIN_PASSWORD")
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
