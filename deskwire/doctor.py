"""``deskwire doctor``: check settings, database, broker, rules and connections; say what to fix.

Each check is a function in :data:`CHECKS` that looks at one part and yields
:class:`Finding` records. Other parts add theirs with :func:`check` (for example worker
heartbeats and queue age); the order of the list is the order of the report.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from urllib.parse import urlsplit

import redis
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from deskwire.broker_file import recorded_broker_url
from deskwire.compose import (
    connections_config,
    connections_facade,
    database_engine,
    redis_client,
)
from deskwire.database import session_factory
from deskwire.schema import display_url, schema_state
from deskwire.settings import Settings


class Level(enum.IntEnum):
    """How bad a finding is; ``FAIL`` makes ``deskwire doctor`` exit 1."""

    OK = 0
    WARN = 1
    FAIL = 2


@dataclass(frozen=True)
class Finding:
    """One line of the report: what was found and, unless it is fine, what to do."""

    level: Level
    area: str
    message: str
    fix: str = ""


@dataclass
class Checkup:
    """What the checks share: the settings and the parts they open (at most once each)."""

    settings: Settings
    closers: list[Callable[[], None]] = field(default_factory=list)

    @cached_property
    def engine(self) -> Engine | None:
        """The database engine when the database is reachable and current, else None."""
        engine = database_engine(self.settings)
        self.closers.append(engine.dispose)
        try:
            state = schema_state(engine)
        except SQLAlchemyError:
            return None
        return engine if state.up_to_date else None

    @cached_property
    def broker(self) -> redis.Redis | None:
        """A client of the broker that answered PING, else None."""
        url = self.settings.broker_url or recorded_broker_url(self.settings.var_dir)
        if url is None:
            return None
        client = redis_client(url, timeout=5)
        self.closers.append(client.close)
        try:
            client.ping()
        except redis.RedisError:
            return None
        return client

    def close(self) -> None:
        """Release what the checks opened."""
        for close in reversed(self.closers):
            close()


Check = Callable[[Checkup], Iterable[Finding]]
CHECKS: list[Check] = []


def check(function: Check) -> Check:
    """Add ``function`` to the checks ``deskwire doctor`` runs (in definition order)."""
    CHECKS.append(function)
    return function


def run_checks(settings: Settings, checks: Iterable[Check] | None = None) -> list[Finding]:
    """Every finding of every check; a check that crashes is a finding, not a crash."""
    checkup = Checkup(settings)
    findings: list[Finding] = []
    try:
        for function in CHECKS if checks is None else checks:
            try:
                findings.extend(function(checkup))
            except Exception as exc:  # noqa: BLE001 - reported as a failed check
                name = function.__name__.removeprefix("check_")
                findings.append(
                    Finding(Level.FAIL, name, f"the check itself failed: {type(exc).__name__}")
                )
    finally:
        checkup.close()
    return findings


_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@check
def check_settings(checkup: Checkup) -> Iterator[Finding]:
    """Secrets set (not the development ones), a public URL that others can reach."""
    settings = checkup.settings
    development = {
        "secret_key": ("DESKWIRE_SECRET_KEY", "secret.key"),
        "webhook_tokens": ("DESKWIRE_WEBHOOK_TOKENS", "webhook-token"),
        "admin_password": ("DESKWIRE_ADMIN_PASSWORD", "admin-password"),
    }
    for name, (variable, file) in development.items():
        if variable in os.environ:
            continue
        if (settings.var_dir / file).exists():
            yield Finding(
                Level.WARN,
                "settings",
                f"{variable} is unset: the development value in {settings.var_dir / file} is used",
                f"set {variable} (a long random value) before production use",
            )
        elif name != "admin_password":
            yield Finding(
                Level.FAIL,
                "settings",
                f"{variable} is unset and there is no development value",
                f"set {variable}, or run `deskwire serve` once in this folder",
            )
    host = urlsplit(settings.public_url).hostname or ""
    if settings.public_url.startswith("http://") and host not in _LOOPBACK:
        yield Finding(
            Level.WARN,
            "settings",
            f"DESKWIRE_PUBLIC_URL {settings.public_url} is plain HTTP",
            "serve deskwire behind HTTPS and set DESKWIRE_PUBLIC_URL to the https:// address",
        )
    yield Finding(Level.OK, "settings", "every DESKWIRE_* variable read without errors")


@check
def check_database(checkup: Checkup) -> Iterator[Finding]:
    """Reachable, and at the schema revision this deskwire needs."""
    url = checkup.settings.database_url
    engine = database_engine(checkup.settings)
    try:
        state = schema_state(engine)
    except SQLAlchemyError as exc:
        yield Finding(
            Level.FAIL,
            "database",
            f"{display_url(url)} cannot be reached: "
            f"{type(getattr(exc, 'orig', None) or exc).__name__}",
            "check DESKWIRE_DATABASE_URL and that the database server is running",
        )
        return
    finally:
        engine.dispose()
    problem = state.problem()
    if problem is not None:
        yield Finding(Level.FAIL, "database", problem, "run `deskwire db upgrade`")
        return
    yield Finding(Level.OK, "database", f"{state.url} at schema revision {state.current}")


@check
def check_broker(checkup: Checkup) -> Iterator[Finding]:
    """Redis answers, and keeps tasks through a restart (AOF, no eviction)."""
    settings = checkup.settings
    url = settings.broker_url or recorded_broker_url(settings.var_dir)
    if url is None:
        yield Finding(
            Level.FAIL,
            "broker",
            "DESKWIRE_BROKER_URL is unset and no `deskwire serve` runs with this var folder",
            "set DESKWIRE_BROKER_URL to your Redis, or start `deskwire serve`",
        )
        return
    parts = urlsplit(url)
    shown = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else url.split("?")[0]
    client = checkup.broker
    if client is None:
        yield Finding(
            Level.FAIL,
            "broker",
            f"Redis at {shown} does not answer",
            "start Redis, or fix DESKWIRE_BROKER_URL",
        )
        return
    try:
        config = {
            **client.config_get("appendonly"),
            **client.config_get("maxmemory-policy"),
        }
    except redis.RedisError:
        config = {}  # managed Redis often forbids CONFIG: nothing to tell then
    if config.get("appendonly") == "no":
        yield Finding(
            Level.WARN,
            "broker",
            "Redis runs without appendonly: queued tasks are lost if it restarts",
            "run Redis with `appendonly yes`",
        )
    policy = config.get("maxmemory-policy")
    if policy not in (None, "noeviction"):
        yield Finding(
            Level.WARN,
            "broker",
            f"Redis evicts keys when full (maxmemory-policy {policy}): tasks can vanish",
            "set `maxmemory-policy noeviction`",
        )
    yield Finding(Level.OK, "broker", f"Redis at {shown} answers")


@check
def check_rules(checkup: Checkup) -> Iterator[Finding]:
    """The rule files load, and every connection they name is declared."""
    from connections import ConnectionsConfigError
    from rules import RuleLoadError, load_rules

    settings = checkup.settings
    if not settings.rules_dir.is_dir():
        yield Finding(
            Level.FAIL,
            "rules",
            f"the rules folder {settings.rules_dir.resolve()} does not exist",
            "create it, or set DESKWIRE_RULES_DIR",
        )
        return
    try:
        names: set[str] | None = set(connections_config(settings.connections_file).connections)
    except ConnectionsConfigError:
        names = None  # reported by the connections check
    try:
        rule_set = load_rules(settings.rules_dir, names)
    except RuleLoadError as exc:
        yield Finding(
            Level.FAIL,
            "rules",
            f"{len(exc.errors)} error(s) in {settings.rules_dir.resolve()}, first: {exc.errors[0]}",
            "run `deskwire rules check` and fix what it lists",
        )
        return
    yield Finding(Level.OK, "rules", f"{len(rule_set.rules)} rule(s), version {rule_set.version}")


@check
def check_connections(checkup: Checkup) -> Iterator[Finding]:
    """The connections file loads, and every connection has a usable token."""
    from connections import ConnectionsConfigError, ConnectionsError
    from connections.facade import ConnectionState

    settings = checkup.settings
    try:
        config = connections_config(settings.connections_file)
    except ConnectionsConfigError as exc:
        yield Finding(
            Level.FAIL,
            "connections",
            f"{settings.connections_file.resolve()}: {str(exc).splitlines()[0]}",
            "run `deskwire rules check` (it lists the connections file's errors) and fix them",
        )
        return
    if not config.connections:
        where = settings.connections_file.resolve()
        found = "none declared" if config.exists else f"no connections file at {where}"
        yield Finding(Level.OK, "connections", found)
        return
    keys = [key.get_secret_value() for key in settings.secret_key if key.get_secret_value()]
    if checkup.engine is None or not keys:
        yield Finding(
            Level.WARN,
            "connections",
            "tokens not checked: the database or DESKWIRE_SECRET_KEY is not ready (see above)",
        )
        return
    client = checkup.broker or redis_client(None)
    conns = connections_facade(
        settings, session_factory(checkup.engine), client, config=config, keys=keys
    )
    for link in sorted(config.connections):
        try:
            status = conns.status(link)
        except ConnectionsError as exc:
            yield Finding(
                Level.FAIL,
                "connections",
                f"{link}: {exc}",
                "reconnect it, or check DESKWIRE_SECRET_KEY",
            )
            continue
        if status.state == ConnectionState.CONNECTED:
            yield Finding(Level.OK, "connections", f"{link}: connected")
            continue
        level = Level.WARN if status.per_user else Level.FAIL
        yield Finding(
            level,
            "connections",
            f"{link}: {status.state.value.replace('_', ' ')} — {status.message}",
            f"connect it: `deskwire connections connect {link}` or the /connections page",
        )


def report(findings: list[Finding]) -> tuple[str, bool]:
    """The report as text, and whether everything needed is in order."""
    lines = []
    for finding in findings:
        lines.append(f"{finding.level.name.lower():<5} {finding.area:<12} {finding.message}")
        if finding.fix and finding.level != Level.OK:
            lines.append(f"{'':<18} fix: {finding.fix}")
    failures = sum(f.level == Level.FAIL for f in findings)
    warnings = sum(f.level == Level.WARN for f in findings)
    if failures:
        lines.append(f"{failures} problem(s) to fix, {warnings} warning(s)")
    else:
        lines.append(f"everything needed is in order ({warnings} warning(s))")
    return "\n".join(lines), failures == 0


@check
def check_workers(checkup: Checkup) -> Iterator[Finding]:
    """A worker sent a heartbeat recently, and no due event has waited too long."""
    from deskwire.recovery_store import oldest_waiting_age
    from worker.heartbeat import workers_seen

    settings = checkup.settings
    client = checkup.broker
    if client is None:
        yield Finding(Level.WARN, "workers", "unknown: the broker does not answer")
    else:
        seen = workers_seen(client)
        limit = settings.worker_stale_after
        alive = sorted(name for name, age in seen.items() if age <= limit)
        start = "start `deskwire worker` (or `deskwire serve`); read its log if it stops"
        if alive:
            yield Finding(Level.OK, "workers", f"{len(alive)} alive: {', '.join(alive)}")
        elif seen:
            # Workers ran and went silent without leaving: they died or lost the broker.
            newest = min(seen.values())
            yield Finding(
                Level.FAIL,
                "workers",
                f"no worker seen for {newest:.0f}s (DESKWIRE_WORKER_STALE_AFTER={limit}s)",
                start,
            )
        else:
            # None known: not started yet, or every one stopped on purpose.
            yield Finding(Level.WARN, "workers", "no worker is running", start)
    engine = checkup.engine
    if engine is None:
        return  # reported by the database check
    waited = oldest_waiting_age(session_factory(engine))
    limit = settings.queue_max_age
    if waited > limit:
        yield Finding(
            Level.FAIL,
            "queue",
            f"the oldest due event has waited {waited:.0f}s (DESKWIRE_QUEUE_MAX_AGE={limit}s)",
            "check that workers run and reach the broker; add workers if they are all busy",
        )
    else:
        yield Finding(Level.OK, "queue", f"oldest due event waited {waited:.0f}s")
