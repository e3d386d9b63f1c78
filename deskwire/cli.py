"""The ``deskwire`` command: run the parts, inspect events, check rules, manage connections."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import click

from connections.transport import is_loopback
from deskwire import __version__
from deskwire.broker_file import recorded_broker_url
from deskwire.cli_errors import cli_errors, settings_or_exit
from deskwire.compose import secret_environment
from deskwire.connections_cli import connections_group
from deskwire.db_cli import db_group
from deskwire.reconcile_cli import reconcile_group
from deskwire.rules_cli import rules_group
from deskwire.state import announce_state, describe_state
from deskwire.waits_cli import waits_group

HOST_HELP = "Interface to listen on."


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deskwire")
def cli() -> None:
    """deskwire: event-driven automation for ManageEngine ServiceDesk Plus.

    Settings come from DESKWIRE_* environment variables (see the README).
    """


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--flower-host", default="127.0.0.1", show_default=True, help="Flower's interface.")
@click.option("--flower-port", default=5555, show_default=True, type=click.IntRange(1, 65535))
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
def serve(
    host: str, port: int, flower_host: str, flower_port: int, concurrency: int, no_flower: bool
) -> None:
    """Run web, worker and Flower together (and Redis, when DESKWIRE_BROKER_URL is unset)."""
    from deskwire.serve import ServeOptions, child_environment
    from deskwire.serve import serve as run_all

    # serve decides about the broker itself: another serve's Redis is not ours to use.
    settings = settings_or_exit(serving=True, recorded_broker=False)
    announce_state(settings)
    running = recorded_broker_url(settings.var_dir)
    if settings.broker_url is None and running is not None:
        # Two embedded Redis servers on one var/redis would corrupt each other's AOF.
        raise click.ClickException(
            f"another `deskwire serve` is running with the var folder "
            f"{settings.var_dir.resolve()} (its Redis is at {running}): stop it first, or "
            "give this one its own DESKWIRE_VAR_DIR"
        )
    options = ServeOptions(host, port, flower_host, flower_port, concurrency, not no_flower)
    env = child_environment(settings, secret_environment(settings))
    with cli_errors():
        code = run_all(settings, options, env)
    raise SystemExit(code)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Request threads per worker process (idle or slow clients hold none).",
)
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Run the webhook endpoint and pages (gunicorn, threaded workers)."""
    from deskwire.web_server import run_web

    settings = settings_or_exit(serving=True)
    with cli_errors():
        run_web(settings, host=host, port=port, workers=workers, threads=threads)


@cli.command()
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--name", default="deskwire@%h", show_default=True, help="Worker node name.")
def worker(concurrency: int, name: str) -> None:
    """Run a Celery worker that processes events (exits non-zero unless asked to stop)."""
    from deskwire.worker_runtime import build_worker_app, run_worker

    settings = settings_or_exit(serving=True)
    with cli_errors():
        app = build_worker_app(settings)
    raise SystemExit(run_worker(app, settings, concurrency=concurrency, name=name))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
def flower(host: str, port: int) -> None:
    """Run Flower, the Celery monitor, on the deskwire broker."""
    from deskwire.compose import celery_app

    settings = settings_or_exit()
    auth = settings.flower_basic_auth
    if auth is None and not is_loopback(host):
        raise click.UsageError(
            f"Flower would listen on {host} without a sign-in: set DESKWIRE_FLOWER_BASIC_AUTH "
            "to user:password, or listen on 127.0.0.1"
        )
    with cli_errors():
        app = celery_app(settings)
    if auth is not None:
        # Through Flower's environment, not its command line, where `ps` would show it.
        os.environ["FLOWER_BASIC_AUTH"] = auth.get_secret_value()
    raise SystemExit(app.start(["flower", f"--address={host}", f"--port={port}"]) or 0)


@cli.group()
def events() -> None:
    """Inspect stored events, their run history and the dead-letter list; replay."""


def _print(data: Any, as_json: bool, text: str) -> None:
    click.echo(json.dumps(data, indent=2, default=str) if as_json else text)


