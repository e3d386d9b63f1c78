"""Parsed rule files kept on disk between processes (issue 9: first load of 10,000 rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskwire.rule_parse_cache import DiskParseStore
from rules import RuleLoadError, load_rules
from rules.reload import RuleSource
from tests.rules.test_loading import EXAMPLE

BROKEN = """
rules:
  - id: fine
    on: request.created
    actions: [{uses: log, with: {message: hi}}]
  - id: bad-rule
    on: request.created
    whne: {request.id: {exists: true}}
    actions:
      - uses: log
        with: {mesage: hi}
"""


def errors(folder: Path, store: DiskParseStore | None) -> list[str]:
    with pytest.raises(RuleLoadError) as caught:
        load_rules(folder, store=store)
    return [str(error) for error in caught.value.errors]


def test_a_new_process_reads_the_parsed_files_and_gets_the_same_rules(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "a.yml").write_text(EXAMPLE)
    (folder / "b.yml").write_text(EXAMPLE.replace("vip-outage-page", "other-rule"))
    plain = load_rules(folder)
    first = load_rules(folder, store=DiskParseStore(cache))
    assert len(list(cache.iterdir())) == 4  # per file: its parsed tree and its records
    second = load_rules(folder, store=DiskParseStore(cache))  # as a new process would
    assert plain.version == first.version == second.version
    assert [r.id for r in second.rules] == [r.id for r in plain.rules]
    assert [(r.on, r.order, r.stop) for r in second.rules] == [
        (r.on, r.order, r.stop) for r in plain.rules
    ]
    assert second.rules[0].evaluate(
        {"request": {"priority": {"name": "High"}, "subject": "outage", "site": {"name": "HQ"},
                     "status": {"name": "Open"}, "requester": {}}}
    ).matched  # fmt: skip


def test_errors_from_a_parsed_tree_point_exactly_where_parsing_would(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "broken.yml").write_text(BROKEN)
    expected = errors(folder, None)
    assert any(":8:5:" in e and "whne" in e for e in expected), expected
    assert errors(folder, DiskParseStore(cache)) == expected  # parsed, tree stored
    assert list(cache.iterdir())
    assert errors(folder, DiskParseStore(cache)) == expected  # read from the store


def test_yaml_that_does_not_parse_is_never_stored(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "bad.yml").write_text("rules:\n  - id: x\n    on: [unclosed\n")
    expected = errors(folder, None)
    assert errors(folder, DiskParseStore(cache)) == expected
    assert not cache.exists() or not list(cache.iterdir())


def test_a_damaged_or_foreign_entry_only_costs_a_parse(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "a.yml").write_text(EXAMPLE)
    good = load_rules(folder, store=DiskParseStore(cache))
    entries = {entry: entry.read_bytes() for entry in cache.iterdir()}  # tree and records
    for entry, data in entries.items():
        for damage in (data[:-7], b"", b"x" * 40, b"\0" * 32 + b"garbage"):
            entry.write_bytes(damage)
            again = load_rules(folder, store=DiskParseStore(cache))
            assert again.version == good.version
            assert [r.id for r in again.rules] == ["vip-outage-page"]


def test_an_edited_file_is_parsed_again_and_the_reload_uses_the_store(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    path = folder / "a.yml"
    path.write_text(EXAMPLE)
    source = RuleSource(folder, interval=0, store=DiskParseStore(cache))
    assert [r.id for r in source.current().rules] == ["vip-outage-page"]
    path.write_text(EXAMPLE.replace("vip-outage-page", "renamed"))
    assert [r.id for r in source.current().rules] == ["renamed"]
    assert len(list(cache.iterdir())) == 4  # two versions, each a tree and its records
    fresh = RuleSource(folder, interval=0, store=DiskParseStore(cache))
    assert [r.id for r in fresh.current().rules] == ["renamed"]


def test_a_stored_tree_equals_the_parsed_one_in_every_field(tmp_path: Path) -> None:
    from configfiles import parse_yaml, parse_yaml_cached

    store = DiskParseStore(tmp_path / "cache")
    text = BROKEN + "  - {id: flow, on: [a, b], empty:, n: 1.5, t: true, z: null}\n"
    parsed = parse_yaml(text)
    assert parse_yaml_cached(text, store) == parsed  # parsed now, stored
    assert parse_yaml_cached(text, DiskParseStore(tmp_path / "cache")) == parsed  # read back
