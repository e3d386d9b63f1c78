"""The one results table every benchmark prints."""

from __future__ import annotations

from collections.abc import Sequence

from harness import Row

HEADER = ("benchmark", "deskwire", "baseline, same run", "ratio", "target", "met")


def print_table(rows: Sequence[Row]) -> None:
    """Print the rows as a Markdown table (it reads in a terminal and pastes into docs)."""
    lines = [HEADER]
    for row in rows:
        ratio = f"{row.ratio:.2f}x" if row.ratio is not None else ""
        met = "" if row.met is None else ("yes" if row.met else "NO")
        lines.append((row.name, row.value, row.baseline, ratio, row.target, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]
    for index, line in enumerate(lines):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) + " |")
        if index == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
