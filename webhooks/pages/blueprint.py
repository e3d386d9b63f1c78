"""The ``/connections`` blueprint and what its pages were registered with.

Every view module of :mod:`webhooks.pages` adds its routes to :data:`bp`;
:func:`webhooks.pages.register_connection_pages` registers it once they are all imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, current_app

from connections import Connections, ConnectionState
from deskwire.settings import Settings
from webhooks.pages.security import LoginThrottle

__all__ = ["EXTENSION", "PAGES_ROOT", "STATE_LABELS", "PagesSetup", "bp", "facade", "pages_setup"]

# webhooks/: its templates/ and static/ folders serve the pages of this package.
PAGES_ROOT = str(Path(__file__).resolve().parent.parent)

bp = Blueprint(
    "connection_pages",
    __name__,
    url_prefix="/connections",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
    root_path=PAGES_ROOT,
)

STATE_LABELS: Mapping[str, str] = {
    ConnectionState.CONNECTED: "Connected",
    ConnectionState.NOT_CONNECTED: "Not connected",
    ConnectionState.NOT_CONFIGURED: "Not configured",
    ConnectionState.REVOKED: "Revoked",
    ConnectionState.NEEDS_RECONNECT: "Needs reconnect",
    "error": "Error",
}

# The key of app.extensions that holds the PagesSetup (the runs pages check for it).
EXTENSION = "deskwire_connection_pages"


@dataclass(frozen=True)
class PagesSetup:
    """What the pages were registered with."""

    connections: Callable[[], Connections]
    settings: Settings
    used_by: Callable[[], Mapping[str, Sequence[str]]]
    key: bytes | None
    throttle: LoginThrottle


def pages_setup() -> PagesSetup:
    """The setup of the app handling this request."""
    setup: PagesSetup = current_app.extensions[EXTENSION]
    return setup


def facade() -> Connections:
    """This process's connections facade."""
    return pages_setup().connections()
