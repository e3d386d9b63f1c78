"""Hot reload: a rule source that notices edits and keeps the last good rules.

``RuleSource(directory).current()`` is cheap to call per event: it looks at the folder at
most every ``interval`` seconds, using a fingerprint of file names, mtimes and sizes, and
reloads only when that changed. A reload re-parses only the files that changed (see
:mod:`rules._cache`) and joins them with the others again, so its cost follows the edit, not
the size of the folder. An invalid edit is logged and kept in ``last_error``; the previous
rules stay in force until the files are valid again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from pathlib import Path

from configfiles import ParseStore
from rules._cache import FileCache
from rules._errors import RuleError, RuleLoadError
from rules._loader import rule_files
from rules._model import RuleSet

logger = logging.getLogger("rules.reload")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """Names, modification times and sizes of the rule files (cheap: no file is read)."""
    if not directory.is_dir():
        return ()
    entries = []
    for path in rule_files(directory):
        try:
            stat = path.stat()
        except OSError:
            continue  # removed between listing and stat: the next check sees the new state
        entries.append((path.relative_to(directory).as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(entries)


class RuleSource:
    """The current rules of a folder, reloaded when files change. Thread-safe."""

    def __init__(
        self,
        directory: str | Path,
        interval: float = 2.0,
        connections: Collection[str] | None = None,
        store: ParseStore | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.interval = interval
        self.connections = connections
        self.last_error: RuleLoadError | None = None
        self._lock = threading.Lock()
        self._rules: RuleSet | None = None
        self._fingerprint: Fingerprint | None = None
        self._checked_at = float("-inf")
        self._cache = FileCache(store)

    @property
    def files_parsed(self) -> int:
        """How many rule files were parsed since this source was made (each reload adds only
        the files that changed)."""
        return self._cache.parses

    def current(self) -> RuleSet:
        """The rule set in force; raises :class:`RuleLoadError` if no load ever succeeded."""
        now = time.monotonic()
        rules = self._rules
        if rules is not None and now - self._checked_at < self.interval:
            return rules
        with self._lock:
            if self._rules is not None and now - self._checked_at < self.interval:
                return self._rules
            self._checked_at = now
            self._refresh()
            if self._rules is None:
                assert self.last_error is not None
                raise self.last_error
            return self._rules

    def _refresh(self) -> None:
        seen = fingerprint(self.directory)
        if self._rules is not None and seen == self._fingerprint:
            return
        if self._rules is None and self.last_error is not None and seen == self._fingerprint:
            return  # still the same broken files: do not re-parse or re-log
        self._fingerprint = seen
        parsed_before = self._cache.parses
        started = time.perf_counter()
        try:
            rules = self._cache.load(self.directory, seen, self.connections)
        except RuleLoadError as exc:
            self.last_error = exc
            keeping = f"; keeping rules version {self._rules.version}" if self._rules else ""
            logger.error("rules in %s are invalid%s:\n%s", self.directory, keeping, exc)
            return
        except OSError as exc:  # the folder vanished mid-read and similar
            error = RuleError(str(self.directory), 0, 0, None, "", f"cannot read: {exc}")
            self.last_error = RuleLoadError((error,))
            logger.error("rules in %s cannot be read: %s", self.directory, exc)
            return
        finally:
            logger.debug(
                "rules in %s: %d of %d files parsed, %.3f s",
                self.directory,
                self._cache.parses - parsed_before,
                len(seen),
                time.perf_counter() - started,
            )
        self.last_error = None
        if self._rules is not None and rules.version == self._rules.version:
            return  # same files (e.g. only touched): keep the set, and its per-event cache
        logger.info(
            "loaded %d rules from %s (version %s)", len(rules.rules), self.directory, rules.version
        )
        self._rules = rules
