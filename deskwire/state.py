"""Where a command's state lives, said out loud: the database and the ``var`` folder.

Commands that read state print both (on stderr) and refuse a database that does not
exist or whose schema does not fit, instead of silently creating a fresh, empty one in
whatever folder they were started from.
"""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import Engine

from deskwire.compose import database_engine
from deskwire.schema import SchemaState, display_url, schema_state
from deskwire.settings import Settings


def describe_state(settings: Settings) -> str:
    """``database …, var folder …`` with the folder resolved and the password hidden."""
    return f"database {display_url(settings.database_url)}, var folder {settings.var_dir.resolve()}"


def announce_state(settings: Settings) -> None:
    """Tell the user (on stderr) which database and var folder this command uses."""
    click.secho(f"deskwire: using {describe_state(settings)}", err=True, dim=True)


def _where_hint(settings: Settings, state: SchemaState) -> str:
    if state.exists or "database_url" in settings.model_fields_set:
        return ""
    return (
        "\nDESKWIRE_DATABASE_URL is unset, so the default ./var/deskwire.db is read relative "
        f"to this folder ({Path.cwd()}). Run the command in the folder where `deskwire serve` "
        "runs, or set DESKWIRE_DATABASE_URL to the database your deskwire uses."
    )


def open_database(settings: Settings, *, announce: bool = True) -> Engine:
    """The engine of an existing database at the current schema, or a clear CLI error."""
    if announce:
        announce_state(settings)
    engine = database_engine(settings)
    state = schema_state(engine)
    problem = state.problem()
    if problem is not None:
        engine.dispose()
        raise click.ClickException(problem + _where_hint(settings, state))
    return engine
