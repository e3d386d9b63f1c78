"""The small value rules every configuration source shares: link names and durations."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

# A connection's (or a service's) link name: how rules, URLs and the store refer to it.
LINK_NAME = r"[a-z][a-z0-9_]{0,49}"
_LINK_NAME = re.compile(LINK_NAME)

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EXAMPLES = "write e.g. 90s, 30m, 2h or 1d"


def is_link_name(value: Any) -> TypeGuard[str]:
    """Whether ``value`` is a link name: a lower-case letter, then a-z, 0-9 and _ (≤ 50)."""
    return isinstance(value, str) and _LINK_NAME.fullmatch(value) is not None


def parse_duration(value: Any, *, unit_required: bool = False) -> int:
    """Read ``90s``, ``30m``, ``2h`` or ``1d`` (and bare seconds, ``90``) as whole seconds.

    ``unit_required``: bare numbers are refused (where ``5`` could mean minutes as well).
    Raises :class:`ValueError` saying what is wrong and how to write it.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 30m, 2h or 1d")
    if isinstance(value, int | float):
        if unit_required:
            raise ValueError(f"{value!r} needs a unit; {_EXAMPLES}")
        return int(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a duration; {_EXAMPLES}")
    if unit_required and not match.group(2):
        raise ValueError(f"{value!r} needs a unit; {_EXAMPLES}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
