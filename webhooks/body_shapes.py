"""Decoding a webhook body into one dict, whatever shape an SDP admin gave it.

Accepted: JSON objects; ``application/x-www-form-urlencoded`` and ``multipart/form-data``
fields, including bracketed keys (``request[requester][email_id]``) and fields that hold
JSON text; and either of JSON or form sent as ``text/plain``, ``application/octet-stream``
or with no Content-Type at all (sniffed). Anything else is a 415.

Limits are applied before and while parsing, so hostile bodies get a 4xx and never reach
a recursive parser: nesting depth is measured on the raw JSON text before ``json.loads``
runs, form keys and parts are counted, and non-standard JSON (``NaN``, ``Infinity``,
numbers that overflow to infinity) is refused so every database stores the same thing.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from typing import Any
from urllib.parse import parse_qsl

from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from deskwire.webhook_payload import ENVELOPE_KEYS
from webhooks.errors import WebhookError

# Form fields whose JSON object is the whole body (a Deluge map or SDP's payload textarea).
WRAPPER_FIELDS = ("payload", "data", "json", "body")
MAX_FORM_FIELDS = 2000
SNIFFED_TYPES = frozenset({"", "text/plain", "application/octet-stream"})

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_FORM_TEXT = re.compile(r"^[^\s=&]+=")


def _malformed(message: str) -> WebhookError:
    return WebhookError(400, "malformed_body", message)


def _too_deep(what: str, max_depth: int) -> WebhookError:
    return WebhookError(
        400, "too_deep", f"{what} is nested more than {max_depth} levels deep: send a flatter body"
    )


def check_json_depth(raw: bytes, max_depth: int, what: str) -> None:
    """Refuse JSON text nested deeper than ``max_depth`` without parsing it.

    Strings are cut out first (brackets inside them do not count); then each pass drops
    the innermost ``[]`` pairs, so ``max_depth`` passes empty any text that is not deeper.
    All of it runs in C-speed bytes operations, whatever the body holds.
    """
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    brackets = brackets.replace(b"{", b"[").replace(b"}", b"]")
    for _ in range(max_depth):
        if not brackets:
            return
        shorter = brackets.replace(b"[]", b"")
        if len(shorter) == len(brackets):
            return  # unbalanced: json.loads says where
        brackets = shorter
    if b"[]" in brackets:
        raise _too_deep(what, max_depth)


def _refuse_constant(name: str) -> Any:
    raise _malformed(
        f"the JSON contains {name}, which is not standard JSON: send a number, a string or null"
    )


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _malformed(f"the JSON number {text[:40]} is too large to store")
    return value


def json_object(raw: bytes, what: str, max_depth: int, charset: str = "utf-8") -> dict[str, Any]:
    """Decode strict JSON text that must be an object; ``what`` names it in errors."""
    check_json_depth(raw, max_depth, what)
    try:
        text = raw.decode(charset)
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError:
        raise _malformed(f"{what} is not valid {charset.upper()}") from None
    except RecursionError:  # pragma: no cover - the depth check runs first
        raise _too_deep(what, max_depth) from None
    except ValueError as exc:
        raise _malformed(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        kind = "array" if isinstance(value, list) else type(value).__name__
        raise _malformed(f"{what} must be a JSON object, not {kind}")
    return value


def _charset(params: dict[str, str]) -> str:
    name = params.get("charset", "utf-8").strip().lower() or "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        raise WebhookError(
            415, "unsupported_charset", f"charset {name[:40]!r} is not supported: send UTF-8"
        ) from None


def _urlencoded_pairs(raw: bytes, charset: str) -> list[tuple[str, str]]:
    try:
        text = raw.decode(charset)
        return parse_qsl(
            text,
            keep_blank_values=True,
            encoding=charset,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except UnicodeDecodeError:
        raise _malformed(f"the form body is not valid {charset.upper()} after %-decoding") from None
    except ValueError as exc:
        if "Max number of fields" in str(exc):
            raise WebhookError(
                413, "too_many_fields", f"the form has more than {MAX_FORM_FIELDS} fields"
            ) from None
        raise _malformed(f"the form body cannot be decoded: {exc}") from None


def _multipart_pairs(raw: bytes, params: dict[str, str]) -> list[tuple[str, str]]:
    boundary = params.get("boundary", "")
    if not boundary:
        raise _malformed("multipart/form-data needs a boundary parameter in the Content-Type")
    decoder = MultipartDecoder(boundary.encode("latin-1", "replace"), max_parts=MAX_FORM_FIELDS)
    pairs: list[tuple[str, str]] = []
    name: str | None = None
    charset = "utf-8"
    chunks: list[bytes] = []
    try:
        decoder.receive_data(raw)
        decoder.receive_data(None)
        while True:
            event = decoder.next_event()
            if isinstance(event, Epilogue | NeedData):
                break
            if isinstance(event, Field | File):
                if not event.name:
                    raise _malformed("a multipart part has no name in its Content-Disposition")
                name, chunks = event.name, []
                part_type = event.headers.get("Content-Type", "")
                charset = _charset(parse_options_header(part_type)[1]) if part_type else "utf-8"
            elif isinstance(event, Data) and name is not None:
                chunks.append(event.data)
                if not event.more_data:
                    pairs.append((name, b"".join(chunks).decode(charset)))
                    name = None
    except RequestEntityTooLarge:
        raise WebhookError(
            413, "too_many_fields", f"the form has more than {MAX_FORM_FIELDS} parts"
        ) from None
    except UnicodeDecodeError:
        raise _malformed(f"multipart field {name!r} is not valid {charset.upper()}") from None
    except ValueError as exc:
        raise _malformed(f"the multipart body cannot be decoded: {exc}") from None
    return pairs


def _key_path(name: str, max_depth: int) -> list[str]:
    """``request[requester][email_id]`` → ``["request", "requester", "email_id"]``."""
    match = _BRACKET_KEY.fullmatch(name)
    if match is None or not match.group(2):
        return [name]
    path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
    if len(path) > max_depth:
        raise _too_deep(f"form field {name[:60]!r}", max_depth)
    return path


def _place(body: dict[str, Any], name: str, path: list[str], value: str) -> None:
    """Put one form value at its key path; ``a[]`` appends to the list ``a``."""
    shown = repr(name[:60])
    node = body
    for depth, key in enumerate(path[:-1]):
        following = path[depth + 1]
        if key == "":
            raise _malformed(f"form field {shown}: '[]' can only end a key")
        child = node.setdefault(key, [] if following == "" else {})
        if following == "":
            if not isinstance(child, list) or depth + 2 != len(path):
                raise _malformed(f"form field {shown} mixes a list and named keys")
            child.append(value)
            return
        if not isinstance(child, dict):
            raise _malformed(f"form field {shown} nests under {key!r}, which has a plain value")
        node = child
    if isinstance(node.get(path[-1]), dict | list):
        raise _malformed(f"form field {shown} is both a value and a group of fields")
    node[path[-1]] = value


def _json_text(value: str) -> bool:
    return value.lstrip().startswith("{")


def fields_to_body(pairs: list[tuple[str, str]], max_depth: int) -> dict[str, Any]:
    """Form fields → one body: bracketed keys nest, fields holding a JSON object decode.

    A JSON object (text starting with ``{``) in a wrapper field (``payload``, ``data``,
    ``json``, ``body``), or in the only field that is not about the delivery (``event``,
    ``event_id``…), is the body itself; the other fields fill keys it lacks. A JSON object
    in any other field (such as ``request``) becomes that field's value. The last of
    repeated plain fields wins.
    """
    body: dict[str, Any] = {}
    for name, value in pairs:
        _place(body, name, _key_path(name, max_depth), value)
    content = [name for name in body if name not in ENVELOPE_KEYS]
    # A wrapper name holding plain text (``body=Printer jammed``) is just a field.
    wrapper = next(
        (f for f in WRAPPER_FIELDS if isinstance(body.get(f), str) and _json_text(body[f])),
        None,
    )
    if wrapper is None and len(content) == 1 and content[0] != "request":
        only = content[0]
        if isinstance(body[only], str) and _json_text(body[only]):
            wrapper = only
    if wrapper is not None:
        inner = json_object(body.pop(wrapper).encode(), f"form field {wrapper!r}", max_depth)
        for name, value in body.items():
            inner.setdefault(name, value)
        return inner
    for name, value in body.items():
        if isinstance(value, str) and _json_text(value):
            try:
                body[name] = json_object(value.encode(), f"form field {name!r}", max_depth)
            except WebhookError as error:
                if name == "request" or error.code == "too_deep":
                    raise
                # Some other text that starts with "{": kept as the text it is.
    return body


def _sniff(raw: bytes, charset: str) -> str:
    """``json`` or ``form`` for a body sent without a usable Content-Type, or 415."""
    try:
        text = raw.decode(charset).lstrip("\ufeff \t\r\n")
    except UnicodeDecodeError:
        text = ""
    if text.startswith(("{", "[")):
        return "json"
    if text == "" or _FORM_TEXT.match(text):
        return "form"
    raise WebhookError(
        415,
        "unsupported_content_type",
        "the body is neither JSON nor form fields: send a JSON object (application/json) "
        "or name=value fields (application/x-www-form-urlencoded)",
    )


def decode_body(raw: bytes, content_type: str, *, max_depth: int) -> dict[str, Any]:
    """Decode a webhook body into a dict, or raise a 400/413/415 :class:`WebhookError`."""
    mimetype, params = parse_options_header(content_type)
    mimetype = mimetype.lower()
    charset = _charset(params)
    if mimetype in SNIFFED_TYPES:
        kind = _sniff(raw, charset)
    elif mimetype == "application/json" or mimetype.endswith("+json"):
        kind = "json"
    elif mimetype == "application/x-www-form-urlencoded":
        kind = "form"
    elif mimetype == "multipart/form-data":
        return fields_to_body(_multipart_pairs(raw, params), max_depth)
    else:
        raise WebhookError(
            415,
            "unsupported_content_type",
            f"content type {mimetype[:80]!r} is not accepted: send application/json, "
            "application/x-www-form-urlencoded or multipart/form-data",
        )
    if kind == "json":
        if raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        return json_object(raw, "the body", max_depth, charset)
    return fields_to_body(_urlencoded_pairs(raw, charset), max_depth)
