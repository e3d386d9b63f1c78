"""Structure checks of the product code (issue 12, point 7).

Run as ``.venv/bin/python -P scripts/check_structure.py`` from the repository (or give the
repository as the first argument). It reports:

* product modules over ``MAX_LINES`` lines, except the data tables of ``DATA_TABLES``;
* blocks of ``MIN_BLOCK`` or more lines repeated in product code, compared after
  normalising (each line stripped; blank lines, comments, imports and docstrings left
  out, and argument lines that only pass a name on, ``x,`` or ``x=x,``: those repeat
  wherever one function is called with the caller's own names, and carry no logic),
  except inside the registry-shaped definitions of ``REGISTRY_SHAPED``.

Product code is every ``.py`` file of the packages named in ``pyproject.toml`` under
``[tool.importlinter] root_packages``. Exit status 1 when anything is found (each finding
as ``file:line``), 0 otherwise.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_LINES = 500
MIN_BLOCK = 6
PASSED_ON = re.compile(r"(\w+)(=\1)?,")  # an argument line that passes a name on as is

# Modules allowed over MAX_LINES because they are data, not logic: path -> why.
DATA_TABLES: dict[str, str] = {}

# Definitions whose body is a registry (entries of one shape, one after another), where a
# repeated block is the shape of an entry, not copied logic: (path, top-level name) -> why.
REGISTRY_SHAPED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Line:
    """A significant line of a module: where it is, its normalised text, its definition."""

    number: int
    text: str
    owner: str  # the top-level definition it belongs to ("" at module level)


@dataclass(frozen=True)
class Module:
    path: str  # relative to the repository, with "/"
    total_lines: int
    lines: tuple[Line, ...]


@dataclass(frozen=True)
class Repeat:
    """One block of ``length`` significant lines found twice."""

    first: str
    first_lines: tuple[int, int]
    second: str
    second_lines: tuple[int, int]
    length: int


def root_packages(repo: Path) -> list[str]:
    """The packages whose code is product code, from the import-linter settings."""
    settings = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))
    return list(settings["tool"]["importlinter"]["root_packages"])


def product_files(repo: Path) -> Iterator[Path]:
    """Every ``.py`` file of the product packages, in a stable order."""
    for package in root_packages(repo):
        yield from sorted((repo / package).rglob("*.py"))


def _skipped_lines(tree: ast.Module) -> set[int]:
    """Lines of imports and docstrings (which the repeat check does not compare)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            skipped.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if (
                body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                first = body[0]
                skipped.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return skipped


def _owners(tree: ast.Module) -> dict[int, str]:
    """Line -> name of the top-level definition (function, class or assignment) holding it."""
    owners: dict[int, str] = {}
    for node in tree.body:
        name = ""
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            name = node.name
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name = node.target.id
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        for number in range(first, (node.end_lineno or node.lineno) + 1):
            owners[number] = name
    return owners


def read_module(repo: Path, path: Path) -> Module:
    """A module's size and its significant, normalised lines."""
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    skipped = _skipped_lines(tree)
    owners = _owners(tree)
    lines = []
    for number, raw in enumerate(source.splitlines(), start=1):
        text = raw.strip()
        if not text or text.startswith("#") or number in skipped or PASSED_ON.fullmatch(text):
            continue
        lines.append(Line(number, text, owners.get(number, "")))
    relative = path.relative_to(repo).as_posix()
    return Module(relative, len(source.splitlines()), tuple(lines))


def oversized(modules: Iterable[Module]) -> list[Module]:
    """Modules over MAX_LINES that are not allowed data tables."""
    return [m for m in modules if m.total_lines > MAX_LINES and m.path not in DATA_TABLES]


def _allowed(module: Module, index: int) -> bool:
    owner = module.lines[index].owner
    return bool(owner) and (module.path, owner) in REGISTRY_SHAPED


def repeats(modules: list[Module]) -> list[Repeat]:
    """Blocks of at least MIN_BLOCK significant lines that occur more than once."""
    windows: dict[tuple[str, ...], list[tuple[int, int]]] = defaultdict(list)
    for m, module in enumerate(modules):
        texts = [line.text for line in module.lines]
        for start in range(len(texts) - MIN_BLOCK + 1):
            if not any(_allowed(module, start + k) for k in range(MIN_BLOCK)):
                windows[tuple(texts[start : start + MIN_BLOCK])].append((m, start))
    # Pairs of places, by (first module, second module, offset): consecutive matching
    # windows of one pair are one longer block.
    runs: dict[tuple[int, int, int], list[int]] = defaultdict(list)
    for places in windows.values():
        for i, (m1, s1) in enumerate(places):
            for m2, s2 in places[i + 1 :]:
                if m1 == m2 and s2 - s1 < MIN_BLOCK:
                    continue  # overlapping itself: a run of alike lines, not a copied block
                runs[(m1, m2, s2 - s1)].append(s1)
    found = [
        _repeat(modules[m1], modules[m2], first, last, offset)
        for (m1, m2, offset), starts in runs.items()
        for first, last in _consecutive(sorted(starts))
    ]
    return sorted(found, key=lambda r: (r.first, r.first_lines, r.second, r.second_lines))


def _consecutive(numbers: list[int]) -> Iterator[tuple[int, int]]:
    """(first, last) of each run of consecutive numbers in a sorted list."""
    first = previous = numbers[0]
    for number in numbers[1:]:
        if number != previous + 1:
            yield first, previous
            first = number
        previous = number
    yield first, previous


def _repeat(first: Module, second: Module, start: int, last: int, offset: int) -> Repeat:
    end = last + MIN_BLOCK - 1
    return Repeat(
        first.path,
        (first.lines[start].number, first.lines[end].number),
        second.path,
        (second.lines[start + offset].number, second.lines[end + offset].number),
        end - start + 1,
    )


def main(argv: list[str]) -> int:
    """Print what the checks find; 1 when anything was found."""
    repo = Path(argv[1]).resolve() if len(argv) > 1 else Path(__file__).resolve().parent.parent
    modules = [read_module(repo, path) for path in product_files(repo)]
    big = oversized(modules)
    copied = repeats(modules)
    for module in big:
        print(
            f"{module.path}:1: {module.total_lines} lines, over {MAX_LINES}: split it by "
            "what its parts are for (or, if it is a data table, list it in DATA_TABLES "
            "of scripts/check_structure.py with the reason)"
        )
    for r in copied:
        print(
            f"{r.first}:{r.first_lines[0]}-{r.first_lines[1]}: {r.length} lines repeated at "
            f"{r.second}:{r.second_lines[0]}-{r.second_lines[1]}"
        )
    if big or copied:
        print(
            f"{len(big)} module(s) over {MAX_LINES} lines, {len(copied)} repeated block(s) of "
            f"{MIN_BLOCK}+ lines. Share repeated logic in one function; registry-shaped "
            "entries go in REGISTRY_SHAPED of scripts/check_structure.py with the reason."
        )
        return 1
    print(f"structure ok: {len(modules)} product modules")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
