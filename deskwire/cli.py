"""The ``deskwire`` command: run the parts, inspect events, check rules, manage connections."""

from __future__ import annotations

import json
from typing import Any

import click

from deskwire import __version__
from deskwire.compose import secret_environment, settings_or_exit
from deskwire.connections_cli import connections_group
from deskwire.rules_cli import rules_group

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

    settings = settings_or_exit()
    options = ServeOptions(host, port, flower_host, flower_port, concurrency, not no_flower)
    env = child_environment(settings, secret_environment(settings))
    raise SystemExit(run_all(settings, options, env))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--threads",
    default=16,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Request threads per worker process (idle or slow clients hold none).",
)
def web(host: str, port: int, workers: int, threads: int) -> None:
    """Run the webhook endpoint and pages (gunicorn, threaded workers)."""
    from deskwire.web_server import run_web

    run_web(settings_or_exit(), host=host, port=port, workers=workers, threads=threads)


@cli.command()
@click.option("--concurrency", default=2, show_default=True, type=click.IntRange(1, 64))
@click.option("--name", default="deskwire@%h", show_default=True, help="Worker node name.")
def worker(concurrency: int, name: str) -> None:
    """Run a Celery worker that processes events."""
    from deskwire.worker_runtime import build_worker_app

    settings = settings_or_exit()
    app = build_worker_app(settings)
    app.worker_main(
        [
            "worker",
            f"--loglevel={settings.log_level}",
            f"--concurrency={concurrency}",
            f"--hostname={name}",
            "--queues=deskwire",
            "--without-heartbeat",
        ]
    )


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help=HOST_HELP)
@click.option("--port", default=5555, show_default=True, type=click.IntRange(1, 65535))
def flower(host: str, port: int) -> None:
    """Run Flower, the Celery monitor, on the deskwire broker."""
    from deskwire.worker_runtime import broker_url_or_exit
    from worker.celery_app import create_celery

    settings = settings_or_exit()
    app = create_celery(settings, broker_url_or_exit(settings))
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
    """List the newest events."""
    from deskwire.event_views import list_events

    rows = list_events(settings_or_exit(), status=status, limit=limit)
    lines = [
        f"{r['pk']:>7}  {r['status']:<9} {r['event_type']:<28} request {r['request_id'] or '-':<10}"
        f" {r['received_at']:%Y-%m-%d %H:%M:%S}  {_why(r)[:80]}"
        for r in rows
    ]
    _print(rows, as_json, "\n".join(lines) or "no events")


def _why(row: dict[str, Any]) -> str:
    """The error of a failed event, the reason of a duplicate."""
    if row["status"] == "duplicate":
        return str(row.get("identity") or "")
    return str(row["error"] or "")


@events.command("show")
@click.argument("pk", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def events_show(pk: int, as_json: bool) -> None:
    """Show one event with the outcome of each rule and step."""
    from deskwire.event_views import describe_event, show_event

    data = show_event(settings_or_exit(), pk)
    if data is None:
        raise click.ClickException(f"no event with id {pk}")
    _print(data, as_json, describe_event(data))


@events.command("replay")
@click.argument("pks", type=int, nargs=-1, required=True)
def events_replay(pks: tuple[int, ...]) -> None:
    """Queue failed events again; steps that succeeded before are not repeated."""
    from deskwire.event_views import replay_events

    for line in replay_events(settings_or_exit(), pks):
        click.echo(line)


cli.add_command(rules_group)
cli.add_command(connections_group)


def main() -> None:
    """Entry point of the ``deskwire`` command."""
    cli(prog_name="deskwire")
