"""Loop prevention: recognising webhooks that deskwire's own SDP writes caused.

Every note, worklog and update deskwire writes is remembered in Redis for
``own_write_window`` seconds, keyed by source and request. An incoming event about that
request counts as deskwire's own when

* it carries a note whose text is one deskwire wrote, or
* every request field that changed since the last state deskwire saw is a field deskwire
  itself set to that value, or
* nothing observable changed since the last state deskwire saw, and deskwire wrote to the
  request inside the window (SDP sends "request updated" for an added note or worklog too).

The decision is made once, on the event's first run, and kept for its retries.

A human change to any other field in the same window is not masked. Rules skip own
events unless they set ``on_own_writes: true``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import redis

# Fields SDP bumps on every write; they say nothing about who made the change.
VOLATILE_FIELDS = frozenset(
    {
        "last_updated_time",
        "updated_time",
        "last_updated_by",
        "updated_by",
        "time_elapsed",
        "has_notes",
        "notes_count",
        "has_worklogs",
        "is_read",
        "unreplied_count",
        "display_id",
    }
)


def _key(source: str, request_id: str) -> str:
    return f"deskwire:own-writes:{source}:{request_id}"


def text_digest(text: str) -> str:
    """A digest of note text, compared after stripping whitespace."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:32]


def remember_write(
    client: redis.Redis,
    source: str,
    request_id: str,
    *,
    window: int,
    note_text: str | None = None,
    fields: Mapping[str, Any] | None = None,
) -> None:
    """Record a write deskwire just made to a request."""
    marker = {
        "at": time.time(),
        "note": text_digest(note_text) if note_text is not None else None,
        "fields": dict(fields or {}),
    }
    key = _key(source, request_id)
    # One round trip; no MULTI/EXEC: markers carry their time and are read by it.
    pipe = client.pipeline(transaction=False)
    pipe.rpush(key, json.dumps(marker, default=str))
    pipe.ltrim(key, -50, -1)
    pipe.expire(key, window)
    pipe.execute()


def _recent(client: redis.Redis, source: str, request_id: str, window: int) -> list[dict[str, Any]]:
    raw = client.lrange(_key(source, request_id), 0, -1)
    horizon = time.time() - window
    markers = [json.loads(item) for item in raw]
    return [m for m in markers if float(m.get("at", 0)) >= horizon]


def _lookup_value(value: Any) -> Any:
    # SDP answers lookups as {"id", "name"} where deskwire wrote {"name"}; compare names.
    if isinstance(value, dict):
        for key in ("name", "email_id", "value", "id"):
            if key in value:
                return str(value[key])
    return value


def changed_fields(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> set[str]:
    """Top-level request fields whose value differs from the previous state."""
    if not previous:
        return set()
    # Only fields the event carries: a webhook with a few fields changes no others.
    names = set(current) - VOLATILE_FIELDS
    return {n for n in names if _lookup_value(previous.get(n)) != _lookup_value(current.get(n))}


def _event_note_text(payload: Mapping[str, Any]) -> str | None:
    for key in ("note", "request_note"):
        note = payload.get(key)
        if isinstance(note, dict) and isinstance(note.get("description"), str):
            return str(note["description"])
    return None


def caused_by_deskwire(
    client: redis.Redis,
    *,
    source: str,
    request_id: str | None,
    payload: Mapping[str, Any],
    request: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    window: int,
) -> bool:
    """Whether this event is the echo of a write deskwire made (see the module doc)."""
    if not request_id:
        return False
    markers = _recent(client, source, request_id, window)
    if not markers:
        return False
    note_text = _event_note_text(payload)
    if note_text is not None:
        return any(m.get("note") == text_digest(note_text) for m in markers)
    if previous is None:
        return False  # nothing to compare with: only a matching note says "own"
    changed = changed_fields(previous, request)
    if not changed:
        return True
    written: dict[str, Any] = {}
    for marker in markers:
        written.update(marker.get("fields") or {})
    return all(
        name in written and _lookup_value(written[name]) == _lookup_value(request.get(name))
        for name in changed
    )
