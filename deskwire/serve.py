"""``deskwire serve``: web, worker and Flower as child processes, plus Redis if none is set.

The children are the same commands an operator runs one by one (``deskwire web``,
``deskwire worker``, ``deskwire flower``), given the same environment; so the all-in-one
default and a split deployment behave alike. A child that exits is started again after
a backoff (1 s, doubling to 60 s; back to 1 s once it has run for a minute), and each exit
and restart is logged; Ctrl-C or SIGTERM stops them all.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from types import FrameType

from deskwire.broker_file import forget_broker_url, record_broker_url
from deskwire.compose import database_engine
from deskwire.embedded import EmbeddedRedis
from deskwire.schema import display_url, require_current, sqlite_path, upgrade
from deskwire.settings import Settings

log = logging.getLogger(__name__)

RESTART_FIRST = 1.0  # seconds before the first restart of a child that exited
RESTART_MAX = 60.0  # the longest wait between restarts
STABLE_AFTER = 60.0  # a child up this long has recovered: its backoff starts again at 1 s


@dataclass(frozen=True)
class ServeOptions:
    """Where each part listens and how many worker processes run."""

    host: str = "127.0.0.1"
    port: int = 8000
    flower_host: str = "127.0.0.1"
    flower_port: int = 5555
    concurrency: int = 2
    flower: bool = True


def child_commands(options: ServeOptions) -> dict[str, list[str]]:
    """The command line of each child process.

    ``-P`` keeps the working directory off ``sys.path``: the operator's folder may hold
    ``rules/`` or ``worker/`` folders that must not shadow deskwire's packages.
    """
    me = [sys.executable, "-P", "-m", "deskwire"]
    commands = {
        "web": [*me, "web", "--host", options.host, "--port", str(options.port)],
        "worker": [*me, "worker", "--concurrency", str(options.concurrency)],
    }
    if options.flower:
        commands["flower"] = [
            *me, "flower", "--host", options.flower_host, "--port", str(options.flower_port),
        ]  # fmt: skip
    return commands


@dataclass
class Supervised:
    """One child process and its restart state."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = RESTART_FIRST
    restart_at: float | None = None
    restarts: int = field(default=0)

    def start(self) -> None:
        """Start (or start again) the child."""
        self.process = subprocess.Popen(self.command, env=self.env)  # noqa: S603 - our own argv
        self.started = time.monotonic()
        self.restart_at = None

    def check(self, now: float) -> None:
        """Notice an exit and schedule a restart; restart when its backoff has passed."""
        if self.process is None:
            return
        if self.restart_at is not None:
            if now >= self.restart_at:
                self.restarts += 1
                self.start()
                log.warning(
                    "%s restarted (pid %s, restart %s)", self.name, self.process.pid, self.restarts
                )
            return
        code = self.process.poll()
        if code is None:
            return
        if now - self.started >= STABLE_AFTER:
            self.backoff = RESTART_FIRST
        log.error("%s exited with code %s; restarting it in %.0fs", self.name, code, self.backoff)
        self.restart_at = now + self.backoff
        self.backoff = min(RESTART_MAX, self.backoff * 2)


def prepare_database(settings: Settings) -> None:
    """Upgrade the embedded SQLite database; check that a shared one is current.

    Done once, before the children start, so they never race to change the schema. A
    shared database (PostgreSQL) is upgraded by its operator (`deskwire db upgrade`),
    after a backup, when they choose; ``serve`` refuses to run on an outdated one.
    Raises :class:`deskwire.schema.SchemaError` saying what to run.
    """
    engine = database_engine(settings)
    try:
        if sqlite_path(settings.database_url) is None:
            require_current(engine)
            return
        before, after = upgrade(engine)
        if before != after:
            log.info(
                "database %s: schema upgraded from %s to %s",
                display_url(settings.database_url),
                before or "(none)",
                after,
            )
    finally:
        engine.dispose()


def serve(settings: Settings, options: ServeOptions, env: dict[str, str]) -> int:
    """Run everything until interrupted, restarting children that exit; return the exit code."""
    prepare_database(settings)
    redis_server: EmbeddedRedis | None = None
    if settings.broker_url is None:
        redis_server = EmbeddedRedis(settings.var_dir / "redis")
        env["DESKWIRE_BROKER_URL"] = redis_server.start()
        record_broker_url(settings.var_dir, redis_server.url)
        log.info(
            "started embedded Redis at %s (data in %s)", redis_server.url, redis_server.directory
        )
    children = [Supervised(name, command, env) for name, command in child_commands(options).items()]
    stopping = False

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        log.info("received %s, stopping", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for child in children:
            child.start()
        _banner(options)
        while not stopping:
            now = time.monotonic()
            for child in children:
                child.check(now)
            if redis_server is not None:
                _keep_redis(redis_server)
            time.sleep(0.3)
    finally:
        _stop_all([c.process for c in children if c.process is not None])
        if redis_server is not None:
            forget_broker_url(settings.var_dir)
            redis_server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _keep_redis(server: EmbeddedRedis) -> None:
    """Start the embedded Redis again (same port and data) if it died."""
    if server.process is not None and server.process.poll() is not None:
        log.error(
            "embedded Redis exited with code %s; starting it again", server.process.returncode
        )
        try:
            server.start()
        except Exception as exc:  # noqa: BLE001 - try again on the next round
            log.error("embedded Redis did not start again: %s", exc)


def _banner(options: ServeOptions) -> None:
    lines = [
        f"deskwire is running: webhooks at http://{options.host}:{options.port}/webhooks/sdp",
        f"  health:  http://{options.host}:{options.port}/healthz",
    ]
    if options.flower:
        lines.append(f"  Flower:  http://{options.flower_host}:{options.flower_port}/")
    lines.append("  stop with Ctrl-C")
    print("\n".join(lines), flush=True)


def _stop_all(children: list[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)  # warm shutdown: workers finish their task
    deadline = time.monotonic() + timeout
    for child in children:
        remaining = max(0.1, deadline - time.monotonic())
        try:
            child.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def child_environment(settings: Settings, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the children: ours, plus values ``serve`` decided."""
    env = dict(os.environ)
    env.update(extra)
    env.setdefault("DESKWIRE_LOG_LEVEL", settings.log_level)
    # Any Python the children start keeps the working directory off sys.path as well.
    env["PYTHONSAFEPATH"] = "1"
    return env
