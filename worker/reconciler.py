"""Reconciliation: the changes SDP never sent a webhook for become events, run once.

One run for one source asks SDP for requests whose ``last_updated_time`` lies between
where the last run stopped (less ``delay``, an overlap for changes SDP made visible
late) and now less ``delay`` (younger changes are left to their webhook), sorted
ascending, a page of 100 per call and at most ``max_calls`` calls. It pages by
``last_updated_time`` itself (the next call starts at the last time read, skipping the
rows of that time already read): a request changed while the run pages moves out of the
range instead of shifting unread rows past a page boundary.

Each request read becomes an event marked ``reconciled`` (``request.created`` when its
``created_time`` equals its ``last_updated_time``, else ``request.updated``), stored and
queued exactly as a webhook is. The worker decides, by the claim of the change
(:mod:`deskwire.change_claims`), whether it runs: a change whose webhook was processed is
dropped as a duplicate, and a webhook that comes after its change was reconciled is too.
Changes already claimed, or already waiting as reconciled events, are skipped here, so
overlapping runs make no new events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from connections.errors import ConnectionsError, TransientTokenError
from deskwire import event_store
from deskwire.change_claims import claimed_already
from deskwire.event_store import UNFINISHED, NewEvent
from deskwire.reconcile_progress import Progress, load_progress, save_progress
from deskwire.settings import Settings
from deskwire.tables import REQUEST_ID, Event, utcnow
from sdp import SdpClient, SdpError, SdpTransientError
from sdp.client import PAGE_SIZE
from sdp.request_shapes import epoch_ms
from worker.enqueue import EnqueueError

log = logging.getLogger(__name__)

TIME_FIELD = "last_updated_time"
# A rate limit answered without Retry-After: ManageEngine's own client waits 2–8 s and
# then calls again; reconciliation is not urgent, so it leaves SDP alone for longer.
RATE_LIMIT_PAUSE = 60.0
# Sends one stored event to the broker: (event pk, event type, request id).
Dispatch = Callable[[int, str, str], None]


@dataclass(frozen=True)
class Bounds:
    """How far a run looks and how much it may ask (from the ``DESKWIRE_RECONCILE_*``
    settings, in seconds)."""

    lookback: int
    delay: int
    max_calls: int
    dedupe_window: int

    @classmethod
    def of(cls, settings: Settings) -> Bounds:
        """The bounds the settings give."""
        return cls(
            settings.reconcile_lookback,
            settings.reconcile_delay,
            settings.reconcile_max_calls,
            settings.dedupe_window,
        )


@dataclass(frozen=True)
class RunResult:
    """What one run of one source did."""

    source: str
    calls: int
    read: int
    created: int
    complete: bool  # read everything up to now less the delay
    watermark_ms: int
    error: str | None = None
    seconds: float = 0.0  # wall time of the run
    # SDP asked to wait this long (a 429: its Retry-After, else RATE_LIMIT_PAUSE).
    retry_after: float | None = None


@dataclass(frozen=True)
class Change:
    """One request as SDP listed it: the event it becomes."""

    request_id: str
    last_updated_time: int
    event_type: str
    request: dict[str, Any]


def change_of(row: dict[str, Any]) -> Change | None:
    """The change a listed request stands for, or ``None`` for a row without a usable
    id or ``last_updated_time``."""
    request_id = str(row.get("id", "")).strip()
    lut = epoch_ms(row.get(TIME_FIELD))
    if not REQUEST_ID.match(request_id) or lut is None:
        return None
    created = epoch_ms(row.get("created_time"))
    event_type = "request.created" if created == lut else "request.updated"
    return Change(request_id, int(lut), event_type, row)


def _criteria(cursor: int, until: int) -> list[dict[str, Any]]:
    return [
        {"field": TIME_FIELD, "condition": "greater or equal", "value": str(cursor)},
        {"field": TIME_FIELD, "condition": "lesser or equal", "value": str(until),
         "logical_operator": "AND"},
    ]  # fmt: skip


def _now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def _first_time(progress: Progress | None, bounds: Bounds, now_ms: int) -> int:
    """The earliest ``last_updated_time`` this run reads."""
    if progress is None:
        start = now_ms - bounds.lookback * 1000
    elif progress.last_complete:
        start = progress.watermark_ms - bounds.delay * 1000 + 1
    else:  # the last run stopped part-way: carry on where it stopped
        start = progress.watermark_ms
    # A change older than the dedupe window may have run and lost its claim: never read it.
    floor = now_ms - bounds.dedupe_window * 1000 + bounds.delay * 1000
    if start < floor:
        log.warning(
            "reconciliation: changes before %s are older than the dedupe window and are not "
            "read (the worker was stopped for longer than DESKWIRE_DEDUPE_WINDOW)",
            datetime.fromtimestamp(floor / 1000, UTC).isoformat(timespec="seconds"),
        )
    return max(start, floor)


def reconcile_source(
    client: SdpClient,
    sessions: sessionmaker[Session],
    dispatch: Dispatch,
    *,
    source: str,
    connection: str,
    bounds: Bounds,
    now_ms: int | None = None,
    keep_alive: Callable[[], None] = lambda: None,
) -> RunResult:
    """One run for ``source`` (whose SDP is ``client``); its progress is stored as it ends.

    ``keep_alive`` is called after each SDP call (the caller's lock is extended there).
    A failing call ends the run with what was read before it; the next run carries on.
    """
    started = time.monotonic()
    now_ms = _now_ms() if now_ms is None else now_ms
    progress = load_progress(sessions, source)
    until = now_ms - bounds.delay * 1000
    cursor = _first_time(progress, bounds, now_ms)
    skip = 0  # rows at ``cursor`` already read (they come first in ascending order)
    calls = read = created = 0
    complete, error, retry_after = cursor > until, None, None
    seen: set[tuple[str, int]] = set()
    while not complete and calls < bounds.max_calls:
        try:
            rows, more = client.search_page(
                _criteria(cursor, until), start_index=skip + 1,
                sort_field=TIME_FIELD, sort_order="asc",
            )  # fmt: skip
        except SdpTransientError as exc:
            error, retry_after = str(exc), exc.retry_after
            if retry_after is None and (exc.http_status == 429 or 4015 in exc.codes):
                retry_after = RATE_LIMIT_PAUSE
            break
        except SdpError as exc:
            error = str(exc)
            break
        except TransientTokenError as exc:  # the token endpoint is down or slowing us down
            error, retry_after = str(exc), exc.retry_after
            break
        except ConnectionsError as exc:  # not connected, revoked, …: the message says which
            error = str(exc)
            break
        finally:
            calls += 1
            keep_alive()
        changes = [c for c in map(change_of, rows) if c is not None]
        # A server that ignored the range must not move the cursor backwards or too far.
        fresh = [
            c for c in changes
            if cursor <= c.last_updated_time <= until
            and (c.request_id, c.last_updated_time) not in seen
        ]  # fmt: skip
        seen.update((c.request_id, c.last_updated_time) for c in fresh)
        read += len(fresh)
        try:
            created += store_changes(sessions, dispatch, source, fresh, bounds.dedupe_window)
        except EnqueueError as exc:  # stored; the sweeper sends them
            log.warning("reconciliation of %s: broker unavailable (%s)", source, exc)
        if fresh:
            last = max(c.last_updated_time for c in fresh)
            at_last = sum(1 for c in fresh if c.last_updated_time == last)
            skip = skip + at_last if last == cursor else at_last
            cursor = last
        if not more or len(rows) < PAGE_SIZE or not fresh:
            complete = True
    # Complete: everything up to ``until`` is read. Otherwise everything before ``cursor``
    # is, and rows at ``cursor`` are read again next time (their events are skipped).
    watermark = until if complete else cursor
    total = (progress.total_created if progress else 0) + created
    save_progress(
        sessions,
        Progress(source, connection, watermark, utcnow(), calls, read, created, complete,
                 error, total),
    )  # fmt: skip
    return RunResult(source, calls, read, created, complete, watermark, error,
                     time.monotonic() - started, retry_after)  # fmt: skip


def store_changes(
    sessions: sessionmaker[Session],
    dispatch: Dispatch,
    source: str,
    changes: list[Change],
    window: int,
) -> int:
    """Store (one transaction) and queue the changes no event stands for yet; how many."""
    if not changes:
        return 0
    keys = [(c.request_id, str(c.last_updated_time)) for c in changes]
    known = claimed_already(sessions, source, keys) | _waiting(sessions, source, changes)
    new = [c for c in changes if (c.request_id, str(c.last_updated_time)) not in known]
    items = [
        NewEvent(source, None, c.event_type, c.request_id, {"request": c.request}, window,
                 reconciled=True)
        for c in new
    ]  # fmt: skip
    accepted = event_store.accept_events(sessions, items)
    sent: list[int] = []
    try:
        for stored, change in zip(accepted, new, strict=True):
            dispatch(stored.pk, change.event_type, change.request_id)
            sent.append(stored.pk)
    finally:
        event_store.mark_dispatched_many(sessions, sent)
    return len(accepted)


def _waiting(
    sessions: sessionmaker[Session], source: str, changes: list[Change]
) -> set[tuple[str, str]]:
    """Changes a reconciled event not yet processed already stands for (an earlier run)."""
    with sessions() as session:
        rows = session.execute(
            select(Event.request_id, Event.payload).where(
                Event.source == source,
                Event.reconciled.is_(True),
                Event.status.in_(UNFINISHED),
                Event.request_id.in_({c.request_id for c in changes}),
            )
        )
        waiting: set[tuple[str, str]] = set()
        for request_id, payload in rows:
            request = payload.get("request") if isinstance(payload, dict) else None
            lut = epoch_ms(request.get(TIME_FIELD)) if isinstance(request, dict) else None
            if lut is not None:
                waiting.add((str(request_id), lut))
        return waiting
