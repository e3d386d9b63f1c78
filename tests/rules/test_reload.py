"""RuleSource: reload on change, keep the last good rules, thread-safe."""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import pytest

from rules import RuleLoadError, load_rules
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


# --- reloads proportional to the edit: only changed files are parsed again -----------------


def three_files(write_rules):
    return write_rules(
        {
            "a.yml": "rules:\n  - {id: a1, on: x}\n  - {id: a2, on: x}\n",
            "b.yml": "rules:\n  - {id: b1, on: x}\n",
            "sub/c.yml": "rules:\n  - {id: c1, on: x}\n",
        }
    )


def same_as_fresh_load(source, folder, connections=None):
    """What the source holds now is exactly what a full load of the folder gives."""
    fresh, errors = None, None
    try:
        fresh = load_rules(folder, connections=connections)
    except RuleLoadError as exc:
        errors = exc.errors
    if fresh is None:
        assert source.last_error is not None
        assert source.last_error.errors == errors
        return
    assert source.last_error is None
    held = source.current()
    assert held.version == fresh.version
    assert [(r.id, r.file, r.line) for r in held.rules] == [
        (r.id, r.file, r.line) for r in fresh.rules
    ]


def test_editing_one_file_parses_only_that_file(write_rules):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    first = source.current()
    assert source.files_parsed == 3
    bump(folder / "b.yml", "rules:\n  - {id: b1, on: y}\n  - {id: b2, on: x}\n")
    second = source.current()
    assert source.files_parsed == 4
    assert [r.id for r in second.rules] == ["a1", "a2", "b1", "b2", "c1"]
    assert second.get("b1").on == ("y",)
    # Rules of the files that did not change are the very objects parsed the first time.
    for rule_id in ("a1", "a2", "c1"):
        assert second.get(rule_id) is first.get(rule_id)
    assert second.get("b1") is not first.get("b1")
    same_as_fresh_load(source, folder)


def test_unchanged_folder_parses_nothing(write_rules):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    first = source.current()
    for _ in range(3):
        assert source.current() is first
    assert source.files_parsed == 3


def test_touched_but_same_content_is_not_parsed_again(write_rules):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    first = source.current()
    bump(folder / "a.yml", (folder / "a.yml").read_text())  # new mtime, same bytes
    assert source.current() is first  # same version: the same set (and its event cache)
    assert source.files_parsed == 3


def test_new_file_is_parsed_alone_and_removed_file_drops_its_rules(write_rules):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    first = source.current()
    (folder / "d.yml").write_text("rules:\n  - {id: d1, on: x}\n")
    assert [r.id for r in source.current().rules] == ["a1", "a2", "b1", "c1", "d1"]
    assert source.files_parsed == 4
    (folder / "sub" / "c.yml").unlink()
    after = source.current()
    assert [r.id for r in after.rules] == ["a1", "a2", "b1", "d1"]
    assert after.get("c1") is None
    assert source.files_parsed == 4  # dropping a file parses nothing
    assert after.get("a1") is first.get("a1")
    same_as_fresh_load(source, folder)
    # The removed file is forgotten: written back, it is parsed again.
    (folder / "sub" / "c.yml").write_text("rules:\n  - {id: c1, on: x}\n")
    assert source.current().get("c1") is not None
    assert source.files_parsed == 5


def test_cross_file_duplicate_from_one_edit_names_both_places(write_rules, caplog):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    good = source.current()
    with caplog.at_level(logging.ERROR, logger="rules.reload"):
        bump(folder / "sub/c.yml", "rules:\n  - {id: c1, on: x}\n  - {id: a2, on: x}\n")
        assert source.current() is good  # the last good set stays in force
    assert source.files_parsed == 4  # the duplicate is found without re-parsing a.yml
    assert source.last_error is not None
    [error] = source.last_error.errors
    assert (error.file, error.line, error.rule) == (str(folder / "sub/c.yml"), 3, "a2")
    assert f"duplicate rule id 'a2': also defined at {folder / 'a.yml'}:3" in error.message
    assert "also defined at" in caplog.text
    same_as_fresh_load(source, folder)
    # Fixing the other file (removing the first definition) resolves it: only a.yml parsed.
    bump(folder / "a.yml", "rules:\n  - {id: a1, on: x}\n")
    fixed = source.current()
    assert source.files_parsed == 5
    assert [r.id for r in fixed.rules] == ["a1", "a2", "b1", "c1"]
    assert fixed.get("a2").file == str(folder / "sub/c.yml")
    assert fixed.get("b1") is good.get("b1")
    same_as_fresh_load(source, folder)


