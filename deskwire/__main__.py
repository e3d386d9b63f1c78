"""``python -m deskwire``: the same as the ``deskwire`` command.

``python -m`` puts the working directory first on ``sys.path``. An operator's folder often
holds ``rules/`` or ``connections/`` folders, which would then shadow deskwire's own
packages of the same names; so that entry is dropped before anything else is imported
(unless the working directory is deskwire's own source tree).
"""

import os
import sys
from pathlib import Path


def _drop_working_directory() -> None:
    if sys.flags.safe_path or not sys.path:
        return
    first = Path(sys.path[0] or os.curdir).resolve()
    source_tree = Path(__file__).resolve().parent.parent
    if first == Path.cwd().resolve() and first != source_tree:
        del sys.path[0]


_drop_working_directory()

from deskwire.cli import main  # noqa: E402 - after the sys.path repair above

main()
