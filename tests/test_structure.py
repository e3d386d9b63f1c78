"""Issue 12, point 7: no product module over about 500 lines, no copied blocks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.integration import ROOT


def test_product_code_has_no_oversized_modules_or_repeated_blocks() -> None:
    checked = subprocess.run(
        [sys.executable, "-P", "scripts/check_structure.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _check(repo: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", str(ROOT / "scripts" / "check_structure.py"), str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
    )


BLOCK = "".join(f"    total = total + {n} * factor\n" for n in range(6))


def test_the_check_names_a_long_module_and_both_places_of_a_copied_block(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["alpha"]\n', encoding="utf-8"
    )
    package = tmp_path / "alpha"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "one.py").write_text(f"def a(total, factor):\n{BLOCK}    return total\n")
    (package / "two.py").write_text(
        f'"""Two."""\n\nimport os\n\n\ndef b(total, factor):\n    # why\n{BLOCK}    return os\n'
    )
    (package / "long.py").write_text("".join(f"X{n} = {n}\n" for n in range(501)))
    found = _check(tmp_path)
    assert found.returncode == 1
    assert "alpha/long.py:1: 501 lines, over 500" in found.stdout
    assert "alpha/one.py:2-7: 6 lines repeated at alpha/two.py:8-13" in found.stdout


def test_docstrings_imports_comments_and_passed_on_names_are_not_compared(
    tmp_path: Path,
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["alpha"]\n', encoding="utf-8"
    )
    package = tmp_path / "alpha"
    package.mkdir()
    shared = (
        '    """Six\n    lines\n    of\n    the\n    same\n    docstring."""\n'
        "    # a\n    # b\n    # c\n    # d\n    # e\n    # f\n"
        "    return call(\n        link,\n        url=url,\n        what=what,\n"
        "        deadline=deadline,\n        timeout=timeout,\n"
    )
    (package / "one.py").write_text(
        f"from os import (\n    path,\n    sep,\n)\n\n\ndef a():\n{shared}        extra=1,\n    )\n"
    )
    (package / "two.py").write_text(
        f"from os import (\n    path,\n    sep,\n)\n\n\ndef b():\n{shared}        extra=2,\n    )\n"
    )
    checked = _check(tmp_path)
    assert checked.returncode == 0, checked.stdout
    assert "structure ok: 2 product modules" in checked.stdout
