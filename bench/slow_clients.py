"""Slow and idle clients against the web process: does ingest still answer, and how fast?

    .venv/bin/python bench/slow_clients.py [--idle 50] [--duration 5]

For each gunicorn setup (the old 2 sync workers, and 2 gthread workers with a few thread
counts) it starts ``deskwire web``'s gunicorn on loopback, then measures:

- throughput of webhook ingest with ``wrk`` (when installed) or a threaded client;
- the time one webhook takes while ``--idle`` sockets are open and send nothing;
- the same while ``--idle`` sockets have sent half a request header and stalled.

A setup that cannot answer within 10 s is shown as ``>10``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deskwire.embedded import EmbeddedRedis, free_port  # noqa: E402
from deskwire.web_server import WORKER_CLASS  # noqa: E402

TOKEN = "bench-token"
SETUPS = [("sync", 1), ("gthread", 16), (WORKER_CLASS, 4), (WORKER_CLASS, 16)]


def serve_main(worker_class: str, threads: int, port: int) -> None:
    """Child mode: run the web process with one gunicorn setup."""
    from deskwire.settings import load_settings
    from deskwire.web_server import run_web

    run_web(
        load_settings(),
        host="127.0.0.1",
        port=port,
        workers=2,
        threads=threads,
        worker_class=worker_class,
    )


@contextmanager
def web(env: dict[str, str], worker_class: str, threads: int) -> Iterator[tuple[str, int]]:
    port = free_port()
    command = [sys.executable, __file__, "--serve", worker_class, str(threads), str(port)]
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command} exited with {process.returncode}") from None
                time.sleep(0.2)
        yield base, port
    finally:
        process.terminate()
        process.wait(timeout=30)


def webhook_seconds(base: str, label: str, limit: float = 10.0) -> float:
    """Seconds one webhook takes to be answered (``inf`` past ``limit``)."""
    body = {"event": "request.created", "event_id": label, "request": {"id": "1"}}
    started = time.perf_counter()
    try:
        response = httpx.post(
            base + "/webhooks/sdp", json=body, headers={"X-Deskwire-Token": TOKEN}, timeout=limit
        )
    except httpx.TimeoutException:
        return float("inf")
    if response.status_code != 202:
        raise RuntimeError(f"webhook answered {response.status_code}: {response.text}")
    return time.perf_counter() - started


def with_idle_sockets(port: int, count: int, partial: bool) -> list[socket.socket]:
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if partial:
            sock.sendall(b"POST /webhooks/sdp HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sockets.append(sock)
    time.sleep(0.5)  # let the server accept them all before measuring
    return sockets


def throughput(base: str, duration: int, tmp: str) -> float:
    """Webhooks per second with 8 connections (wrk), each webhook a distinct event."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return float("nan")
    script = Path(tmp) / "post.lua"
    script.write_text(
        "counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        f'  local body = \'{{"event":"request.created","event_id":"wrk-\' .. math.random(1e9) '
        '  .. \'-\' .. counter .. \'","request":{"id":"7"}}\'\n'
        '  return wrk.format("POST", "/webhooks/sdp", '
        f'{{["Content-Type"]="application/json", ["X-Deskwire-Token"]="{TOKEN}"}}, body)\n'
        "end\n"
    )
    out = subprocess.run(
        [wrk, "-t2", "-c8", f"-d{duration}s", "-s", str(script), base],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    raise RuntimeError(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=int, default=50)
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_main(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        redis_server = EmbeddedRedis(Path(tmp) / "redis", persistent=False)
        redis_url = redis_server.start()
        (Path(tmp) / "rules").mkdir()
        try:
            for worker_class, threads in SETUPS:
                env = {
                    **os.environ,
                    "DESKWIRE_BROKER_URL": redis_url,
                    "DESKWIRE_DATABASE_URL": f"sqlite:///{tmp}/{worker_class}{threads}.db",
                    "DESKWIRE_WEBHOOK_TOKENS": TOKEN,
                    "DESKWIRE_SECRET_KEY": "bench",
                    "DESKWIRE_RULES_DIR": f"{tmp}/rules",
                    "DESKWIRE_CONNECTIONS_FILE": f"{tmp}/connections.yml",
                    "DESKWIRE_VAR_DIR": f"{tmp}/var",
                    "DESKWIRE_LOG_LEVEL": "WARNING",
                }
                label = f"{worker_class.rsplit('.', 1)[-1]}-{threads}"
                with web(env, worker_class, threads) as (base, port):
                    webhook_seconds(base, label + "-warm")
                    rps = throughput(base, args.duration, tmp)
                    timings = []
                    for partial in (False, True):
                        sockets = with_idle_sockets(port, args.idle, partial)
                        try:
                            timings.append(webhook_seconds(base, f"{label}-{partial}"))
                        finally:
                            for sock in sockets:
                                sock.close()
                    rows.append((label, rps, *timings))
        finally:
            redis_server.stop()
    print(f"\n2 gunicorn workers; {args.idle} idle sockets; wrk -c8 for {args.duration}s")
    print(f"{'setup':<24} {'webhooks/s':>10} {'idle: s':>9} {'half-header: s':>15}")
    for label, rps, idle, partial in rows:

        def shown(value: float) -> str:
            return ">10" if value == float("inf") else f"{value:.2f}"

        print(f"{label:<24} {rps:>10.0f} {shown(idle):>9} {shown(partial):>15}")


if __name__ == "__main__":
    main()
