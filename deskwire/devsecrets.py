"""Development defaults for secrets: generated once into ``var/``, with a loud warning.

Used only when the matching ``DESKWIRE_*`` variable is unset, so that the quick start
runs with nothing configured; production sets the variables.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)


def dev_secret(var_dir: Path, name: str, variable: str) -> str:
    """Read ``var_dir/name``, creating it (mode 0600) with a random value the first time."""
    path = var_dir / name
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    log.warning(
        "%s is not set: using the development value in %s. Set %s before production use.",
        variable,
        path,
        variable,
    )
    return path.read_text().strip()
