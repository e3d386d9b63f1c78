"""Custom field labels of an SDP instance, read from ``GET requests/_metainfo``.

Rules name custom fields by the label people see ("Asset Tag"); the API wants the key
(``udf_char1``). The mapping is cached per process and per API base, for a bounded time
and a bounded number of instances, so a rule that sets a custom field costs one extra
call per instance every few minutes, not one per step.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

MAX_INSTANCES = 32
TTL_SECONDS = 600.0


def udf_labels(metainfo: Any) -> dict[str, str]:
    """``{label: udf key}`` from a ``_metainfo`` reply body (its ``metainfo`` object).

    SDP lists custom fields under ``fields.udf_fields.fields`` keyed by their API name,
    each with a ``display_name``; older builds use a list of objects with ``name``. Both
    are read; labels are matched case-insensitively by :class:`FieldLabels`.
    """
    found: dict[str, str] = {}

    def visit(node: Any, inside_udf: bool) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if inside_udf and str(key).startswith("udf_") and isinstance(value, Mapping):
                    label = value.get("display_name") or value.get("label")
                    if label:
                        found[str(label)] = str(key)
                visit(value, inside_udf or key == "udf_fields")
        elif isinstance(node, list):
            for item in node:
                if inside_udf and isinstance(item, Mapping):
                    name, label = item.get("name"), item.get("display_name") or item.get("label")
                    if isinstance(name, str) and name.startswith("udf_") and label:
                        found[str(label)] = name
                visit(item, inside_udf)

    visit(metainfo, False)
    return found


class FieldLabels:
    """A bounded, time-limited, thread-safe cache of :func:`udf_labels` per API base."""

    def __init__(self, *, ttl: float = TTL_SECONDS, max_instances: int = MAX_INSTANCES) -> None:
        self._ttl = ttl
        self._max = max_instances
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[float, dict[str, str]]] = OrderedDict()

    def labels(self, api_base: str, fetch: Callable[[], Any]) -> dict[str, str]:
        """``{lower-cased label: udf key}`` of ``api_base``, fetching when absent or stale."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(api_base)
            if entry is not None and now - entry[0] < self._ttl:
                self._entries.move_to_end(api_base)
                return entry[1]
        # Fetched outside the lock: a slow SDP never blocks other instances' lookups.
        labels = {label.casefold(): key for label, key in udf_labels(fetch()).items()}
        with self._lock:
            self._entries[api_base] = (now, labels)
            self._entries.move_to_end(api_base)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return labels

    def forget(self, api_base: str) -> None:
        """Drop an instance's labels (after SDP rejected a key we mapped: fields changed)."""
        with self._lock:
            self._entries.pop(api_base, None)


# The process-wide cache the client uses.
FIELD_LABELS = FieldLabels()
