"""RuleSource: reload on change, keep the last good rules, thread-safe."""

from __future__ import annotations

import logging
import os
import threading

import pytest

from rules import RuleLoadError
from rules.reload import RuleSource

GOOD = "rules:\n  - {id: a, on: x}\n"
GOOD_2 = "rules:\n  - {id: a, on: x}\n  - {id: b, on: x}\n"
BAD = "rules:\n  - {id: a, on: 5}\n"


def bump(path, text):
    """Write and move the mtime forward, so the change is seen whatever the clock granularity."""
    stat = path.stat() if path.exists() else None
    path.write_text(text)
    if stat is not None:
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_reloads_on_change_and_keeps_last_good(write_rules, caplog):
    folder = write_rules({"r.yml": GOOD})
    source = RuleSource(folder, interval=0)
    first = source.current()
    assert [r.id for r in first.rules] == ["a"]
    assert source.current() is first  # unchanged: same object, no reload
    bump(folder / "r.yml", GOOD_2)
    second = source.current()
    assert [r.id for r in second.rules] == ["a", "b"]
    assert second.version != first.version
    with caplog.at_level(logging.ERROR, logger="rules.reload"):
        bump(folder / "r.yml", BAD)
        assert source.current() is second
    assert isinstance(source.last_error, RuleLoadError)
    assert "rules[0].on" in caplog.text
    assert f"keeping rules version {second.version}" in caplog.text
    bump(folder / "r.yml", GOOD)
    assert [r.id for r in source.current().rules] == ["a"]
    assert source.last_error is None


def test_new_and_removed_files_are_seen(write_rules):
    folder = write_rules({"r.yml": GOOD})
    source = RuleSource(folder, interval=0)
    source.current()
    (folder / "s.yml").write_text("rules:\n  - {id: c, on: x}\n")
    assert {r.id for r in source.current().rules} == {"a", "c"}
    (folder / "s.yml").unlink()
    assert {r.id for r in source.current().rules} == {"a"}


def test_interval_limits_checks(write_rules):
    folder = write_rules({"r.yml": GOOD})
    source = RuleSource(folder, interval=3600)
    first = source.current()
    bump(folder / "r.yml", GOOD_2)
    assert source.current() is first  # not looked at again within the interval


def test_first_load_failure_raises(write_rules):
    folder = write_rules({"r.yml": BAD})
    source = RuleSource(folder, interval=0)
    with pytest.raises(RuleLoadError):
        source.current()
    with pytest.raises(RuleLoadError):
        source.current()
    bump(folder / "r.yml", GOOD)
    assert source.current().rules[0].id == "a"


def test_connections_checked(write_rules):
    text = (
        "rules:\n  - id: a\n    on: x\n    actions:\n      - {uses: http.get, with: "
        "{url: /, connection: acme}}\n"
    )
    folder = write_rules({"r.yml": text})
    with pytest.raises(RuleLoadError, match="unknown connection 'acme'"):
        RuleSource(folder, connections={"sdp"}).current()
    assert RuleSource(folder, connections={"acme"}).current().rules[0].id == "a"


def test_thread_safe(write_rules):
    folder = write_rules({"r.yml": GOOD})
    source = RuleSource(folder, interval=0)
    seen: list[object] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(50):
                seen.append(source.current().version)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    bump(folder / "r.yml", GOOD_2)
    for thread in threads:
        thread.join()
    assert not errors
    assert len(seen) == 400
