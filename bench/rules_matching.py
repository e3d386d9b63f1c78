"""Per-event rule matching cost for 10, 1,000 and 10,000 rules.

Run: .venv/bin/python bench/rules_matching.py

Each rule set has about 10 rules per event type (plus two `request.*` glob rules), so the
rules that *could* match an event stay the same while the total grows. For each size it
times one event through ``RuleSet.for_event`` + ``Rule.evaluate`` (the indexed path), and
the same event through a naive scan of every rule (precompiled `on` patterns), measured
in the same run. Ratios, not absolute numbers, are the point; nothing is asserted.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

# Runnable from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rules import RuleSet, load_rules

SIZES = (10, 1_000, 10_000)
PER_TYPE = 10


def write_rules(folder: Path, count: int) -> None:
    types = max(1, count // PER_TYPE)
    per_file = 500
    for start in range(0, count, per_file):
        lines = ["rules:"]
        for index in range(start, min(start + per_file, count)):
            on = "request.*" if index < 2 else f"request.t{index % types}"
            lines += [
                f"  - id: rule-{index:05d}",
                f"    on: {on}",
                "    when:",
                "      all:",
                "        - request.priority.name: {in: [High, Urgent]}",
                f"        - request.subject: {{icontains: 'word{index % 7}'}}",
                "    actions:",
                "      - uses: log",
                '        with: {message: "{{ request.id }}"}',
            ]
        (folder / f"rules-{start:05d}.yml").write_text("\n".join(lines) + "\n")


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
        types = max(1, size // PER_TYPE)
        contexts = [context(f"request.t{i % types}") for i in range(20)]
        candidates = sum(len(rule_set.for_event(c["event"]["type"])) for c in contexts) / 20
        linear = naive_scan(rule_set)
        assert all(indexed(rule_set, c) == linear(rule_set, c) for c in contexts)
        fast = per_event(indexed, rule_set, contexts, 0.5)
        slow = per_event(linear, rule_set, contexts, 0.5 if size < 10_000 else 1.0)
        rows.append((size, candidates, load_s, fast, slow))
    base = rows[0][3]
    print(
        f"{'rules':>7} {'candidates':>10} {'load s':>7} {'indexed us':>11} "
        f"{'vs 10 rules':>11} {'linear us':>10} {'linear/indexed':>15}"
    )
    for size, candidates, load_s, fast, slow in rows:
        print(
            f"{size:>7,} {candidates:>10.1f} {load_s:>7.2f} {fast:>11.1f} "
            f"{fast / base:>10.2f}x {slow:>10.1f} {slow / fast:>14.1f}x"
        )


if __name__ == "__main__":
    main()
