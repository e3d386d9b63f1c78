"""Development defaults for secrets, kept in ``var/``, for the quick start only.

Used only when the matching ``DESKWIRE_*`` variable is unset. The processes that serve
(``deskwire serve``; ``web`` and ``worker`` when run on their own) create a missing file
and warn; ``serve`` hands the values to its children as variables, so the warning is
printed once. Every other command reads an existing file silently and creates nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def dev_secret(var_dir: Path, name: str, variable: str, *, create: bool) -> str | None:
    """The value in ``var_dir/name``; with ``create``, made (mode 0600) if missing and warned."""
    path = var_dir / name
    if not path.exists():
        if not create:
            return None
        var_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this deployment made it a moment ago
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(32) + "\n")
    if create:
        log.warning(
            "%s is not set: using the development value in %s. Set %s before production use.",
            variable,
            path.resolve(),
            variable,
        )
    return path.read_text().strip() or None
