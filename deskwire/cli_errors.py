"""How the CLI reports what the composition root and the database refuse: exit codes.

Library and composition code raise domain errors; only the commands turn them into click
errors: a setting that must be given is a usage error (exit 2), anything else a plain
error (exit 1). The messages are the errors' own (they say what to set or run).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from connections import ConnectionsError
from deskwire.compose import BrokerNotSetError, CompositionError, process_settings
from deskwire.schema import SchemaError
from deskwire.settings import Settings, SettingsError

__all__ = ["cli_errors", "settings_or_exit"]


def settings_or_exit(
    *, serving: bool = False, recorded_broker: bool = True, **overrides: Any
) -> Settings:
    """:func:`deskwire.compose.process_settings`, or exit 2 listing every bad variable."""
    try:
        return process_settings(serving=serving, recorded_broker=recorded_broker, **overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn the composition root's, the schema's and the connections' errors into exits."""
    try:
        yield
    except BrokerNotSetError as exc:
        raise click.UsageError(str(exc)) from None
    except (CompositionError, SchemaError, ConnectionsError) as exc:
        raise click.ClickException(str(exc)) from None
