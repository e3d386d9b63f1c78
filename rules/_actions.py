"""The action catalogue, as data: every `uses:` name with its `with` arguments.

The loader checks each step's `with` against this catalogue (unknown and missing
arguments are load errors); docs/rules.md documents every entry (a test keeps them in step).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from rules._schema import (
    Boolean,
    Choice,
    Integer,
    Kind,
    Number,
    OneOrList,
    Templated,
    TemplateTree,
    Text,
)

LINK_NAME = r"[a-z][a-z0-9_]{0,49}"


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


_CATALOGUE: tuple[ActionSpec, ...] = (
    ActionSpec(
        "sdp.add_note",
        "Add a note to an SDP request.",
        MappingProxyType(
            {
                "request_id": REQUEST_ID,
                "description": _text("Note text (HTML allowed by SDP).", required=True),
                "show_to_requester": _value(
                    Boolean(), "Show the note to the requester (default false)."
                ),
                "notify_technician": _value(Boolean(), "Notify the technician (default false)."),
                "connection": CONNECTION,
            }
        ),
        '- uses: sdp.add_note\n  with:\n      request_id: "{{ request.id }}"\n'
        '      description: "Paged on-call"\n      show_to_requester: false',
    ),
    ActionSpec(
        "sdp.update_request",
        "Update fields of an SDP request.",
        MappingProxyType(
            {
                "request_id": REQUEST_ID,
                "fields": _tree(
                    "Mapping of request fields to set, as in SDP's API v3 request object.",
                    required=True,
                    mapping=True,
                ),
                "connection": CONNECTION,
            }
        ),
        '- uses: sdp.update_request\n  with:\n      request_id: "{{ request.id }}"\n'
        "      fields: {priority: {name: High}}",
    ),
    ActionSpec(
        "sdp.add_worklog",
        "Add a worklog (time spent) to an SDP request.",
        MappingProxyType(
            {
                "request_id": REQUEST_ID,
                "description": _text("What was done.", required=True),
                "hours": _value(Integer(), "Hours spent."),
                "minutes": _value(Integer(), "Minutes spent."),
                "owner": _text("Technician (name or email) who owns the worklog."),
                "connection": CONNECTION,
            }
        ),
        '- uses: sdp.add_worklog\n  with:\n      request_id: "{{ request.id }}"\n'
        "      description: Automated triage\n      minutes: 5",
    ),
    ActionSpec(
        "sdp.get_request",
        "Fetch the full SDP request; its JSON is the step's output (steps.<id>.json).",
        MappingProxyType({"request_id": REQUEST_ID, "connection": CONNECTION}),
        '- id: full\n  uses: sdp.get_request\n  with:\n      request_id: "{{ request.id }}"',
    ),
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
)

ACTIONS: Mapping[str, ActionSpec] = MappingProxyType({spec.name: spec for spec in _CATALOGUE})
