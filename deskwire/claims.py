"""Claiming a row that stands for something seen once (a request state, a request change).

Both claims work the same way: drop a lapsed claim of the same thing, read the live one,
and insert ours when there is none; the table's unique constraint settles two events
claiming at once (the loser reads the winner's on its next turn).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from deskwire.database import transaction
from deskwire.tables import utcnow

__all__ = ["claim_once"]


class _Holder(Protocol):
    @property
    def pk(self) -> int: ...


H = TypeVar("H", bound=_Holder)


def claim_once(
    sessions: sessionmaker[Session],
    table: Any,
    same: ColumnElement[bool],
    holder: Callable[[Session], H | None],
    row: Callable[[], object],
    *,
    event_pk: int,
    what: str,
) -> H | None:
    """Claim for ``event_pk`` what ``same`` selects in ``table``: ``None`` when the claim is
    this event's (new, or found again by a repeated run), else the live claim's holder.

    ``holder`` reads the live claim; ``row`` builds ours (with its expiry).
    """
    for _ in range(3):
        try:
            with transaction(sessions) as session:
                # A write first: on SQLite it takes the write lock before the read below.
                session.execute(delete(table).where(same, table.expires_at < utcnow()))
                found = holder(session)
                if found is not None:
                    return None if found.pk == event_pk else found
                session.add(row())
                return None
        except IntegrityError:
            continue  # another event claimed the same first: read it on the next turn
    with sessions() as session:
        found = holder(session)
    if found is None:  # pragma: no cover - needs three lost races in a row
        raise RuntimeError(f"could not claim {what}")
    return None if found.pk == event_pk else found
