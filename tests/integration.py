"""Building blocks of the end-to-end tests: a real worker process, the web app, the fakes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from deskwire.compose import web_app
from deskwire.database import make_engine, session_factory
from deskwire.schema import upgrade
from deskwire.settings import Settings
from deskwire.tables import Event, RuleRun, StepRun
from tests.fakes.sdp import FakeSdp
from tests.waiting import wait_until
from tests.wsgi_server import serving

TOKEN = "e2e-token"
ROOT = Path(__file__).resolve().parent.parent


def sdp_connections_yaml(fake_url: str, fake: FakeSdp) -> str:
    """A connections file whose ``sdp`` connection talks to the fake SDP and Zoho."""
    return textwrap.dedent(
        f"""\
        connections:
          sdp:
            name: ServiceDesk Plus
            service: sdp
            data_centre: us
            portal: {fake.portal}
            base_url: {fake_url}
            accounts_url: {fake_url}
            client_id: ${{SDP_CLIENT_ID}}
            client_secret: ${{SDP_CLIENT_SECRET}}
            refresh_token: ${{SDP_REFRESH_TOKEN}}
            scopes: [SDPOnDemand.requests.ALL]
        """
    )


@dataclass
class Deployment:
    """One deskwire under test: its settings, web URL, fake SDP and database."""

    settings: Settings
    env: dict[str, str]
    web_url: str
    fake: FakeSdp
    fake_url: str
    rules_dir: Path
    worker: subprocess.Popen[bytes] | None = None
    _engine: Any = None
    _sessions: Any = None

    def post(self, body: dict[str, Any], *, path: str = "/webhooks/sdp") -> httpx.Response:
        """Send a webhook as SDP would."""
        return httpx.post(
            self.web_url + path, json=body, headers={"X-Deskwire-Token": TOKEN}, timeout=10
        )

    def sessions(self) -> Any:
        # One engine for the deployment's life: a new one per poll would leave a pool of
        # connections behind each time (PostgreSQL runs out of clients).
        if self._sessions is None:
            self._engine = make_engine(self.settings.database_url)
            self._sessions = session_factory(self._engine)
        return self._sessions

    def close(self) -> None:
        """Release the test's own database connections."""
        if self._engine is not None:
            self._engine.dispose()

    def event(self, event_id: str) -> Event | None:
        with self.sessions()() as session:
            return session.scalar(select(Event).where(Event.event_id == event_id))

    def wait_for(
        self, event_id: str, statuses: tuple[str, ...] = ("done", "failed"), timeout: float = 60
    ) -> Event:
        """Poll until the event reaches one of ``statuses``."""

        def reached() -> Event | None:
            if self.worker is not None and self.worker.poll() is not None:
                raise AssertionError(f"the worker exited with {self.worker.returncode}")
            event = self.event(event_id)
            return event if event is not None and event.status in statuses else None

        return wait_until(
            reached,
            timeout,
            lambda: f"event {event_id} reaching {statuses}: {self.event(event_id)}",
        )

    def rule_runs(self, pk: int) -> dict[str, RuleRun]:
        with self.sessions()() as session:
            return {
                r.rule_id: r for r in session.scalars(select(RuleRun).where(RuleRun.event_pk == pk))
            }

    def step_runs(self, pk: int) -> list[StepRun]:
        with self.sessions()() as session:
            return list(
                session.scalars(select(StepRun).where(StepRun.event_pk == pk).order_by(StepRun.id))
            )

    def write_rules(self, text: str, name: str = "rules.yml") -> None:
        (self.rules_dir / name).write_text(textwrap.dedent(text))

    def start_worker(self, concurrency: int = 1) -> subprocess.Popen[bytes]:
        """A real ``deskwire worker`` process, as an operator would run it."""
        log = (Path(self.env["DESKWIRE_VAR_DIR"]) / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "deskwire", "worker", "--concurrency", str(concurrency)],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self.worker

    def stop_worker(self) -> None:
        if self.worker is None or self.worker.poll() is not None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.worker.pid, signal.SIGKILL)
            self.worker.wait()

    def worker_log(self) -> str:
        path = Path(self.env["DESKWIRE_VAR_DIR"]) / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def deployment(
    tmp_path: Path,
    database_url: str,
    redis_url: str,
    *,
    rules: str,
    web_broker_url: str | None = None,
    connections: Callable[[str, FakeSdp], str] = sdp_connections_yaml,
    start_worker: bool = True,
    extra_env: dict[str, str] | None = None,
    fake: FakeSdp | None = None,
) -> Iterator[Deployment]:
    """Fake SDP (Cloud unless ``fake`` says otherwise) + web app over loopback + a real
    worker process on real Redis.

    The database is upgraded first (a no-op when it is current), as `deskwire db upgrade`
    does in a real deployment.
    """
    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    fake = fake or FakeSdp()
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yml").write_text(textwrap.dedent(rules))
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    with ExitStack() as stack:
        fake_url = stack.enter_context(serving(fake.app(), underscore_headers=True))
        connections_file = tmp_path / "connections.yml"
        connections_file.write_text(connections(fake_url, fake))
        env = {
            **os.environ,
            "DESKWIRE_BROKER_URL": redis_url,
            "DESKWIRE_DATABASE_URL": database_url,
            "DESKWIRE_RULES_DIR": str(rules_dir),
            "DESKWIRE_CONNECTIONS_FILE": str(connections_file),
            "DESKWIRE_SECRET_KEY": "test-secret-key-for-e2e",
            "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
            "DESKWIRE_VAR_DIR": str(var_dir),
            "DESKWIRE_SWEEP_INTERVAL": "1",
            "DESKWIRE_RELOAD_INTERVAL": "0.5",
            "DESKWIRE_RETRY_BACKOFF_MAX": "1",
            "DESKWIRE_LOG_LEVEL": "INFO",
            # Steps without a connection call the test's fakes on loopback: allowed here only.
            "DESKWIRE_HTTP_ALLOW": "127.0.0.1",
            "SDP_CLIENT_ID": fake.client_id,
            "SDP_CLIENT_SECRET": fake.client_secret,
            "SDP_REFRESH_TOKEN": fake.refresh_token,
            "SDP_TECHNICIAN_KEY": fake.technician_key,
            **(extra_env or {}),
        }
        settings = Settings(
            broker_url=web_broker_url or redis_url,
            database_url=database_url,
            webhook_tokens=TOKEN,
            rules_dir=rules_dir,
            connections_file=connections_file,
            var_dir=var_dir,
        )
        web_url = stack.enter_context(serving(web_app(settings)))
        result = Deployment(settings, env, web_url, fake, fake_url, rules_dir)
        if start_worker:
            result.start_worker()
        try:
            yield result
        except BaseException:
            sys.stderr.write(result.worker_log()[-6000:])
            raise
        finally:
            result.stop_worker()
            result.close()
