"""Accepting and finishing events: the state machine both processes share.

queued → running → done | failed; the claim (queued → running) is :mod:`deskwire.event_claim`.
``failed`` is the dead-letter list: ``replay`` moves an event back to queued, and steps that
succeeded before are not repeated.
"""

from __future__ import annotations

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter

from deskwire.database import engine_of, transaction
from deskwire.tables import DedupeKey, Event, EventStatus, RequestChange, StateClaim, utcnow

UNFINISHED = (EventStatus.QUEUED, EventStatus.RUNNING)


@dataclass(frozen=True)
class Accepted:
    """What ingest tells the sender: the stored event and whether it was a repeat."""

    pk: int
    event_id: str
    duplicate: bool


def dedupe_key(source: str, event_id: str) -> str:
    """A fixed-length key for (source, event id)."""
    return hashlib.sha256(f"{source}\0{event_id}".encode()).hexdigest()


@dataclass(frozen=True)
class NewEvent:
    """An event as ingest parsed it, about to be stored."""

    source: str
    event_id: str | None  # None: the sender gave none (see accept_event)
    event_type: str
    request_id: str | None
    payload: dict[str, Any]
    dedupe_window: int
    # Made by reconciliation (never with a sender's id): see worker.reconciler.
    reconciled: bool = False


def accept_event(
    sessions: sessionmaker[Session],
    *,
    source: str,
    event_id: str | None,
    event_type: str,
    request_id: str | None,
    payload: dict[str, Any],
    dedupe_window: int,
) -> Accepted:
    """Store an event durably, or report it as a duplicate inside the dedupe window.

    ``event_id`` is the sender's id. Without one the event is always stored, under an id
    of deskwire's own: an id-only body is byte-identical for every change of its request, so
    only the worker, knowing the request's state, can tell a repeat from a new change.
    """
    item = NewEvent(source, event_id, event_type, request_id, payload, dedupe_window)
    return accept_events(sessions, [item])[0]


def accept_events(sessions: sessionmaker[Session], items: Sequence[NewEvent]) -> list[Accepted]:
    """Store events (or report duplicates) in one transaction: one commit for all of them.

    The commit is what makes an event durable, and on a real disk it costs an fsync; a web
    process that has several webhooks in hand stores them together (see
    ``webhooks.group_commit``). If another process stored one of the same ids meanwhile,
    the transaction is rolled back and each event is stored on its own.

    A pooled connection the server dropped (a database restart) fails its first
    statement and the pool is invalidated: the events are stored once more on a new
    connection rather than refused (pooled connections in steady use are not pinged
    first, see :mod:`deskwire.database`).
    """
    try:
        return _accept_events(sessions, items)
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        return _accept_events(sessions, items)


def _accept_events(sessions: sessionmaker[Session], items: Sequence[NewEvent]) -> list[Accepted]:
    # Core statements on one connection: this is the hot path of ingest, and the ORM's
    # unit of work costs more than the statements themselves.
    engine = engine_of(sessions)
    now = utcnow()
    if not items:
        return []
    # Most ids are new: insert without reading the keys first. A stored key (a repeat, one
    # past its window, or one a concurrent request just stored) fails the key insert: the
    # insert is undone and the keys are read below.
    try:
        if engine.dialect.name == "postgresql":
            # One statement, committed on its own (a single statement is atomic): one round
            # trip in all, where BEGIN, two inserts and COMMIT were four.
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return _store_many(conn, items, now, read_keys=False)
        with engine.begin() as conn:
            return _store_many(conn, items, now, read_keys=False)
    except IntegrityError:
        pass
    if len(items) > 1:
        try:
            with engine.begin() as conn:
                return _store_many(conn, items, now)
        except IntegrityError:
            pass  # a concurrent process stored one of the ids first: one by one below
    return [_accept_one(engine, item, now) for item in items]


