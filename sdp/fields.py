"""Friendly rule values turned into SDP's v3 shapes: lookups, users, dates, custom fields.

Rules may write ``priority: High`` or ``technician: ann@example.com``; SDP wants
``{"name": "High"}`` and ``{"email_id": "ann@example.com"}``. A mapping is always passed
through as written, so anything SDP accepts can still be sent exactly.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Lookup fields of a request, set as {"name": …} or {"id": …} (sdp-api.md, Update).
LOOKUP_FIELDS = frozenset(
    {
        "status",
        "priority",
        "urgency",
        "impact",
        "mode",
        "level",
        "site",
        "group",
        "category",
        "subcategory",
        "item",
        "template",
        "request_type",
        "service_category",
        "closure_code",
    }
)
# User fields, set as {"email_id": …}, {"id": …} or {"name": …}.
USER_FIELDS = frozenset({"requester", "technician", "owner"})

_DIGITS = re.compile(r"\d+")


class FieldValueError(ValueError):
    """A value that cannot be sent as the field it was given for."""


def lookup(value: Any, field: str) -> dict[str, Any]:
    """A lookup value: a mapping as is, digits (number or text) as the id, text as the name."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, bool) or value is None:
        raise FieldValueError(f"{field}: expected a name, an id or a mapping, got {value!r}")
    if isinstance(value, int) or _DIGITS.fullmatch(str(value).strip()):
        return {"id": str(value).strip()}
    text = str(value).strip()
    if not text:
        raise FieldValueError(f"{field}: empty value")
    return {"name": text}


def user(value: Any, field: str, *, allow_name: bool = True) -> dict[str, Any]:
    """A user: a mapping as is, an email as ``email_id``, digits as ``id``, else the name.

    ``allow_name=False`` (worklog owners): SDP accepts only an id or an email there, and a
    name sent as ``{"id": name}`` fails with an unhelpful error, so refuse it clearly here.
    """
    if isinstance(value, Mapping):
        return dict(value)
    text = "" if value is None or isinstance(value, bool) else str(value).strip()
    if "@" in text:
        return {"email_id": text}
    if _DIGITS.fullmatch(text):
        return {"id": text}
    if text and allow_name:
        return {"name": text}
    raise FieldValueError(
        f"{field}: {text!r} is neither an email address nor a numeric user id"
        if text
        else f"{field}: empty value"
    )


def date_time(value: Any, field: str) -> Any:
    """Epoch milliseconds (number or digits) as ``{"value": ms}``; anything else as is."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"value": value}
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return {"value": int(value.strip())}
    return value


def request_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Request fields from a rule, in SDP's shapes (see the module docstring)."""
    result: dict[str, Any] = {}
    for name, value in fields.items():
        if name in LOOKUP_FIELDS:
            result[name] = lookup(value, name)
        elif name in USER_FIELDS:
            result[name] = user(value, name)
        elif name.endswith("_time"):
            result[name] = date_time(value, name)
        else:
            result[name] = value
    return result


def custom_fields(values: Mapping[str, Any], labels: Mapping[str, str]) -> dict[str, Any]:
    """``udf_fields`` from ``{label or udf key: value}``; ``labels`` is lower-cased label → key.

    Raises :class:`FieldValueError` naming a label the instance does not have.
    """
    result: dict[str, Any] = {}
    for label, value in values.items():
        if label.startswith("udf_"):
            result[label] = value
            continue
        key = labels.get(label.casefold())
        if key is None:
            known = ", ".join(sorted(labels)) or "none"
            raise FieldValueError(
                f"custom field {label!r} is not a field of this SDP instance "
                f"(custom field labels: {known})"
            )
        result[key] = value
    return result


def needs_labels(values: Mapping[str, Any]) -> bool:
    """Whether any custom field is named by label (so the metadata must be read)."""
    return any(not key.startswith("udf_") for key in values)


def search_criteria(criteria: Any) -> list[dict[str, Any]]:
    """SDP ``search_criteria`` from a rule's ``criteria``.

    A list is SDP's own form (``field``, ``condition``, ``value``/``values``,
    ``logical_operator``, ``children``) and is sent as written. A mapping is the short
    form ``{field: value}``: each entry becomes ``is`` (``values`` for a list), joined by AND.
    """
    if isinstance(criteria, Mapping):
        result: list[dict[str, Any]] = []
        for field, value in criteria.items():
            item: dict[str, Any] = {"field": str(field), "condition": "is"}
            if isinstance(value, list | tuple):
                item["values"] = list(value)
            else:
                item["value"] = value
            if result:
                item["logical_operator"] = "AND"
            result.append(item)
        return result
    if isinstance(criteria, list | tuple) and all(isinstance(c, Mapping) for c in criteria):
        return [dict(item) for item in criteria]
    raise FieldValueError(
        "criteria: expected a mapping of field to value, or a list of SDP search criteria"
    )
