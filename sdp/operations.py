"""Every SDP API v3 call deskwire makes, as data: one table of method, path and wrapper key.

docs/sdp.md shows this table (a test keeps the two in step). Where public clients disagree
on a path, ``path`` is the one ManageEngine documents and ``alternates`` are tried, in
order, only when SDP answers that the URL does not exist (HTTP 404 or code 4007).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class Operation:
    """One call: ``path`` is relative to ``…/api/v3/`` and may hold ``{id}``."""

    name: str
    method: str
    path: str
    # Keys of ``input_data`` the call sends its object under, tried in order (Cloud).
    wrappers: tuple[str, ...]
    # Keys of the reply that hold the result (single entities singular, lists plural).
    results: tuple[str, ...]
    alternates: tuple[str, ...] = ()
    # Wrapper order on on-premises builds, when it differs from Cloud's.
    onprem_wrappers: tuple[str, ...] | None = None

    def wrappers_for(self, *, onprem: bool) -> tuple[str, ...]:
        """The wrapper keys to try, in order, on this kind of instance."""
        if onprem and self.onprem_wrappers is not None:
            return self.onprem_wrappers
        return self.wrappers


_TABLE: tuple[Operation, ...] = (
    Operation("get_request", "GET", "requests/{id}", (), ("request",)),
    Operation("search_requests", "GET", "requests", ("list_info",), ("requests",)),
    Operation("update_request", "PUT", "requests/{id}", ("request",), ("request",)),
    Operation("request_metainfo", "GET", "requests/_metainfo", (), ("metainfo",)),
    Operation(
        "add_note",
        "POST",
        "requests/{id}/notes",
        ("request_note", "note"),
        ("request_note", "note"),
        onprem_wrappers=("note", "request_note"),
    ),
    Operation(
        "list_notes", "GET", "requests/{id}/notes", ("list_info",), ("notes", "request_notes")
    ),
    Operation(
        "add_worklog",
        "POST",
        "requests/{id}/worklogs",
        ("worklog", "request_worklog"),
        ("worklog", "request_worklog"),
    ),
    Operation("add_task", "POST", "requests/{id}/tasks", ("task",), ("task",)),
    Operation(
        "add_resolution", "POST", "requests/{id}/resolutions", ("resolution",), ("resolution",)
    ),
    Operation(
        "close_request",
        "PUT",
        "requests/{id}/close",
        ("request",),
        ("request",),
        alternates=("requests/{id}/_close",),
    ),
    Operation(
        "assign_request",
        "PUT",
        "requests/{id}/assign",
        ("request",),
        ("request",),
        alternates=("requests/{id}/_assign",),
    ),
    Operation(
        "pickup_request",
        "PUT",
        "requests/{id}/pickup",
        (),
        ("request",),
        alternates=("requests/{id}/_pickup",),
    ),
    Operation(
        "link_requests",
        "POST",
        "requests/{id}/link_requests",
        ("link_requests",),
        ("link_requests", "request"),
    ),
)

OPERATIONS: Mapping[str, Operation] = MappingProxyType({op.name: op for op in _TABLE})
