"""Whether an event repeats an earlier one: the decision and its reason for the run history.

* The sender gave an event id: ingest already answered repeats ``200 duplicate``.
* No event id: the event is a duplicate only of an earlier event with the same source,
  event type, body and request state (request id + ``last_updated_time``), claimed
  atomically in the database (:mod:`deskwire.state_claims`).
* No event id and no way to know the state (no request id, or no ``last_updated_time`` in
  the body and none readable from SDP): the event runs, and the reason says so.
* Webhooks and reconciled events (made by reconciliation from SDP's list of changed
  requests) of the same change (request id + ``last_updated_time``) run once: the first
  one processed claims the change (:mod:`deskwire.change_claims`). A reconciled event
  never runs after any event of its change; a webhook does not run after a reconciled
  event of its change with its event type (a webhook of another type still runs: the
  rules of its type did not).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from deskwire.change_claims import Change, claim_change
from deskwire.state_claims import Holder, RequestState, claim_state
from deskwire.tables import Event


@dataclass(frozen=True)
class Identity:
    """The decision: ``duplicate_of`` is set when the event repeats an earlier one."""

    note: str
    duplicate_of: Holder | None = None


def body_digest(payload: Mapping[str, Any]) -> str:
    """A digest of the body as stored: two deliveries with the same body have the same one."""
    canonical = json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


SENDERS_ID = "event id from the sender: repeats inside the dedupe window are refused at ingest"


def decide_identity(
    sessions: sessionmaker[Session],
    event: Event,
    *,
    request_id: str | None,
    last_updated_time: str | None,
    origin: str,
    window: int,
) -> Identity:
    """Decide whether ``event`` repeats an earlier event (see the module docstring).

    ``origin`` says where ``last_updated_time`` came from ("the body", "SDP"), or, when it
    is ``None``, why there is none.
    """
    identity = _by_state(sessions, event, _Seen(request_id, last_updated_time, origin), window)
    if identity.duplicate_of is not None or not request_id or last_updated_time is None:
        return identity
    change = Change(event.source, request_id, last_updated_time)
    holder = claim_change(
        sessions, change, event_pk=event.id, event_type=event.event_type,
        reconciled=bool(event.reconciled), window=window,
    )  # fmt: skip
    if holder is None:
        return identity
    described = f"request {request_id} at last_updated_time {last_updated_time}"
    kind = "reconciled event" if holder.reconciled else "event"
    if event.reconciled:
        return Identity(
            f"duplicate of {kind} {holder.pk} ({holder.event_id}): reconciled, but that event "
            f"already stood for the change ({described})",
            Holder(holder.pk, holder.event_id),
        )
    if holder.reconciled and holder.event_type == event.event_type:
        return Identity(
            f"duplicate of reconciled event {holder.pk} ({holder.event_id}): this webhook came "
            f"after reconciliation ran the same change ({described}) as {holder.event_type}",
            Holder(holder.pk, holder.event_id),
        )
    return identity


@dataclass(frozen=True)
class _Seen:
    """What the worker knows of the request's state (see :func:`decide_identity`)."""

    request_id: str | None
    last_updated_time: str | None
    origin: str


def _by_state(sessions: sessionmaker[Session], event: Event, seen: _Seen, window: int) -> Identity:
    """The decision among webhooks: the sender's id, or the claim of the request state."""
    request_id, last_updated_time, origin = seen.request_id, seen.last_updated_time, seen.origin
    if event.reconciled:
        # Made by deskwire from SDP's list: only the claim of the change decides.
        return Identity(
            f"reconciled: SDP listed request {request_id} as changed at last_updated_time "
            f"{last_updated_time} and no webhook of that change had been processed"
        )
    if event.explicit_id:
        return Identity(SENDERS_ID)
    if not request_id:
        return Identity(
            "no event id and no request id: every delivery runs (nothing tells a repeat apart)"
        )
    if last_updated_time is None:
        return Identity(f"no duplicate check, the event runs: {origin}")
    digest = body_digest(event.payload)
    state = RequestState(event.source, event.event_type, request_id, last_updated_time, digest)
    described = (
        f"request {request_id} at last_updated_time {last_updated_time} (from {origin}), "
        f"body {digest[:12]}"
    )
    holder = claim_state(sessions, state, event.id, window=window)
    if holder is not None:
        return Identity(
            f"duplicate of event {holder.pk} ({holder.event_id}): same source, event type, "
            f"body and state, {described}",
            holder,
        )
    return Identity(f"new state: {described}")
