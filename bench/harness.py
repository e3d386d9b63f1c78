"""What every benchmark needs: processes it starts and stops by pid, wrk, Redis, schemas.

Everything a benchmark starts goes through :class:`Processes`, which stops it by pid (its
own process group, created at start) when the benchmark ends, whatever happens. Every wait
is bounded.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout (bench is not a deskwire process)
    sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, a wait ran out)."""


def wait_until(condition: Callable[[], bool], timeout: float, what: str, step: float = 0.1) -> None:
    """Poll ``condition`` until true; :class:`BenchError` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(step)
    raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")


class Processes:
    """Child processes of one benchmark, each in its own process group, stopped by pid."""

    def __init__(self, logs: Path) -> None:
        self._logs = logs
        self._children: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Start ``command``; its output goes to ``<logs>/<name>.log``."""
        self._logs.mkdir(parents=True, exist_ok=True)
        with (self._logs / f"{name}.log").open("ab") as log:
            child = subprocess.Popen(
                command,
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._children.append(child)
        return child

    def stop(self, child: subprocess.Popen[bytes], timeout: float = 30) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it lingers."""
        if child.poll() is None:
            with _gone():
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with _gone():
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=timeout)
        # Workers a master leaves behind (a killed gunicorn's children) share its group.
        with _gone():
            os.killpg(child.pid, signal.SIGKILL)
        if child in self._children:
            self._children.remove(child)

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for child in reversed(list(self._children)):
            self.stop(child)

    def log(self, name: str) -> str:
        """The tail of a child's log, for error messages."""
        path = self._logs / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def _gone() -> suppress:
    return suppress(ProcessLookupError)  # the process (group) has exited already


@contextmanager
def processes(logs: Path) -> Iterator[Processes]:
    """A :class:`Processes` whose children are all stopped on exit."""
    group = Processes(logs)
    try:
        yield group
    finally:
        group.stop_all()


def wait_for_http(url: str, child: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Wait until ``url`` answers at all (any status)."""

    def up() -> bool:
        if child.poll() is not None:
            raise BenchError(f"{child.args} exited with {child.returncode}")
        try:
            httpx.get(url, timeout=1)
        except httpx.TransportError:
            return False
        return True

    wait_until(up, timeout, url, step=0.2)


@contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throw-away Redis (no persistence) for one benchmark."""
    from deskwire.embedded import EmbeddedRedis

    server = EmbeddedRedis(folder, persistent=False)
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def pg_schema(url: str) -> Iterator[str]:
    """A throw-away PostgreSQL schema, so the benchmark leaves nothing in the database."""
    from sqlalchemy import create_engine, text

    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    schema = f"bench_{time.time_ns()}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def postgres_url() -> str | None:
    """The PostgreSQL to measure on, if one is configured."""
    return os.environ.get("DESKWIRE_BENCH_DATABASE_URL") or os.environ.get(
        "DESKWIRE_TEST_DATABASE_URL"
    )


WEB_WORKERS = 2
WEB_THREADS = 8


def gunicorn(app: str, port: int) -> list[str]:
    """gunicorn serving a WSGI app the way ``deskwire web`` serves deskwire (same worker
    class, processes, threads and access log)."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-w",
        str(WEB_WORKERS),
        "-k",
        "gthread",
        "--threads",
        str(WEB_THREADS),
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(L)ss',
        app,
    ]


# ---- load -----------------------------------------------------------------------------

# One JSON webhook per request, with an event id no other request of the run has:
# a per-thread prefix set by setup(), then a counter. Stops after `limit` responses when
# the limit is set (wrk itself only knows durations).
_WRK_SCRIPT = textwrap.dedent(
    """\
    local threads = 0
    function setup(thread)
      threads = threads + 1
      thread:set("prefix", "%(label)s-t" .. threads)
    end
    local counter = 0
    local answered = 0
    local limit = %(limit)d
    function request()
      counter = counter + 1
      local body = '{"event": "request.created", "event_id": "' .. prefix .. '-' .. counter
        .. '", "request": {"id": "' .. (%(request_base)d + counter %% 100000)
        .. '", "subject": "Bench", "priority": {"name": "Low"}}}'
      return wrk.format("POST", "%(path)s", {
        ["Content-Type"] = "application/json",
        ["X-Deskwire-Token"] = "%(token)s",
      }, body)
    end
    function response(status, headers, body)
      answered = answered + 1
      if limit > 0 and answered >= limit then wrk.thread:stop() end
    end
    """
)


@dataclass(frozen=True)
class LoadResult:
    """What wrk measured."""

    rps: float
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers, socket errors and timeouts


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not match:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def have_wrk() -> bool:
    """Whether wrk is installed (``apt-get install -y wrk``)."""
    return shutil.which("wrk") is not None


def wrk(
    url: str,
    *,
    label: str,
    seconds: float,
    connections: int = 8,
    limit: int = 0,
    request_base: int = 0,
    until: Callable[[], bool] | None = None,
    path: str = "/webhooks/sdp",
) -> LoadResult:
    """Drive ``url`` with wrk (one thread, ``connections`` keep-alive connections).

    ``limit``: send no more than about this many requests; ``until``: stop as soon as this
    returns true (checked five times a second); otherwise the run lasts ``seconds``.
    """
    if not have_wrk():
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            _WRK_SCRIPT
            % {"label": label, "limit": limit, "path": path, "token": TOKEN,
               "request_base": request_base}
        )  # fmt: skip
    command = [
        "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
        "--latency", "-s", script.name, url,
    ]  # fmt: skip
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + seconds + 60
            # wrk only knows durations: once ``until`` holds (e.g. enough events stored),
            # SIGINT makes it stop and print its report at once.
            while child.poll() is None and time.monotonic() < deadline:
                if until is not None and until():
                    child.send_signal(signal.SIGINT)
                    break
                time.sleep(0.2)
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)
    finally:
        Path(script.name).unlink()
    if child.returncode != 0 or "requests in" not in out:
        raise BenchError(f"wrk failed ({child.returncode}): {err[-500:]}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.MULTILINE))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return LoadResult(
        rps, requests, _ms(percentiles.get("50", "")), _ms(percentiles.get("99", "")), errors
    )


def rounds_text(rates: list[float]) -> str:
    """``"; rounds a / b / c"`` after a best-of-rounds figure (nothing for one round)."""
    return "; rounds " + " / ".join(f"{rate:,.0f}" for rate in rates) if len(rates) > 1 else ""


# ---- processes' resources ---------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state is field 0)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None  # the process is gone


def process_group(pid: int) -> list[int]:
    """A process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, ()))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (0 once it is gone)."""
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def group_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, in MiB (Linux /proc)."""
    total_kb = 0
    for current in process_group(pid):
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total_kb += int(match.group(1)) if match else 0
    return total_kb / 1024


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the results table: a figure, its baseline of the same run, the target."""

    name: str
    value: str
    baseline: str = ""
    ratio: float | None = None
    target: str = ""
    met: bool | None = None


def deskwire_command(*args: str) -> list[str]:
    """The installed ``deskwire`` entry point (never ``python -m`` from the checkout)."""
    script = Path(sys.executable).parent / "deskwire"
    return [str(script), *args] if script.exists() else ["deskwire", *args]


def upgrade_database(env: dict[str, str]) -> None:
    """``deskwire db upgrade``: the schema the web and the worker require before they start."""
    subprocess.run(
        deskwire_command("db", "upgrade"), env=env, cwd=ROOT, capture_output=True,
        timeout=300, check=True,
    )  # fmt: skip


def deskwire_env(folder: Path, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a deskwire web or worker under benchmark."""
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    connections = folder / "connections.yml"
    if not connections.exists():
        connections.write_text("connections: {}\n")
    return {
        **os.environ,
        "DESKWIRE_BROKER_URL": redis_url,
        "DESKWIRE_DATABASE_URL": database_url,
        "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
        "DESKWIRE_SECRET_KEY": "bench-secret-key",
        "DESKWIRE_ADMIN_PASSWORD": "bench",
        "DESKWIRE_RULES_DIR": str(folder / "rules"),
        "DESKWIRE_CONNECTIONS_FILE": str(connections),
        "DESKWIRE_VAR_DIR": str(folder / "var"),
        "DESKWIRE_LOG_LEVEL": "WARNING",
        **extra,
    }
