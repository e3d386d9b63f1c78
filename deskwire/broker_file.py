"""``var/broker-url``: how commands find the Redis that ``deskwire serve`` started.

The embedded Redis listens on a random free port. ``serve`` records its URL (and its own
process id) under the var folder and removes the file on a clean exit; every other command
uses it when ``DESKWIRE_BROKER_URL`` is unset. A file whose ``serve`` is gone (a crash, a
kill -9) is stale and ignored.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

FILE_NAME = "broker-url"


def broker_file(var_dir: Path) -> Path:
    """Where ``serve`` records the URL of its embedded Redis."""
    return var_dir / FILE_NAME


def record_broker_url(var_dir: Path, url: str) -> None:
    """Record ``url`` for the commands run beside this ``serve`` (replaced atomically)."""
    path = broker_file(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    partial.write_text(json.dumps({"url": url, "pid": os.getpid()}) + "\n")
    partial.replace(path)


def forget_broker_url(var_dir: Path) -> None:
    """Remove the record, if it is this process's own."""
    path = broker_file(var_dir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError, AttributeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    return True


def recorded_broker_url(var_dir: Path) -> str | None:
    """The URL a running ``serve`` recorded under ``var_dir``, or None (none, or stale)."""
    try:
        record = json.loads(broker_file(var_dir).read_text())
        url, pid = record["url"], record["pid"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(url, str) or not isinstance(pid, int) or not _alive(pid):
        return None
    return url
