"""``deskwire waits …``: list the durable waits of rules and cancel one (docs/operations.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.orm import Session, sessionmaker

from deskwire import wait_store
from deskwire.cli_errors import settings_or_exit
from deskwire.database import session_factory
from deskwire.state import open_database
from deskwire.tables import REQUEST_ID

waits_group = click.Group("waits", help="List the waits of rules (`uses: wait`) and cancel one.")

CANCELLED_BY_CLI = "deskwire waits cancel"


@contextmanager
def _sessions() -> Iterator[sessionmaker[Session]]:
    engine = open_database(settings_or_exit())
    try:
        yield session_factory(engine)
    finally:
        engine.dispose()


def _request_id(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not REQUEST_ID.match(value):
        raise click.BadParameter(
            f"{value[:40]!r} is not a request id: letters, digits, '_' and '-' (up to 100)"
        )
    return value


def format_waits(waits: list[wait_store.WaitView]) -> str:
    """The waits as a table with a header row (or a line saying there are none)."""
    if not waits:
        return "no waits"
    headers = ("ID", "STATE", "DUE (UTC)", "EVENT", "REQUEST", "RULE", "STEP", "CANCELLED BY")
    rows = [
        (
            str(w.id),
            w.state,
            f"{w.due_at:%Y-%m-%d %H:%M:%S}",
            f"{w.event_pk} ({w.event_type})",
            w.request_id or "-",
            w.rule_id,
            w.step_id,
            " ".join((w.cancelled_by or "-").split()),
        )
        for w in waits
    ]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(v.ljust(width) for v, width in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in rows)])


@waits_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Also fired, cancelled and skipped waits.")
@click.option("--request", "request_id", callback=_request_id, help="Only waits of this request.")
@click.option("--limit", default=200, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def waits_list(show_all: bool, request_id: str | None, limit: int, as_json: bool) -> None:
    """List the waiting waits, soonest due first (--all: every wait, newest first)."""
    with _sessions() as sessions:
        found = wait_store.list_waits(
            sessions, states=None if show_all else ("waiting",), request_id=request_id, limit=limit
        )
    if as_json:
        data: Any = [w.as_dict() for w in found]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(format_waits(found))


@waits_group.command("cancel")
@click.argument("wait_id", metavar="WAIT_ID", type=click.IntRange(min=1))
def waits_cancel(wait_id: int) -> None:
    """Cancel a waiting wait: the rest of its rule will not run.

    WAIT_ID is the ID column of `deskwire waits list`. Exits 1 when there is no such wait
    or it no longer waits (it fired or was cancelled).
    """
    with _sessions() as sessions:
        outcome = wait_store.cancel(sessions, wait_id, by=CANCELLED_BY_CLI)
        found = wait_store.get(sessions, wait_id)
    if outcome == "missing" or found is None:
        raise click.ClickException(
            f"no wait with the id {wait_id}; `deskwire waits list --all` lists them"
        )
    if outcome == "not_waiting":
        raise click.ClickException(
            f"wait {wait_id} was not cancelled: it is {found.state}, not waiting"
            + (f" ({found.cancelled_by})" if found.cancelled_by else "")
        )
    click.echo(
        f"wait {wait_id} cancelled: rule {found.rule_id} of event {found.event_pk} "
        f"stops at step {found.step_id}"
    )
