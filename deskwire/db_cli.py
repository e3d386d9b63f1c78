"""``deskwire db upgrade|current``: create and upgrade the database schema (migrations)."""

from __future__ import annotations

import click

from deskwire.cli_errors import settings_or_exit
from deskwire.compose import database_engine
from deskwire.schema import SchemaError, schema_state, upgrade
from deskwire.state import announce_state

db_group = click.Group(
    "db", help="The database schema: create or upgrade it (migrations), show its revision."
)


@db_group.command("upgrade")
@click.option(
    "--revision", default="head", show_default=True, help="Upgrade to this revision only."
)
def upgrade_command(revision: str) -> None:
    """Create the tables, or upgrade them to this deskwire's schema (back up first).

    Safe to run at any time and more than once: a database that is current is left alone,
    and upgrades that start at once take turns.
    """
    settings = settings_or_exit()
    announce_state(settings)
    engine = database_engine(settings)
    try:
        before, after = upgrade(engine, revision)
    except SchemaError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"the schema is current (revision {after})")
    else:
        click.echo(f"upgraded the schema from revision {before or '(none)'} to {after}")


@db_group.command("current")
def current_command() -> None:
    """Show the database's schema revision; exit 1 when it is not this deskwire's."""
    settings = settings_or_exit()
    announce_state(settings)
    engine = database_engine(settings)
    try:
        state = schema_state(engine)
    finally:
        engine.dispose()
    click.echo(f"revision {state.current or '(none)'}; this deskwire needs {state.head}")
    problem = state.problem()
    if problem is not None:
        raise click.ClickException(problem)
