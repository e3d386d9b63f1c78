"""Alembic's environment: run the migrations on the connection deskwire hands over.

``deskwire db upgrade`` (and ``serve`` for the embedded SQLite) pass an open connection
in ``config.attributes["connection"]``; the ``alembic`` command of a developer passes
none, and the database of ``DESKWIRE_DATABASE_URL`` is used.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import connections.store  # noqa: F401 - registers the token tables on Base
import deskwire.tables  # noqa: F401 - registers the event tables on Base
from deskwire.database import Base, make_engine
from deskwire.settings import load_settings


def run_migrations(connection: Connection) -> None:
    """Run the pending revisions; SQLite gets batch mode (it cannot ALTER most things)."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    """Entry of alembic's ``env.py`` protocol."""
    given = context.config.attributes.get("connection")
    if given is not None:
        run_migrations(given)
        return
    engine = make_engine(load_settings().database_url)
    try:
        with engine.connect() as connection:
            run_migrations(connection)
            connection.commit()
    finally:
        engine.dispose()


main()
