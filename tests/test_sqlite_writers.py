"""Writers of one SQLite file take turns through an advisory lock (issue 9, ingest p99)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sqlalchemy import create_engine

from deskwire.database import make_engine
from deskwire.sqlite_writers import writer_turn


def test_turns_on_one_file_exclude_each_other_and_hand_over_at_once(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/deskwire.db")
    first, second = writer_turn(engine), writer_turn(engine)  # as two processes would
    entered: list[float] = []

    def other() -> None:
        with second.turn():
            entered.append(time.monotonic())

    with first.turn():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive()  # waiting for its turn
        assert not entered
        handed = time.monotonic()
    thread.join(timeout=10)
    assert entered
    assert entered[0] - handed < 0.25  # no busy-handler nap of 100 ms after 100 ms
    assert (tmp_path / "deskwire.db.writers").exists()
    engine.dispose()


def test_other_databases_take_no_lock(tmp_path: Path) -> None:
    for url in ("sqlite:///:memory:", "postgresql://postgres@127.0.0.1:5432/test"):
        engine = create_engine(url)
        with writer_turn(engine).turn(), writer_turn(engine).turn():
            pass  # a no-op: both turns at once
        engine.dispose()
    assert list(tmp_path.iterdir()) == []
