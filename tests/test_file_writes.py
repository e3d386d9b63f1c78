"""Editing connections.yml from several processes: a cross-process lock and atomic replace.

The editors are real processes (``python -P``) calling the same writers the web pages
(``webhooks.pages.files``) and the CLI (``connections.manifest.merge_into_file``) use. A
lost edit would show as a missing scope or service; a torn write as a file that does not
parse while the test reads it in a loop.
"""

from __future__ import annotations

import select
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from connections.yamlfile import remove_connection
from deskwire.file_writes import locked, write_atomically
from webhooks.pages.files import write_connection_edit

CONNECTIONS = """\
# deskwire connections (comments survive edits)
services:
  acme:
    name: Acme
    auth: oauth2
    grant_type: authorization_code
    authorize_url: https://acme.example/authorize
    token_url: https://acme.example/token
    client_id: id
    client_secret: secret
connections:
  first:
    service: acme
    name: First
    scopes: [base]
  second:
    service: acme
    name: Second
    scopes: [base]
"""

# Each editor adds one scope per edit to its own connection, rereading the file every time.
PAGE_EDITOR = """
import sys
from pathlib import Path
from webhooks.pages.files import write_connection_edit
path, link, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
scopes = ["base"]
for number in range(count):
    scopes.append(f"{link}.{number}")
    write_connection_edit(path, link, name=f"{link} edit {number}", scopes=tuple(scopes))
"""

# The CLI's writer: each import adds one service.
IMPORTER = """
import sys
from pathlib import Path
from connections.manifest import ManifestImport, merge_into_file
path, count = Path(sys.argv[1]), int(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()
for number in range(count):
    service = {"name": f"Imported {number}", "auth": "api_key", "base_url": "https://x.example"}
    merge_into_file(ManifestImport(services={f"imported_{number}": service}), path, write=True)
"""

HOLDER = """
import sys
from pathlib import Path
from deskwire.file_writes import locked
with locked(Path(sys.argv[1])):
    print("ready", flush=True)
    sys.stdin.readline()
"""

EDITS = 25


def _parse(text: str) -> Any:
    return YAML(typ="safe").load(text)


def _readline(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, "the child process did not answer in time"
    return process.stdout.readline().strip()


@contextmanager
def _children(*scripts: list[str]) -> Iterator[list[subprocess.Popen[str]]]:
    """Start each ``python -P -c`` child; yield them once all are ready; always end them."""
    with ExitStack() as stack:
        started = []
        for arguments in scripts:
            process = subprocess.Popen(
                [sys.executable, "-P", "-c", *arguments],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            stack.callback(_end, process)
            started.append(process)
        for process in started:
            assert _readline(process, 30) == "ready", process.stderr
        yield started


def _end(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait(timeout=10)


def _go(processes: list[subprocess.Popen[str]]) -> None:
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def _read_while_running(path: Path, processes: list[subprocess.Popen[str]]) -> int:
    """Parse the file again and again until the editors end; every read must parse whole."""
    reads = 0
    deadline = time.monotonic() + 120
    while any(p.poll() is None for p in processes):
        assert time.monotonic() < deadline, "the editors did not finish within 120 s"
        document = _parse(path.read_text(encoding="utf-8"))
        assert set(document["connections"]) == {"first", "second"}
        reads += 1
    for process in processes:
        assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""
    return reads


def test_two_processes_editing_lose_no_edit(tmp_path: Path) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(CONNECTIONS, encoding="utf-8")
    path.chmod(0o640)
    editors = [[PAGE_EDITOR, str(path), link, str(EDITS)] for link in ("first", "second")]
    editors.append([IMPORTER, str(path), str(EDITS)])
    with _children(*editors) as processes:
        _go(processes)
        reads = _read_while_running(path, processes)
    text = path.read_text(encoding="utf-8")
    document = _parse(text)
    for link in ("first", "second"):
        connection = document["connections"][link]
        assert connection["scopes"] == ["base", *(f"{link}.{n}" for n in range(EDITS))]
        assert connection["name"] == f"{link} edit {EDITS - 1}"
    assert {f"imported_{n}" for n in range(EDITS)} <= set(document["services"])
    assert text.startswith("# deskwire connections (comments survive edits)")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == [".connections.yml.lock", path.name]
    assert reads > 0


def test_threads_of_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "count"
    write_atomically(path, "0")
    errors: list[BaseException] = []

    def count() -> None:
        try:
            for _ in range(50):
                with locked(path) as target:
                    write_atomically(target, str(int(target.read_text()) + 1))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [threading.Thread(target=count) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert path.read_text() == "200"


def test_a_killed_holder_leaves_no_stale_lock(tmp_path: Path) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(CONNECTIONS, encoding="utf-8")
    taken = threading.Event()

    def take() -> None:
        with locked(path):
            taken.set()

    with _children([HOLDER, str(path)]) as (holder,):
        waiter = threading.Thread(target=take, daemon=True)
        waiter.start()
        assert not taken.is_set()  # held by the child
        holder.kill()  # no clean exit: the kernel releases the lock with the process
        assert taken.wait(timeout=30), "the lock of a killed process was never released"
        waiter.join(timeout=10)
    assert path.read_text(encoding="utf-8") == CONNECTIONS


def test_an_edit_waits_for_the_lock_and_then_goes_through(tmp_path: Path) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(CONNECTIONS, encoding="utf-8")
    errors: list[BaseException] = []

    def edit() -> None:
        try:
            write_connection_edit(path, "first", name="Renamed", scopes=None)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    with _children([HOLDER, str(path)]) as (holder,):
        editor = threading.Thread(target=edit)
        editor.start()
        assert path.read_text(encoding="utf-8") == CONNECTIONS  # held: nothing written yet
        _go([holder])
        editor.join(timeout=30)
        assert not editor.is_alive()
        assert not errors
    assert _parse(path.read_text(encoding="utf-8"))["connections"]["first"]["name"] == ("Renamed")


def test_new_file_mode_and_symlink(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.yml"
    write_atomically(fresh, "a: 1\n")
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o600
    real = tmp_path / "real.yml"
    real.write_text(CONNECTIONS, encoding="utf-8")
    link = tmp_path / "connections.yml"
    link.symlink_to(real)
    assert remove_connection(link, "second")
    assert link.is_symlink()  # the real file was replaced, the link kept
    assert set(_parse(real.read_text(encoding="utf-8"))["connections"]) == {"first"}


def test_a_failed_write_keeps_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "connections.yml"
    path.write_text(CONNECTIONS, encoding="utf-8")
    with pytest.raises(UnicodeEncodeError), locked(path) as target:
        write_atomically(target, "name: \udc80\n")  # fails while the temporary is written
    assert path.read_text(encoding="utf-8") == CONNECTIONS
    assert sorted(p.name for p in tmp_path.iterdir()) == [".connections.yml.lock", path.name]
