"""The action catalogue, as data: every `uses:` name with its `with` arguments.

The loader checks each step's `with` against this catalogue (unknown and missing
arguments are load errors); docs/rules.md documents every entry (a test keeps them in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from configfiles import (
    LINK_NAME,
    Boolean,
    Choice,
    Custom,
    Integer,
    Kind,
    Node,
    Number,
    OneOrList,
    Path,
    Report,
    Text,
)
from rules._conditions import read_condition
from rules._operators import OperandError, duration
from rules._schema import Templated, TemplateTree


@dataclass(frozen=True, slots=True)
class Arg:
    """One `with` argument: its kind (a template is accepted wherever a value is) and doc."""

    kind: Kind
    required: bool
    doc: str


@dataclass(frozen=True, slots=True)
class ActionSpec:
    """A catalogue entry: what the action does, its arguments and an example step."""

    name: str
    description: str
    args: Mapping[str, Arg]
    example: str
    # At least one of these optional arguments must be given (checked by the loader).
    one_of: tuple[str, ...] = ()

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(name for name, arg in self.args.items() if arg.required)

    @property
    def optional(self) -> tuple[str, ...]:
        return tuple(name for name, arg in self.args.items() if not arg.required)


def _text(doc: str, required: bool = False) -> Arg:
    return Arg(Templated(Text()), required, doc)


def _value(kind: Kind, doc: str, required: bool = False) -> Arg:
    return Arg(Templated(kind), required, doc)


def _tree(doc: str, required: bool = False, mapping: bool = False) -> Arg:
    return Arg(TemplateTree(mapping_only=mapping), required, doc)


CONNECTION = Arg(
    Text(
        pattern=LINK_NAME,
        hint="a connection link name is lowercase letters, digits and _, written literally "
        "(not a template)",
    ),
    False,
    "Link name of the connection to call through (a literal name, not a template).",
)
REQUEST_ID = _text('Id of the SDP request, usually "{{ request.id }}".', required=True)
OWNER = r"[^@\s]+@[^@\s]+\.[^@\s]+|[0-9]+"


@dataclass(frozen=True)
class RequestId(Kind):
    """An SDP request id: a whole number, or text of digits."""

    expected: str = "a request id (digits)"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        value = node.value if node.is_scalar else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return str(value)
        if isinstance(value, str) and value.strip().isdigit():
            return value.strip()
        return self._wrong(node, path, report)


MAX_WAIT = 365 * 86400  # seconds: a wait longer than a year is a typo, not a plan


@dataclass(frozen=True)
class Duration(Kind):
    """A duration such as ``90s``, ``30m``, ``2h`` or ``1d``, as whole seconds (more than 0)."""

    expected: str = "a duration such as 90s, 30m, 2h or 1d"

    def check(self, node: Node, path: Path, report: Report[Any]) -> Any:
        if not node.is_scalar or not isinstance(node.value, str):
            return self._wrong(node, path, report)
        try:
            seconds = int(duration(node.value))
        except OperandError as exc:
            return report.error(node, path, str(exc))
        if not 0 < seconds <= MAX_WAIT:
            return report.error(
                node, path, f"{node.value!r} is out of range: more than 0s, at most 365d"
            )
        return seconds


WAIT = ActionSpec(
    "wait",
    "Pause the rule: the steps after it run when the duration has passed (stored in the "
    "database, so it survives restarts). With `until`, the request is read again from SDP "
    "when the wait ends and the rest of the rule runs only if the condition still holds. "
    "See [Waiting](#waiting).",
    MappingProxyType(
        {
            "duration": Arg(Duration(), True, "How long to wait: 90s, 30m, 2h or 1d (up to 365d)."),
            "until": Arg(
                Custom(read_condition, expected="a condition"),
                False,
                "A condition, written like `when`, checked against the request re-read from "
                "SDP when the wait ends; if it no longer holds, the rest of the rule is skipped.",
            ),
        }
    ),
    "- uses: wait\n  with:\n      duration: 30m\n      until: {request.technician: {empty: true}}",
)

_HTTP_ARGS: dict[str, Arg] = {
    "url": _text("Absolute URL, or a path relative to the connection's base URL.", True),
    "connection": CONNECTION,
    "headers": _tree("Extra request headers (mapping of name to value).", mapping=True),
    "params": _tree("Query parameters (mapping).", mapping=True),
    "json": _tree("JSON body (any value; a single {{ expr }} keeps its type)."),
    "data": _tree("Form body (mapping) or raw text."),
    "timeout": _value(Number(), "Seconds before giving up (default: the worker's http_timeout)."),
    "expect_status": _value(
        OneOrList(Integer()), "Status code(s) that count as success (default: any 2xx)."
    ),
}


def _http(method: str) -> ActionSpec:
    upper = method.upper()
    body = "" if method in ("get", "delete") else '\n      json: {summary: "{{ request.subject }}"}'
    return ActionSpec(
        f"http.{method}",
        f"Send an HTTP {upper} request, optionally through a connection (which adds its auth). "
        "Outputs: steps.<id>.status, .json, .text, .headers.",
        MappingProxyType(_HTTP_ARGS),
        f"- id: call\n  uses: http.{method}\n  with:\n      connection: acme_crm\n"
        f"      url: /api/tickets/{{{{ request.id }}}}{body}",
    )


def _sdp(
    name: str,
    description: str,
    args: dict[str, Arg],
    example: str,
    *,
    one_of: tuple[str, ...] = (),
    request: bool = True,
) -> ActionSpec:
    """An ``sdp.*`` action: the request id first (when it acts on one), the connection last."""
    every = {"request_id": REQUEST_ID} if request else {}
    every.update(args)
    every["connection"] = CONNECTION
    return ActionSpec(name, description, MappingProxyType(every), example, one_of)


_SDP_ACTIONS: tuple[ActionSpec, ...] = (
    _sdp(
        "sdp.add_note",
        "Add a note to an SDP request. Output json: the created note (its id in .json.id).",
        {
            "description": _text("Note text (HTML allowed by SDP).", required=True),
            "show_to_requester": _value(
                Boolean(), "Show the note to the requester (default false)."
            ),
            "notify_technician": _value(Boolean(), "Notify the technician (default false)."),
            "mark_first_response": _value(
                Boolean(), "Count the note as the first response (default false)."
            ),
            "add_to_linked_requests": _value(
                Boolean(), "Add the note to the linked requests too (default false)."
            ),
        },
        '- uses: sdp.add_note\n  with:\n      request_id: "{{ request.id }}"\n'
        '      description: "Paged on-call"\n      show_to_requester: false',
    ),
    _sdp(
        "sdp.update_request",
        "Update fields of an SDP request. Lookups (status, priority, group, …) by name or id, "
        "users (requester, technician) by email, id or name, custom fields by their label. "
        "Output json: the updated request.",
        {
            "fields": _tree(
                "Request fields to set: `priority: High` (a name), `priority: 3` (an id) or "
                "SDP's own `{name: …}`/`{id: …}`; `technician: ann@example.com`; "
                "`due_by_time: <epoch ms>`.",
                mapping=True,
            ),
            "custom_fields": _tree(
                "Custom fields by the label shown in SDP (`Asset Tag: X`) or by key "
                "(`udf_char1: X`); labels are looked up in SDP's field metadata.",
                mapping=True,
            ),
            "update_reason": _text("Reason for the update, where SDP asks for one."),
        },
        '- uses: sdp.update_request\n  with:\n      request_id: "{{ request.id }}"\n'
        "      fields: {priority: High, technician: ann@example.com}\n"
        '      custom_fields: {"Asset Tag": "{{ request.subject }}"}',
        one_of=("fields", "custom_fields"),
    ),
    _sdp(
        "sdp.add_worklog",
        "Add a worklog (time spent) to an SDP request. Output json: the created worklog.",
        {
            "description": _text("What was done.", required=True),
            "hours": _value(Integer(minimum=0), "Hours spent."),
            "minutes": _value(Integer(minimum=0), "Minutes spent."),
            "owner": _value(
                Text(
                    pattern=OWNER,
                    hint="an owner is an email address or a numeric user id, not a name",
                ),
                "Technician who owns the worklog: email address or numeric user id.",
            ),
            "worklog_type": _text("Worklog type by name."),
            "start_time": _value(Integer(minimum=0), "Start, epoch milliseconds."),
            "end_time": _value(Integer(minimum=0), "End, epoch milliseconds."),
        },
        '- uses: sdp.add_worklog\n  with:\n      request_id: "{{ request.id }}"\n'
        "      description: Automated triage\n      minutes: 5\n      owner: ann@example.com",
    ),
    _sdp(
        "sdp.add_task",
        "Add a task to an SDP request. Output json: the created task.",
        {
            "title": _text("Task title.", required=True),
            "description": _text("Task description."),
            "owner": _text("Technician: email address, numeric id or name."),
            "group": _tree("Support group: name, id or {name: …}."),
            "status": _tree("Task status: name, id or {name: …}."),
            "priority": _tree("Task priority: name, id or {name: …}."),
            "scheduled_start_time": _value(Integer(minimum=0), "Start, epoch milliseconds."),
            "scheduled_end_time": _value(Integer(minimum=0), "End, epoch milliseconds."),
        },
        '- uses: sdp.add_task\n  with:\n      request_id: "{{ request.id }}"\n'
        "      title: Replace the toner\n      group: Hardware",
    ),
    _sdp(
        "sdp.add_resolution",
        "Set the resolution of an SDP request. Output json: the resolution.",
        {
            "content": _text("Resolution text (HTML allowed by SDP).", required=True),
            "add_to_linked_requests": _value(
                Boolean(), "Add it to the linked requests too (default false)."
            ),
        },
        '- uses: sdp.add_resolution\n  with:\n      request_id: "{{ request.id }}"\n'
        "      content: Restarted the mail service",
    ),
    _sdp(
        "sdp.close_request",
        "Close an SDP request. Output json: SDP's reply about the request.",
        {
            "closure_code": _tree("Closure code: name, id or {name: …}."),
            "comments": _text("Closure comments."),
            "requester_ack_resolution": _value(
                Boolean(), "Whether the requester acknowledged the resolution."
            ),
            "requester_ack_comments": _text("The requester's acknowledgement comments."),
        },
        '- uses: sdp.close_request\n  with:\n      request_id: "{{ request.id }}"\n'
        "      closure_code: Success\n      comments: Closed by deskwire",
    ),
    _sdp(
        "sdp.assign_request",
        "Assign an SDP request to a support group and/or a technician. Output json: the request.",
        {
            "group": _tree("Support group: name, id or {name: …}."),
            "technician": _text("Technician: email address, numeric id or name."),
        },
        '- uses: sdp.assign_request\n  with:\n      request_id: "{{ request.id }}"\n'
        "      group: Network\n      technician: ann@example.com",
        one_of=("group", "technician"),
    ),
    _sdp(
        "sdp.pickup_request",
        "Pick up an SDP request: assign it to the technician the connection acts as.",
        {},
        '- uses: sdp.pickup_request\n  with:\n      request_id: "{{ request.id }}"',
    ),
    _sdp(
        "sdp.get_request",
        "Fetch the full SDP request; its JSON is the step's output (steps.<id>.json).",
        {},
        '- id: full\n  uses: sdp.get_request\n  with:\n      request_id: "{{ request.id }}"',
    ),
    _sdp(
        "sdp.search_requests",
        "Search SDP requests. Output json: {requests: […], count: n, has_more: true|false}; "
        "pages are followed up to `limit`.",
        {
            "criteria": _tree(
                "Either {field: value} (each `is`, joined by AND; a list value means any of) "
                "or SDP's search_criteria list ({field, condition, value|values, "
                "logical_operator, children}).",
            ),
            "limit": _value(
                Integer(minimum=1, maximum=1000),
                "Most requests to return (default 100, at most 1000).",
            ),
            "sort_field": _text("Field to sort by, e.g. created_time."),
            "sort_order": _value(Choice(("asc", "desc"), what="sort order"), "asc or desc."),
        },
        "- id: open_vpn\n  uses: sdp.search_requests\n  with:\n"
        "      criteria: {status.name: Open, subject: VPN}\n      limit: 50",
        request=False,
    ),
    _sdp(
        "sdp.list_notes",
        "List the notes of an SDP request. Output json: {notes: […], count: n, has_more: …}.",
        {
            "limit": _value(
                Integer(minimum=1, maximum=1000),
                "Most notes to return (default 100, at most 1000).",
            )
        },
        '- id: notes\n  uses: sdp.list_notes\n  with:\n      request_id: "{{ request.id }}"',
    ),
    _sdp(
        "sdp.link_requests",
        "Link other requests to an SDP request.",
        {
            "linked_ids": Arg(
                OneOrList(Templated(RequestId())),
                True,
                "Id, or list of ids, of the requests to link (internal ids, not display ids).",
            ),
            "comments": _text("Why they are linked."),
        },
        '- uses: sdp.link_requests\n  with:\n      request_id: "{{ request.id }}"\n'
        '      linked_ids: ["{{ request.udf_fields.udf_long1 }}"]',
    ),
)


_CATALOGUE: tuple[ActionSpec, ...] = (
    *_SDP_ACTIONS,
    *(_http(method) for method in ("get", "post", "put", "patch", "delete")),
    ActionSpec(
        "log",
        "Write a line to the worker log (useful while building a rule).",
        MappingProxyType(
            {
                "message": _text("The text to log.", required=True),
                "level": _value(
                    Choice(("debug", "info", "warning", "error"), what="level"),
                    "debug, info (default), warning or error.",
                ),
            }
        ),
        '- uses: log\n  with:\n      message: "seen {{ request.id }}"\n      level: info',
    ),
    WAIT,
)

ACTIONS: Mapping[str, ActionSpec] = MappingProxyType({spec.name: spec for spec in _CATALOGUE})
