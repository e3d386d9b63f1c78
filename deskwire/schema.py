"""The database schema: alembic migrations create and upgrade it; processes check it.

Tables are never created from the models at start-up: ``deskwire db upgrade`` (and
``deskwire serve`` for its embedded SQLite) runs the migrations in ``deskwire/migrations``,
and the web process, the worker and the CLI refuse a database whose schema is not the one
they were written for, saying what to run.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, inspect, make_url, text

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
# The revision of the schema that deskwire created with create_all before migrations
# existed; a database with tables but no version is stamped with it, then upgraded.
BASELINE = "0001_baseline"
# Key of the PostgreSQL advisory lock that lets one upgrade run at a time.
_PG_LOCK_KEY = 0x6465736B77697265  # "deskwire"
UPGRADE_HINT = "run `deskwire db upgrade` (with the same DESKWIRE_DATABASE_URL)"


class SchemaError(RuntimeError):
    """The database's schema does not fit this deskwire; the message says what to do."""


def display_url(url: str) -> str:
    """The database URL with its password hidden and a SQLite path made absolute."""
    parsed = make_url(url)
    path = sqlite_path(url)
    if path is not None:
        parsed = parsed.set(database=str(path))
    return parsed.render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (absolute), or None for other databases and ``:memory:``."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(str(parsed.database)).expanduser().resolve()


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision this deskwire knows (the schema its code is written for)."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    if len(heads) != 1:
        raise SchemaError(f"the migrations have {len(heads)} heads ({', '.join(heads)}), not 1")
    return heads[0]


@dataclass(frozen=True)
class SchemaState:
    """Where a database stands against this deskwire's migrations."""

    url: str
    current: str | None
    head: str
    has_tables: bool
    known: bool
    exists: bool = True

    @property
    def up_to_date(self) -> bool:
        """True when processes may run on this database."""
        return self.current == self.head

    def problem(self) -> str | None:
        """What is wrong and what to run, or None when the schema is current."""
        where = f"the database {self.url}"
        if self.up_to_date:
            return None
        if not self.exists:
            return f"there is no database at {self.url}: {UPGRADE_HINT} to create it"
        if self.current is None and not self.has_tables:
            return f"{where} has no deskwire tables yet: {UPGRADE_HINT} to create them"
        if self.current is None:
            return (
                f"{where} was created before deskwire had migrations: {UPGRADE_HINT} "
                "(back it up first)"
            )
        if not self.known:
            return (
                f"{where} is at schema revision {self.current}, which this deskwire does not "
                f"know (it needs {self.head}): a newer deskwire upgraded it; run that version"
            )
        return (
            f"{where} is at schema revision {self.current}, this deskwire needs {self.head}: "
            f"{UPGRADE_HINT} (back it up first)"
        )


def _state(connection: Connection, url: str) -> SchemaState:
    current = MigrationContext.configure(connection).get_current_revision()
    script = ScriptDirectory.from_config(_config())
    try:
        known = current is None or script.get_revision(current) is not None
    except CommandError:
        known = False
    return SchemaState(
        url=display_url(url),
        current=current,
        head=head_revision(),
        has_tables=inspect(connection).has_table("events"),
        known=known,
    )


def schema_state(engine: Engine) -> SchemaState:
    """Read the database's revision and compare it with this deskwire's head.

    A SQLite file that does not exist is reported, not created.
    """
    url = str(engine.url)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        return SchemaState(display_url(url), None, head_revision(), False, True, exists=False)
    with engine.connect() as connection:
        return _state(connection, str(engine.url))


def require_current(engine: Engine) -> None:
    """Raise :class:`SchemaError` unless the database is at this deskwire's head revision."""
    problem = schema_state(engine).problem()
    if problem is not None:
        raise SchemaError(problem)


@contextmanager
def _one_upgrade_at_a_time(engine: Engine, connection: Connection) -> Iterator[None]:
    """Processes that upgrade at once (serve, db upgrade) take turns on PostgreSQL (an
    advisory lock); on SQLite :func:`_sqlite_turn` already holds the turn.

    Held around the whole transaction, so the next one reads what this one committed.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_LOCK_KEY})
        connection.commit()
        try:
            yield
        finally:
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_LOCK_KEY})
            connection.commit()
        return
    yield  # SQLite: the whole upgrade already holds its turn (_sqlite_turn)


@contextmanager
def _sqlite_turn(engine: Engine) -> Iterator[None]:
    """SQLite upgraders take turns from before they connect: a connection's first PRAGMAs
    (WAL mode on a new file) race with another upgrader's, not only its migrations."""
    path = sqlite_path(str(engine.url))
    if path is None:
        yield
        return
    with path.with_name(path.name + ".upgrade-lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str]:
    """Upgrade the database to ``revision``; return the revisions before and after."""
    path = sqlite_path(str(engine.url))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    # Exit order matters: commit, then let the next upgrader in, then foreign keys back on.
    with (
        _sqlite_turn(engine),
        engine.connect() as connection,
        _foreign_keys_off_on_sqlite(connection),
        _one_upgrade_at_a_time(engine, connection),
        connection.begin(),
    ):
        state = _state(connection, str(engine.url))
        if not state.known:
            raise SchemaError(state.problem() or "unknown schema revision")
        config = _config(connection)
        if state.current is None and state.has_tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    assert after is not None
    return state.current, after


@contextmanager
def _foreign_keys_off_on_sqlite(connection: Connection) -> Iterator[None]:
    """SQLite changes a table in batch mode by copying it, dropping the old one and renaming
    the copy; with foreign keys on, that drop would cascade-delete the rows that refer to
    it (an event's run history). So they are off while migrations run, and checked after.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    # PRAGMA foreign_keys is ignored inside a transaction: set it between transactions.
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        yield
        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        connection.commit()
        if broken:
            raise SchemaError(f"the upgrade left {len(broken)} row(s) with broken references")
    finally:
        connection.rollback()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()
