"""Validated rule records kept between processes (issue 9: first load of 10,000 rules ≤ 2 s)."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

from deskwire.rule_parse_cache import DiskParseStore
from rules import load_rules
from rules._records import get
from tests.rules.test_loading import EXAMPLE
from tests.rules.test_parse_cache import BROKEN, errors

CONTEXT = {
    "request": {
        "priority": {"name": "High"}, "subject": "outage", "site": {"name": "HQ"},
        "status": {"name": "Open"}, "requester": {},
    }
}  # fmt: skip


class CountingStore(DiskParseStore):
    """The disk store, counting what a load reads and writes."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.gets = self.puts = 0

    def get(self, key: str) -> bytes | None:
        self.gets += 1
        return super().get(key)

    def put(self, key: str, data: bytes) -> None:
        self.puts += 1
        super().put(key, data)


def test_a_new_process_reads_each_file_s_records_in_one_read(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "a.yml").write_text(EXAMPLE)
    (folder / "b.yml").write_text(EXAMPLE.replace("vip-outage-page", "other-rule"))
    plain = load_rules(folder)
    load_rules(folder, store=DiskParseStore(cache))
    store = CountingStore(cache)
    kept = load_rules(folder, store=store)  # as a new process would
    assert (store.gets, store.puts) == (2, 0)  # no tree read, nothing parsed or validated
    assert kept.version == plain.version
    assert kept.rules == plain.rules  # the same frozen records, templates and operators
    assert [r.evaluate(CONTEXT).matched for r in kept.rules] == [True, True]
    action = kept.rules[0].actions[0]
    assert action.render(CONTEXT) == plain.rules[0].actions[0].render(CONTEXT)


def test_records_name_the_file_they_were_read_from(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.yml").write_text(EXAMPLE)
        [rule] = load_rules(tmp_path / name, store=DiskParseStore(cache)).rules
        assert rule.file == str(tmp_path / name / "a.yml")


def test_a_file_with_errors_keeps_no_records_and_its_errors_stay_exact(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "broken.yml").write_text(BROKEN)
    expected = errors(folder, None)
    assert errors(folder, DiskParseStore(cache)) == expected
    assert len(list(cache.iterdir())) == 1  # the parsed tree only
    assert errors(folder, DiskParseStore(cache)) == expected


def test_an_entry_naming_anything_but_rule_records_is_refused(tmp_path: Path) -> None:
    folder, cache = tmp_path / "rules", tmp_path / "cache"
    folder.mkdir()
    (folder / "a.yml").write_text(EXAMPLE)
    load_rules(folder, store=DiskParseStore(cache))
    marker = tmp_path / "ran"

    class Foreign:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return os.mkdir, (str(marker),)

    payload = pickle.dumps(Foreign())
    entry = hashlib.sha256(payload).digest() + payload  # a well-formed, checked entry
    for path in cache.iterdir():
        path.write_bytes(entry)
    store = DiskParseStore(cache)
    assert all(get(store, path.name) is None for path in cache.iterdir())
    [rule] = load_rules(folder, store=store).rules  # parsed again
    assert rule.id == "vip-outage-page"
    assert not marker.exists()