def _accept_one(engine: Engine, item: NewEvent, now: datetime) -> Accepted:
    if item.event_id is None:  # nothing to collide with
        with engine.begin() as conn:
            return _store_many(conn, [item], now)[0]
    for _ in range(3):
        try:
            with engine.begin() as conn:
                return _store_many(conn, [item], now)[0]
        except IntegrityError:
            continue  # a concurrent request stored the same id first: read it as a duplicate
    with engine.connect() as conn:
        key = dedupe_key(item.source, item.event_id)
        existing = conn.scalar(select(DedupeKey.event_pk).where(DedupeKey.key == key))
    if existing is None:  # pragma: no cover - needs three lost races in a row
        raise RuntimeError(f"could not store event {item.event_id!r}")
    return Accepted(existing, item.event_id, duplicate=True)


# Built once: building statements per webhook cost more than running them.
_KEYS: BindParameter[list[str]] = bindparam("keys", expanding=True)
_READ_KEYS = select(
    DedupeKey.key, DedupeKey.event_pk, (DedupeKey.expires_at < bindparam("now")).label("past")
).where(DedupeKey.key.in_(_KEYS))
_DROP_KEYS = delete(DedupeKey).where(DedupeKey.key.in_(_KEYS))
_DROP_LAPSED_KEYS = _DROP_KEYS.where(DedupeKey.expires_at < bindparam("now"))
_INSERT_EVENTS = insert(Event).returning(Event.id, sort_by_parameter_order=True)
_INSERT_KEYS = insert(DedupeKey)

# PostgreSQL: the events and their keys in one statement whose text does not depend on the
# number of events (the batch travels as one JSON array, decoded by the server), so psycopg
# prepares it once per connection and the server plans it once; one JSON text is also much
# cheaper to send than a VALUES row, or an array, per column. A key that is taken fails the
# whole statement. The new rows come back unordered: they are matched to the batch by
# (source, event id), which is unique within it (an id repeated in the batch is stored once).
_INSERT_EVENTS_AND_KEYS_PG = """\
WITH batch AS (
    SELECT * FROM json_to_recordset(%(batch)s::json) AS b(
        n integer, event_id varchar, source varchar, event_type varchar,
        request_id varchar, payload text, explicit_id boolean, reconciled boolean,
        key varchar, expires_at timestamptz)
), new AS (
    INSERT INTO events (event_id, source, event_type, request_id, payload, status,
                        explicit_id, reconciled, attempts, received_at)
    SELECT event_id, source, event_type, request_id, payload::json, %(status)s, explicit_id,
           reconciled, 0, %(now)s
    FROM batch ORDER BY n
    RETURNING id, source, event_id
), keys AS (
    INSERT INTO dedupe_keys (key, event_pk, expires_at)
    SELECT batch.key, new.id, batch.expires_at
    FROM batch JOIN new ON new.source = batch.source AND new.event_id = batch.event_id
    WHERE batch.key IS NOT NULL
    RETURNING 1
)
SELECT id, source, event_id, (SELECT count(*) FROM keys) FROM new
"""


@dataclass
class _Batch:
    """What a batch stores: its new rows, and per item either the index of its new row or
    the key of the event it repeats."""

    rows: list[dict[str, Any]]
    plan: list[int | str]
    first: dict[str, int]  # key → index of the new row that holds it
    expiry: dict[str, datetime]


def _plan(
    items: Sequence[NewEvent], keys: list[str | None], known: dict[str, int], now: datetime
) -> _Batch:
    batch = _Batch([], [], {}, {})
    for item, key in zip(items, keys, strict=True):
        if key is not None and (key in known or key in batch.first):
            batch.plan.append(key)
            continue
        if key is not None:
            batch.first[key] = len(batch.rows)
            batch.expiry[key] = now + timedelta(seconds=item.dedupe_window)
        batch.plan.append(len(batch.rows))
        batch.rows.append(
            {
                "event_id": item.event_id or f"auto-{uuid.uuid4().hex}",
                "source": item.source,
                "event_type": item.event_type,
                "request_id": item.request_id,
                "payload": item.payload,
                "status": EventStatus.QUEUED,
                "explicit_id": item.event_id is not None,
                "reconciled": item.reconciled,
                "attempts": 0,
                "received_at": now,
            }
        )
    return batch


