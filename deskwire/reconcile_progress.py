"""Where reconciliation of each source stands: stored, so that a restart resumes there."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from deskwire.database import transaction
from deskwire.tables import ReconcileProgress


@dataclass(frozen=True)
class Progress:
    """One source's watermark and its last run (see :class:`deskwire.tables.ReconcileProgress`)."""

    source: str
    connection: str
    watermark_ms: int  # changes up to this last_updated_time (epoch ms) have been read
    last_run_at: datetime
    last_calls: int
    last_read: int
    last_created: int
    last_complete: bool  # False: the run stopped at its call bound or on an error
    last_error: str | None
    total_created: int


def _record(row: ReconcileProgress) -> Progress:
    return Progress(
        row.source, row.connection, int(row.watermark_ms), row.last_run_at, row.last_calls,
        row.last_read, row.last_created, bool(row.last_complete), row.last_error,
        row.total_created,
    )  # fmt: skip


def load_progress(sessions: sessionmaker[Session], source: str) -> Progress | None:
    """The stored progress of ``source``; ``None`` before its first run."""
    with sessions() as session:
        row = session.get(ReconcileProgress, source)
        return _record(row) if row is not None else None


def all_progress(sessions: sessionmaker[Session]) -> list[Progress]:
    """The progress of every source reconciled so far, by source."""
    with sessions() as session:
        rows = session.scalars(select(ReconcileProgress).order_by(ReconcileProgress.source))
        return [_record(row) for row in rows]


def save_progress(sessions: sessionmaker[Session], progress: Progress) -> None:
    """Store ``progress`` as the source's current one."""
    with transaction(sessions) as session:
        session.merge(
            ReconcileProgress(
                source=progress.source,
                connection=progress.connection,
                watermark_ms=progress.watermark_ms,
                last_run_at=progress.last_run_at,
                last_calls=progress.last_calls,
                last_read=progress.last_read,
                last_created=progress.last_created,
                last_complete=progress.last_complete,
                last_error=progress.last_error,
                total_created=progress.total_created,
            )
        )
