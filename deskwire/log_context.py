"""Which event, rule and step a log line is about, and the JSON log format that says so.

The worker binds the ids around each event, rule and step (:func:`bound`); every log
record made meanwhile carries them (:class:`ContextFilter`), and with
``DESKWIRE_LOG_FORMAT=json`` each record is one JSON object on one line
(:class:`JsonFormatter`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

_IDS: ContextVar[dict[str, str]] = ContextVar("deskwire_log_ids", default={})  # noqa: B039 - never mutated
FIELDS = ("event", "rule", "step")  # deskwire's event number, rule id, step id


@contextmanager
def bound(**ids: object) -> Iterator[None]:
    """Log records inside carry these ids: ``event=`` (a number), ``rule=``, ``step=``."""
    token = _IDS.set({**_IDS.get(), **{k: str(v) for k, v in ids.items() if v is not None}})
    try:
        yield
    finally:
        _IDS.reset(token)


class ContextFilter(logging.Filter):
    """Puts the bound ids on each record (``None`` when unbound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the ids; never drops a record."""
        ids = _IDS.get()
        for name in FIELDS:
            setattr(record, name, ids.get(name))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, process, message, ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single line of JSON."""
        data: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                data[name] = value
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