def _insert(conn: Connection, batch: _Batch, now: datetime) -> list[int]:
    """Insert the batch's new events and their keys; their pks, in the batch's order."""
    if not batch.rows:
        return []
    if conn.dialect.name == "postgresql":
        return _insert_pg(conn, batch, now)
    pks = [int(pk) for pk in conn.execute(_INSERT_EVENTS, batch.rows).scalars()]
    if batch.first:
        conn.execute(
            _INSERT_KEYS,
            [
                {"key": key, "event_pk": pks[index], "expires_at": batch.expiry[key]}
                for key, index in batch.first.items()
            ],
        )
    return pks


def _insert_pg(conn: Connection, batch: _Batch, now: datetime) -> list[int]:
    rows = batch.rows
    key_of = {index: key for key, index in batch.first.items()}
    sent = [
        {
            "n": index,
            "event_id": row["event_id"],
            "source": row["source"],
            "event_type": row["event_type"],
            "request_id": row["request_id"],
            # As JSON text inside the batch's JSON: the server only decodes it as json,
            # which keeps a \u0000 in it (decoding it as part of the batch would refuse it).
            "payload": json.dumps(row["payload"]),
            "explicit_id": row["explicit_id"],
            "reconciled": row["reconciled"],
            "key": key_of.get(index),
            "expires_at": batch.expiry[key_of[index]].isoformat() if index in key_of else None,
        }
        for index, row in enumerate(rows)
    ]
    found = conn.exec_driver_sql(
        _INSERT_EVENTS_AND_KEYS_PG,
        {"batch": json.dumps(sent), "status": str(EventStatus.QUEUED), "now": now},
    ).all()
    pk_of = {(source, event_id): int(pk) for pk, source, event_id, _keys in found}
    if len(pk_of) != len(rows) or found[0][3] != len(key_of):
        # Cannot happen with unique (source, event id) per batch; refuse rather than store
        # events without their keys.
        raise RuntimeError(f"stored {len(pk_of)} of {len(rows)} events, keys do not match")
    return [pk_of[row["source"], row["event_id"]] for row in rows]


def _store_many(
    conn: Connection, items: Sequence[NewEvent], now: datetime, *, read_keys: bool = True
) -> list[Accepted]:
    """Store events (or find their repeats) in ``conn``'s transaction, in a fixed number of
    statements whatever their number (each is a round trip to PostgreSQL): read the keys,
    then insert the new events and their keys (one statement on PostgreSQL, two on SQLite).
    A key past its window no longer blocks the same id; a repeat inside the group is a
    duplicate of its first occurrence. An event without a sender's id is stored under one
    of deskwire's (``auto-…``), never a duplicate.

    ``read_keys=False`` skips the read: any stored key then fails the key insert with an
    ``IntegrityError`` (the caller rolls back and stores with the read)."""
    keys = [dedupe_key(i.source, i.event_id) if i.event_id is not None else None for i in items]
    wanted = sorted({key for key in keys if key is not None})
    known: dict[str, int] = {}
    if wanted and read_keys:
        if conn.dialect.name == "sqlite":
            # A write first takes SQLite's write lock before the read: a commit by another
            # process between a read and the first write would fail this transaction.
            conn.execute(_DROP_LAPSED_KEYS, {"keys": wanted, "now": now})
        lapsed: list[str] = []
        for found, pk, past in conn.execute(_READ_KEYS, {"keys": wanted, "now": now}):
            if past:
                lapsed.append(str(found))
            else:
                known[str(found)] = int(pk)
        if lapsed:
            conn.execute(_DROP_KEYS, {"keys": lapsed})
    batch = _plan(items, keys, known, now)
    pks = _insert(conn, batch, now)
    accepted: list[Accepted] = []
    for item, step in zip(items, batch.plan, strict=True):
        if isinstance(step, str):  # a repeat: of an event stored before, or earlier in the group
            pk = known[step] if step in known else pks[batch.first[step]]
            accepted.append(Accepted(pk, str(item.event_id), duplicate=True))
        else:
            accepted.append(Accepted(pks[step], batch.rows[step]["event_id"], duplicate=False))
    return accepted