def test_bad_edit_keeps_last_good_set_and_every_error_is_still_reported(write_rules):
    folder = three_files(write_rules)
    (folder / "e.yml").write_text("rules:\n  - {id: e1, on: x}\n")
    source = RuleSource(folder, interval=0)
    good = source.current()
    bump(folder / "b.yml", "rules:\n  - {id: b1, on: 5}\n")
    assert source.current() is good
    bump(folder / "e.yml", "rules:\n  - {id: e1, on: x, stopp: true}\n")
    assert source.current() is good
    assert source.files_parsed == 6
    # Both broken files are reported, the one parsed on the earlier reload included.
    assert [e.file for e in source.last_error.errors] == [
        str(folder / "b.yml"),
        str(folder / "e.yml"),
    ]
    same_as_fresh_load(source, folder)
    bump(folder / "b.yml", "rules:\n  - {id: b1, on: x}\n")
    assert source.current() is good  # e.yml is still broken
    assert [e.file for e in source.last_error.errors] == [str(folder / "e.yml")]
    bump(folder / "e.yml", "rules:\n  - {id: e1, on: z}\n")
    fixed = source.current()
    assert source.last_error is None
    assert fixed.get("e1").on == ("z",)
    assert fixed.get("a1") is good.get("a1")
    assert source.files_parsed == 8
    same_as_fresh_load(source, folder)


def test_unknown_connections_are_checked_on_every_reload_in_document_order(write_rules):
    step = "      - {{uses: http.get, with: {{url: /, connection: {name}}}}}\n"
    bad_step = "      - {uses: http.get, with: {url: 5}}\n"
    text = (
        "rules:\n  - id: r1\n    on: x\n    actions:\n"
        + step.format(name="acme")
        + bad_step
        + step.format(name="crm")
        + "  - {id: r2, on: 5}\n"
    )
    folder = write_rules({"a.yml": text, "b.yml": "rules:\n  - {id: b1, on: x}\n"})
    connections = {"acme"}
    source = RuleSource(folder, interval=0, connections=connections)
    with pytest.raises(RuleLoadError) as caught:
        source.current()
    messages = [e.message for e in caught.value.errors]
    assert len(messages) == 3
    assert messages[0].startswith("expected text or a {{ template }}")
    assert messages[1].startswith("unknown connection 'crm'")
    assert messages[2].startswith("expected text")
    same_as_fresh_load(source, folder, connections)
    # Editing another file: a.yml is not parsed again, its errors (connections too) are back.
    bump(folder / "b.yml", "rules:\n  - {id: b2, on: x}\n")
    with pytest.raises(RuleLoadError) as again:
        source.current()
    assert again.value.errors == caught.value.errors
    assert source.files_parsed == 3


def test_version_changes_exactly_when_contents_change(write_rules):
    folder = three_files(write_rules)
    source = RuleSource(folder, interval=0)
    original = source.current().version
    assert original == load_rules(folder).version
    text = (folder / "b.yml").read_text()
    bump(folder / "b.yml", text)
    assert source.current().version == original  # touched only
    bump(folder / "b.yml", text.replace("on: x", "on: y"))
    edited = source.current().version
    assert edited not in (original,)
    assert edited == load_rules(folder).version
    bump(folder / "b.yml", text)
    assert source.current().version == original  # edited back: the same files again
    (folder / "b.yml").rename(folder / "b2.yml")
    renamed = source.current().version
    assert renamed not in (original, edited)  # same content, another name
    assert renamed == load_rules(folder).version


def test_cache_is_per_source(write_rules):
    folder = three_files(write_rules)
    first, second = RuleSource(folder, interval=0), RuleSource(folder, interval=0)
    assert first.current().version == second.current().version
    assert (first.files_parsed, second.files_parsed) == (3, 3)


def test_many_edits_match_a_fresh_load_each_time(write_rules):
    """A scripted run of edits (valid, invalid, duplicates, new and removed files)."""
    folder = write_rules({f"f{i}.yml": f"rules:\n  - {{id: r{i}, on: x}}\n" for i in range(5)})
    source = RuleSource(folder, interval=0, connections={"acme"})
    source.current()
    edits = [
        ("f1.yml", "rules:\n  - {id: r1, on: y}\n  - {id: r3, on: x}\n"),  # duplicate of f3
        ("f3.yml", "rules:\n  - {id: r3b, on: x}\n"),  # resolved
        ("f2.yml", "rules: [\n"),  # not YAML
        ("f2.yml", "rules:\n  - {id: r2, on: x}\n"),
        (
            "f9.yml",
            "rules:\n  - id: r9\n    on: x\n    actions:\n"
            "      - {uses: log, with: {message: hi, connection: crm}}\n",
        ),
        (
            "f9.yml",
            "rules:\n  - id: r9\n    on: x\n    actions:\n"
            "      - {uses: http.get, with: {url: /, connection: crm}}\n",
        ),
        ("f9.yml", None),
        (
            "f0.yml",
            "rules:\n  - id: r0\n    on: x\n    actions:\n"
            "      - {uses: http.get, with: {url: /, connection: acme}}\n",
        ),
        ("f4.yml", "rules:\n  - {id: r0, on: x}\n"),  # duplicate of f0
        ("f0.yml", None),
    ]
    for name, text in edits:
        if text is None:
            (folder / name).unlink()
        else:
            bump(folder / name, text)
        with contextlib.suppress(RuleLoadError):
            source.current()
        same_as_fresh_load(source, folder, {"acme"})