@events.command("list")
@click.option(
    "--status",
    type=click.Choice(["queued", "running", "done", "failed", "duplicate"]),
    help="Only events in this status (failed = the dead-letter list; duplicate = the same "
    "request state as an earlier event).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events_list(status: str | None, limit: int, as_json: bool) -> None:
    """List the newest events (ID is deskwire's number, EVENT ID the sender's)."""
    from deskwire.event_views import format_event_table, list_events

    rows = list_events(settings_or_exit(), status=status, limit=limit)
    if as_json:
        _print(rows, True, "")
        return
    width = shutil.get_terminal_size((120, 24)).columns
    click.echo(format_event_table(rows, width))


@events.command("show")
@click.argument("event")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events_show(event: str, as_json: bool) -> None:
    """Show one event with the outcome of each rule and step.

    EVENT is deskwire's number of the event (the ID column of `events list`, `id` in the
    202 reply) or the sender's event id (`event_id`).
    """
    from deskwire.event_views import EventNotFound, describe_event, show_event

    try:
        data = show_event(settings_or_exit(), event)
    except EventNotFound as exc:
        raise click.ClickException(str(exc)) from None
    _print(data, as_json, describe_event(data))


@events.command("replay")
@click.argument("events_", metavar="EVENT...", nargs=-1, required=True)
def events_replay(events_: tuple[str, ...]) -> None:
    """Queue finished events again; steps that succeeded before are not repeated.

    Each EVENT is deskwire's number of an event or the sender's event id.
    """
    from deskwire.event_views import replay_events

    with cli_errors():
        lines = replay_events(settings_or_exit(), events_)
    for line in lines:
        click.echo(line)
    if any("not replayed" in line for line in lines):
        raise SystemExit(1)


class _Age(click.ParamType):  # type: ignore[type-arg]
    """An age such as 90s, 30m, 12h or 30d (more than zero), as seconds."""

    name = "age"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        from configfiles import parse_duration

        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail(f"{value!r} is no age; give one longer than zero, e.g. 30d", param, ctx)
        return seconds


@cli.command()
@click.option(
    "--older-than",
    "older_than",
    type=_Age(),
    required=True,
    help="Delete finished events received longer ago than this (e.g. 30d, 12h).",
)
@click.option("--dry-run", is_flag=True, help="Only say how many events would be deleted.")
def purge(older_than: int, dry_run: bool) -> None:
    """Delete finished events (done, failed, duplicate) and their run history.

    Queued and running events are never deleted. DESKWIRE_PURGE_AFTER makes the workers
    do this by themselves.
    """
    from datetime import timedelta

    from sqlalchemy.exc import SQLAlchemyError

    from deskwire.database import session_factory
    from deskwire.run_history import count_finished_before, purge_finished
    from deskwire.state import open_database
    from deskwire.tables import utcnow

    settings = settings_or_exit()
    cutoff = utcnow() - timedelta(seconds=older_than)
    before = f"received before {cutoff:%Y-%m-%d %H:%M} UTC"
    engine = open_database(settings)
    sessions = session_factory(engine)
    try:
        if dry_run:
            count = count_finished_before(sessions, cutoff)
            click.echo(f"would delete {count} finished event(s) {before}")
            return
        deleted = purge_finished(sessions, older_than=cutoff)
    except SQLAlchemyError as exc:
        raise click.ClickException(
            f"purge failed: {type(exc).__name__}: {exc.args[0] if exc.args else exc}"
        ) from None
    finally:
        engine.dispose()
    click.echo(f"deleted {deleted} finished event(s) {before}")


@cli.command()
def doctor() -> None:
    """Check settings, database, broker, rules and every connection; say what to fix.

    Exits 1 when something must be fixed (warnings alone exit 0).
    """
    from deskwire.doctor import report, run_checks

    settings = settings_or_exit()
    click.echo(f"deskwire {__version__}: {describe_state(settings)}")
    text, ok = report(run_checks(settings))
    click.echo(text)
    if not ok:
        raise SystemExit(1)


cli.add_command(db_group)
cli.add_command(rules_group)
cli.add_command(connections_group)
cli.add_command(waits_group)
cli.add_command(reconcile_group)


def main() -> None:
    """Entry point of the ``deskwire`` command."""
    cli(prog_name="deskwire")
