"""``deskwire reconcile status|run``: where reconciliation stands, and one run now."""

from __future__ import annotations

import json

import click

from deskwire.cli_errors import cli_errors, settings_or_exit

reconcile_group = click.Group(
    "reconcile",
    help="Reconciliation: the SDP changes whose webhook never came (DESKWIRE_RECONCILE_*).",
)


@reconcile_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status_command(as_json: bool) -> None:
    """Show each source's watermark and last run (stored in the database)."""
    from datetime import UTC, datetime

    from deskwire.database import session_factory
    from deskwire.reconcile_progress import all_progress
    from deskwire.state import open_database

    settings = settings_or_exit()
    engine = open_database(settings)
    try:
        rows = all_progress(session_factory(engine))
    finally:
        engine.dispose()
    interval = settings.reconcile_interval
    if as_json:
        data = {
            "interval": interval,
            "sources": [
                {**row.__dict__, "last_run_at": row.last_run_at.isoformat()} for row in rows
            ],
        }
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(
        f"reconciliation every {interval}s" if interval
        else "reconciliation is off (set DESKWIRE_RECONCILE_INTERVAL, e.g. 5m)"
    )  # fmt: skip
    if not rows:
        click.echo("no source reconciled yet")
    for row in rows:
        mark = datetime.fromtimestamp(row.watermark_ms / 1000, UTC)
        state = "complete" if row.last_complete else "stopped part-way"
        click.echo(
            f"{row.source} (connection {row.connection}): changes read up to "
            f"{mark:%Y-%m-%d %H:%M:%S} UTC; last run {row.last_run_at:%Y-%m-%d %H:%M:%S} UTC, "
            f"{state}: {row.last_calls} call(s), {row.last_read} read, "
            f"{row.last_created} event(s) made; {row.total_created} in all"
        )
        if row.last_error:
            click.echo(f"  last error: {row.last_error}")


@reconcile_group.command("run")
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Only this source (repeatable); default: DESKWIRE_RECONCILE_SOURCES, else every "
    "SDP connection.",
)
def run_command(sources: tuple[str, ...]) -> None:
    """Reconcile once now, even when DESKWIRE_RECONCILE_INTERVAL is off.

    Needs the broker (the events made are queued for the workers) and the SDP connection.
    """
    import redis

    from connections.errors import ConnectionsError
    from deskwire.compose import broker_url, celery_app, redis_client, sdp_access
    from deskwire.database import session_factory
    from deskwire.settings import SettingsError, load_settings
    from deskwire.state import open_database
    from worker.enqueue import send_process_event
    from worker.reconcile_step import locked_run

    settings = settings_or_exit()
    if sources:
        try:
            checked = load_settings(reconcile_sources=",".join(sources))
        except SettingsError as exc:
            raise click.BadParameter(str(exc).replace("DESKWIRE_RECONCILE_SOURCES", "--source"),
                                     param_hint="--source") from None  # fmt: skip
        settings = settings.model_copy(update={"reconcile_sources": checked.reconcile_sources})
    with cli_errors():
        broker = broker_url(settings)
    engine = open_database(settings)
    client = redis_client(broker, timeout=10)
    app = celery_app(settings)
    sessions = session_factory(engine)
    try:
        access = sdp_access(settings, sessions)
        results = locked_run(
            settings, sessions, access,
            lambda pk, kind, rid: send_process_event(app, pk, event_type=kind, request_id=rid),
            client,
        )  # fmt: skip
    except ConnectionsError as exc:  # an invalid connections file, no secret key, …
        raise click.ClickException(str(exc)) from None
    except redis.RedisError as exc:
        raise click.ClickException(f"the broker at {broker} does not answer: {exc}") from None
    finally:
        client.close()
        engine.dispose()
    if results is None:
        raise click.ClickException(
            "a worker is reconciling right now (Redis lock deskwire:reconcile); try again soon"
        )
    if not results:
        raise click.ClickException(
            "nothing to reconcile: no SDP connection in the connections file, or none of the "
            "sources is connected (the log above says which)"
        )
    failed = False
    for result in results:
        click.echo(
            f"{result.source}: {result.calls} call(s), {result.read} changed request(s) read, "
            f"{result.created} event(s) made in {result.seconds:.1f}s"
            + ("" if result.complete else "; more to read (run again)")
        )
        if result.error:
            failed = True
            click.echo(f"  stopped: {result.error}", err=True)
    if failed:
        raise SystemExit(1)
