"""Per-event rule matching cost, and load / reload cost, for 10, 1,000 and 10,000 rules.

Run: .venv/bin/python bench/rules_matching.py

Each rule set has about 10 rules per event type (plus two `request.*` glob rules), so the
rules that *could* match an event stay the same while the total grows. For each size it
times one event through ``RuleSet.for_event`` + ``Rule.evaluate`` (the indexed path), and
the same event through a naive scan of every rule (precompiled `on` patterns), measured
in the same run.

Rules are spread over files of 100 rules. "load s" is a full ``load_rules`` of the folder;
"reload s" is ``RuleSource.current()`` after one file was edited (the best of a few edits,
each to a different file), the hot-reload path of a running worker. Ratios, not absolute
numbers, are the point; nothing is asserted.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Row

from rules import RuleSet, load_rules
from rules.reload import RuleSource

SIZES = (10, 1_000, 10_000)
PER_TYPE = 10
PER_FILE = 100
EDITS = 3


def file_text(start: int, count: int, types: int, edit: int = 0) -> str:
    lines = ["rules:"]
    for index in range(start, min(start + PER_FILE, count)):
        on = "request.*" if index < 2 else f"request.t{index % types}"
        lines += [
            f"  - id: rule-{index:05d}",
            f"    description: edit {edit}",
            f"    on: {on}",
            "    when:",
            "      all:",
            "        - request.priority.name: {in: [High, Urgent]}",
            f"        - request.subject: {{icontains: 'word{index % 7}'}}",
            "    actions:",
            "      - uses: log",
            '        with: {message: "{{ request.id }}"}',
        ]
    return "\n".join(lines) + "\n"


def write_rules(folder: Path, count: int) -> None:
    types = max(1, count // PER_TYPE)
    for start in range(0, count, PER_FILE):
        (folder / f"rules-{start:05d}.yml").write_text(file_text(start, count, types))


def reload_after_edit(folder: Path, count: int) -> tuple[float, int]:
    """Seconds for ``RuleSource.current()`` after editing one file (best of EDITS edits, each
    to another file), and the files parsed per reload."""
    types = max(1, count // PER_TYPE)
    source = RuleSource(folder, interval=0)
    source.current()
    starts = list(range(0, count, PER_FILE))
    best = float("inf")
    parsed_before = getattr(source, "files_parsed", 0)
    for edit in range(1, EDITS + 1):
        start = starts[(edit * len(starts)) // (EDITS + 1)]
        path = folder / f"rules-{start:05d}.yml"
        stat = path.stat()
        path.write_text(file_text(start, count, types, edit))
        # A later mtime whatever the clock granularity, as an editor's save would give.
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        started = time.perf_counter()
        rule_set = source.current()
        best = min(best, time.perf_counter() - started)
        assert len(rule_set) == count
        edited = rule_set.get(f"rule-{start:05d}")
        assert edited is not None
        assert edited.description == f"edit {edit}"
    parsed = getattr(source, "files_parsed", None)
    per_reload = (parsed - parsed_before) // EDITS if parsed is not None else len(starts)
    return best, per_reload


def context(event_type: str) -> dict[str, object]:
    return {
        "event": {"type": event_type},
        "request": {"id": "1", "priority": {"name": "High"}, "subject": "word3 outage"},
        "previous": None,
    }


def indexed(rule_set: RuleSet, ctx: dict[str, object]) -> int:
    event_type = ctx["event"]["type"]  # type: ignore[index]
    return sum(rule.evaluate(ctx).matched for rule in rule_set.for_event(event_type))


def naive_scan(rule_set: RuleSet):
    """The baseline: every enabled rule with its `on` patterns precompiled, scanned in full."""
    patterns = [
        ([re.compile(".*".join(map(re.escape, p.split("*")))) for p in rule.on], rule)
        for rule in rule_set.rules
        if rule.enabled
    ]

    def linear(_: RuleSet, ctx: dict[str, object]) -> int:
        event_type = ctx["event"]["type"]  # type: ignore[index]
        return sum(
            rule.evaluate(ctx).matched
            for compiled, rule in patterns
            if any(p.fullmatch(event_type) for p in compiled)
        )

    return linear


def per_event(fn, rule_set: RuleSet, contexts: list[dict[str, object]], budget: float) -> float:
    """Microseconds per event, looping over the contexts for about ``budget`` seconds."""
    runs = 0
    started = time.perf_counter()
    while True:
        for ctx in contexts:
            fn(rule_set, ctx)
        runs += len(contexts)
        elapsed = time.perf_counter() - started
        if elapsed >= budget:
            return elapsed / runs * 1e6


def main() -> None:
    rows = []
    for size in SIZES:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            write_rules(folder, size)
            started = time.perf_counter()
            rule_set = load_rules(folder)
            load_s = time.perf_counter() - started
            reload_s, reparsed = reload_after_edit(folder, size)
        types = max(1, size // PER_TYPE)
        contexts = [context(f"request.t{i % types}") for i in range(20)]
        candidates = sum(len(rule_set.for_event(c["event"]["type"])) for c in contexts) / 20
        linear = naive_scan(rule_set)
        assert all(indexed(rule_set, c) == linear(rule_set, c) for c in contexts)
        fast = per_event(indexed, rule_set, contexts, 0.5)
        slow = per_event(linear, rule_set, contexts, 0.5 if size < 10_000 else 1.0)
        rows.append((size, candidates, load_s, reload_s, reparsed, fast, slow))
    base = rows[0][5]
    print(
        f"{'rules':>7} {'files':>5} {'load s':>7} {'reload s':>9} {'parsed':>6} "
        f"{'load/reload':>11} {'candidates':>10} {'indexed us':>11} {'vs 10 rules':>11} "
        f"{'linear us':>10} {'linear/indexed':>15}"
    )
    for size, candidates, load_s, reload_s, reparsed, fast, slow in rows:
        files = -(-size // PER_FILE)
        print(
            f"{size:>7,} {files:>5} {load_s:>7.2f} {reload_s:>9.3f} {reparsed:>6} "
            f"{load_s / reload_s:>10.1f}x {candidates:>10.1f} {fast:>11.1f} "
            f"{fast / base:>10.2f}x {slow:>10.1f} {slow / fast:>14.1f}x"
        )


if __name__ == "__main__":
    main()


def _load_in_new_process(folder: Path, cache: Path | None) -> float:
    """Seconds of one ``load_rules`` in a fresh interpreter (what a starting worker pays)."""
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rules import load_rules\n"
        "from deskwire.rule_parse_cache import DiskParseStore\n"
        "store = DiskParseStore(Path(sys.argv[2])) if sys.argv[2] else None\n"
        "started = time.perf_counter()\n"
        "load_rules(sys.argv[1], store=store)\n"
        "print(time.perf_counter() - started)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(cache or "")],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Row]:
    """Rows of the results table: first load (parsed, and from the rule store: parsed trees
    and validated records) and matching."""
    size = 1_000 if quick else 10_000
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "rules", Path(tmp) / "cache"
        folder.mkdir()
        write_rules(folder, size)
        cold = _load_in_new_process(folder, None)
        _load_in_new_process(folder, cache)  # the first process after an edit fills the store
        warm = _load_in_new_process(folder, cache)
        rule_set = load_rules(folder)
    rows.append(Row(f"first load of {size:,} rules, parsing every file", f"{cold:.2f} s"))
    rows.append(
        Row(
            f"first load of {size:,} rules in a new process, rule store filled",
            f"{warm:.2f} s",
            f"parsing {cold:.2f} s",
            warm / cold,
            "<= 2 s" if size == 10_000 else "",
            warm <= 2.0 if size == 10_000 else None,
        )
    )
    types = max(1, size // PER_TYPE)
    contexts = [context(f"request.t{i % types}") for i in range(20)]
    linear = naive_scan(rule_set)
    fast = per_event(indexed, rule_set, contexts, 0.3 if quick else 1.0)
    slow = per_event(linear, rule_set, contexts, 0.3 if quick else 1.0)
    rows.append(
        Row(
            f"matching one event against {size:,} rules",
            f"{fast:,.0f} us",
            f"linear scan {slow:,.0f} us",
            fast / slow,
        )
    )
    return rows
