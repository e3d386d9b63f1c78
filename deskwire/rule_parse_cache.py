"""Parsed rule files kept on disk, so a new process does not parse 10,000 rules again.

Parsing YAML with positions is nearly all the cost of loading rules (about a millisecond
per rule). Every web and worker process loads the rules when it starts; with this store,
only the first process after an edit parses the edited files, the others read the parsed
trees (``rules.ParseStore``). Entries are named by a digest of the file's text and of the
parser's version, checked by a digest of their own content, and written atomically, so a
stale or damaged entry is never used: it only costs a parse.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

MAX_ENTRIES = 20_000  # about two entries per rule file of a large installation, and edits


class DiskParseStore:
    """``rules.ParseStore`` over a folder (``<DESKWIRE_VAR_DIR>/cache/rules``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._pruned = False

    def get(self, key: str) -> bytes | None:
        """The entry for ``key``, or ``None``."""
        try:
            return (self.folder / key).read_bytes()
        except OSError:
            return None

    def put(self, key: str, data: bytes) -> None:
        """Write the entry atomically; a failure is logged and otherwise ignored."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not self._pruned:
                self._pruned = True
                self._prune()
            with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".tmp-", delete=False) as f:
                f.write(data)
            Path(f.name).replace(self.folder / key)
        except OSError as exc:
            log.debug("cannot keep a parsed rule file in %s: %s", self.folder, exc)

    def _prune(self) -> None:
        """Once per process: drop the oldest entries beyond :data:`MAX_ENTRIES`."""
        entries = [(entry.stat().st_mtime, entry) for entry in self.folder.iterdir()]
        entries.sort(reverse=True)
        for _, entry in entries[MAX_ENTRIES:]:
            entry.unlink(missing_ok=True)
