"""Per-file parse results of one rules folder, so that a reload re-parses only what changed.

Parsing and validating a file is nearly all the cost of loading rules; joining the files
(duplicate ids, connection names, the index, the version) is cheap. A :class:`FileCache`
keeps, per file, its stat key (mtime and size) and its :class:`ParsedFile`:

- same mtime and size: the file is not even read;
- otherwise it is read; same content (same digest) as before: the parsed result is kept;
- otherwise it is parsed again. Files that are gone are dropped.

Then every file, parsed now or before, is joined again by :func:`assemble`, so the rule
set and its errors are exactly what :func:`load_rules` gives for the same files.

Not thread-safe on its own: :class:`rules.reload.RuleSource` calls it under its lock.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from configfiles import ParseStore
from rules._loader import (
    ParsedFile,
    assemble,
    check_folder,
    file_digest,
    parse_file,
    unreadable,
)
from rules._model import RuleSet

# (relative name, mtime_ns, size), as listed by rules.reload.fingerprint.
Entry = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class _Cached:
    mtime_ns: int
    size: int
    parsed: ParsedFile


class FileCache:
    """Parsed rule files of one folder, by relative name (see the module doc)."""

    def __init__(self, store: ParseStore | None = None) -> None:
        self._store = store
        self.parses = 0  # files parsed so far: what the loads cost (logs, tests)
        self._directory: Path | None = None
        self._files: dict[str, _Cached] = {}

    def load(
        self, directory: Path, entries: Iterable[Entry], connections: Collection[str] | None
    ) -> RuleSet:
        """The rule set of the listed files of ``directory`` (in rule-file order), parsing
        only the files that changed since the last call.

        Raises :class:`RuleLoadError` like :func:`load_rules`; the cache is updated either
        way, so a file that stays broken is not parsed again either. Another folder than
        last time starts afresh.
        """
        if directory != self._directory:
            self._directory, self._files = directory, {}
        check_folder(directory)
        files: dict[str, _Cached] = {}
        for name, mtime_ns, size in entries:
            cached = self._files.get(name)
            if cached is None or (cached.mtime_ns, cached.size) != (mtime_ns, size):
                cached = self._refresh(directory / name, name, mtime_ns, size, cached)
            files[name] = cached
        self._files = {name: c for name, c in files.items() if c.parsed.digest is not None}
        return assemble([cached.parsed for cached in files.values()], connections)

    def _refresh(
        self, path: Path, name: str, mtime_ns: int, size: int, cached: _Cached | None
    ) -> _Cached:
        try:
            data = path.read_bytes()
        except OSError as exc:
            return _Cached(mtime_ns, size, unreadable(path, name, exc))
        digest = file_digest(name, data)
        if cached is not None and cached.parsed.digest == digest:
            return _Cached(mtime_ns, size, cached.parsed)  # touched, not changed
        self.parses += 1
        return _Cached(mtime_ns, size, parse_file(path, name, data, digest, self._store))