def mark_dispatched(sessions: sessionmaker[Session], pk: int) -> None:
    """Record that the event's task reached the broker."""
    with transaction(sessions) as session:
        session.execute(update(Event).where(Event.id == pk).values(dispatched_at=utcnow()))


def mark_dispatched_many(sessions: sessionmaker[Session], pks: Sequence[int]) -> None:
    """Record, in one statement, that these new events' tasks reached the broker.

    Only events no run has touched yet (and not marked meanwhile): a worker that already
    took one, or cleared its mark because a requeue failed, knows better than this
    late, batched mark.
    """
    if not pks:
        return
    with engine_of(sessions).begin() as conn:
        conn.execute(
            update(Event)
            .where(Event.id.in_(pks), Event.attempts == 0, Event.dispatched_at.is_(None))
            .values(dispatched_at=utcnow())
        )


def finish(
    sessions: sessionmaker[Session],
    pk: int,
    status: EventStatus,
    *,
    error: str | None = None,
    ruleset_version: str | None = None,
    not_before: datetime | None = None,
    also: Sequence[Callable[[Connection], None]] = (),
) -> None:
    """Record the end of a run: done, failed (dead letter) or back to queued for a retry.

    A retry is due at ``not_before``; it counts as dispatched from now (its message is
    sent right after), so the sweeper leaves it alone until it is due and overdue.
    ``also``: writes made in the same transaction (the run's history not yet stored), so
    the end of a run costs one commit.
    """
    values: dict[str, Any] = {"status": status, "error": error, "lease_until": None}
    if status == EventStatus.QUEUED:
        values["not_before"] = not_before
        values["dispatched_at"] = utcnow()
    if ruleset_version is not None:
        values["ruleset_version"] = ruleset_version
    if status in (EventStatus.DONE, EventStatus.FAILED, EventStatus.DUPLICATE):
        values["finished_at"] = utcnow()
    with engine_of(sessions).begin() as connection:
        for write in also:
            write(connection)
        connection.execute(_finish_statement(tuple(values)), {"pk": pk, **_bound(values)})


def _bound(values: dict[str, Any]) -> dict[str, Any]:
    return {f"new_{name}": value for name, value in values.items()}


@functools.cache
def _finish_statement(columns: tuple[str, ...]) -> Update:
    """The UPDATE of :func:`finish` for these columns, built once (bound parameters)."""
    return (
        update(Event)
        .where(Event.id == bindparam("pk"))
        .values(
            {name: bindparam(f"new_{name}", type_=Event.__table__.c[name].type) for name in columns}
        )
    )


def replay(sessions: sessionmaker[Session], pk: int) -> bool:
    """Put a failed (or done) event back in the queue; succeeded steps stay done."""
    with transaction(sessions) as session:
        result = session.execute(
            update(Event)
            .where(Event.id == pk, Event.status.in_((EventStatus.FAILED, EventStatus.DONE)))
            # A replay gets the full number of tries again.
            .values(
                status=EventStatus.QUEUED,
                dispatched_at=None,
                finished_at=None,
                error=None,
                attempts=0,
                not_before=None,
                lease_until=None,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def count_by_status(sessions: sessionmaker[Session]) -> dict[str, int]:
    """How many events are in each status (for metrics and the CLI)."""
    with sessions() as session:
        rows = session.execute(select(Event.status, func.count()).group_by(Event.status))
        counts = {status.value: 0 for status in EventStatus}
        counts.update({str(status): int(n) for status, n in rows})
        return counts


def purge_expired_keys(sessions: sessionmaker[Session]) -> int:
    """Delete dedupe keys and request-state and change claims past their window; returns
    how many."""
    now = utcnow()
    with transaction(sessions) as session:
        keys = session.execute(delete(DedupeKey).where(DedupeKey.expires_at < now))
        claims = session.execute(delete(StateClaim).where(StateClaim.expires_at < now))
        changes = session.execute(delete(RequestChange).where(RequestChange.expires_at < now))
        counts = [r.rowcount for r in (keys, claims, changes)]  # type: ignore[attr-defined]
        return sum(int(n) for n in counts)
