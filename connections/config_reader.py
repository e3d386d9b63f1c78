"""Typed reads of the connections file's mappings, on the config engine (:mod:`configfiles`).

The connections file is read as a :class:`configfiles.Node` tree, so every value knows its
line and column. :class:`FileReport` collects every problem as a :class:`ConfigIssue`, plus
the environment variables that ``${NAME}`` references need and do not find; :class:`Fields`
reads one mapping: text, flags, lists and mappings, each problem at the key or value at fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import SecretStr

from configfiles import Node, Path, Report, did_you_mean, mapping_entries, type_name
from connections.errors import ConfigIssue

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_URL_START = ("https://", "http://")


class FileReport(Report[ConfigIssue]):
    """The problems of one connections file, and the unset variables of the entry being read.

    ``missing``: variables referenced and not set; ``unset_fields``: the keys holding them.
    """

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        super().__init__(file)
        self.env = env
        self.missing: list[str] = []
        self.unset_fields: list[str] = []

    def located(self, line: int, column: int, path: str, message: str) -> ConfigIssue:
        """A :class:`ConfigIssue` at ``line``/``column`` of field ``path``."""
        return ConfigIssue(self.file, line, column, path, message)

    def take_missing(self) -> tuple[str, ...]:
        """The unset variables found since the last call (each once), forgetting them."""
        missing = tuple(dict.fromkeys(self.missing))
        self.missing = []
        self.unset_fields = []
        return missing


def scalar_value(node: Node, key: str) -> Any:
    """The plain value of ``key`` in a mapping, read before its keys are checked (it decides
    which keys apply); ``None`` when it is missing or not a single value."""
    value = node.get(key)
    return value.value if value is not None and value.is_scalar else None


def known_keys(
    common: Iterable[str], by_auth: Mapping[str, Iterable[str]], auth: str | None
) -> dict[str, str | None]:
    """Keys allowed in a node: ``None`` means fine, a string is why the key does not apply.

    ``by_auth``: the keys of each auth type; with ``auth`` unknown, every key is fine (the
    unknown auth type is the error to report).
    """
    known: dict[str, str | None] = dict.fromkeys(common)
    applicable = by_auth.get(auth or "")
    for keys in by_auth.values():
        for key in keys:
            if applicable is None or key in applicable:
                known[key] = None
            else:
                known.setdefault(key, f"is not used by auth type {auth}")
    return known


class Fields:
    """Typed reads of one mapping node; every problem is recorded with its position.

    Unknown keys (with a "did you mean") and keys that do not apply (``known`` maps them to
    why) are reported at the key when the mapping is read. A missing key is reported at the
    key holding the mapping (the mapping itself for list items and the document); a value
    of the wrong type or form at the value (at its key when it was left empty).
    """

    def __init__(
        self, report: FileReport, node: Node, path: Path, known: Mapping[str, str | None]
    ) -> None:
        self.report = report
        self.node = node
        self.path = path
        self.values: dict[str, Node] = {}
        for key, key_node, value_node in mapping_entries(node, path, report):
            if key not in known:
                report.error(key_node, (*path, key), "unknown key" + did_you_mean(key, known))
            elif known[key] is not None:
                report.error(key_node, (*path, key), str(known[key]))
            self.values[key] = value_node

    def has(self, key: str) -> bool:
        """Whether ``key`` is written (even with an empty value)."""
        return key in self.values

    def get(self, key: str) -> Node | None:
        """The value of ``key``; ``None`` when it is missing or left empty."""
        value = self.values.get(key)
        return None if value is None or (value.is_scalar and value.value is None) else value

    def missing(self, key: str, message: str = "is required") -> None:
        """Report a required key that is not there (or left empty)."""
        self.error(key, message)

    def error(self, key: str, message: str) -> None:
        """Report a problem with the value of ``key``; a missing key at the key holding
        this mapping."""
        if key in self.values:
            self.report.error(self.values[key], (*self.path, key), message)
        else:
            self.report.error(self.node, (*self.path, key), message, at_key=True)

    def text(
        self,
        key: str,
        *,
        required: bool = False,
        choices: Iterable[str] | None = None,
        env: bool = True,
        url: bool = False,
        max_len: int | None = None,
        default: str | None = None,
    ) -> str | None:
        """The text of ``key`` (numbers read as text), ``${NAME}`` filled from the environment
        when ``env``; ``default`` when missing or wrong (which is reported)."""
        node = self.get(key)
        if node is None:
            if required:
                self.missing(key)
            return default
        raw = node.value
        if not node.is_scalar or isinstance(raw, bool):
            self.error(key, f"must be a string, not {type_name(node)}")
            return default
        value: str | None = str(raw)
        if env:
            value = self._interpolate(key, str(raw))
            if value is None:
                return None
        assert value is not None
        if choices is not None:
            options = tuple(choices)
            if value not in options:
                self.error(
                    key,
                    f"'{value}' is not one of {', '.join(options)}" + did_you_mean(value, options),
                )
                return default
        if url and not value.startswith(_URL_START):
            self.error(key, f"'{value}' is not an http(s) URL")
            return default
        if max_len is not None and len(value) > max_len:
            self.error(key, f"is {len(value)} characters long; at most {max_len} are allowed")
            return default
        return value

    def secret(self, key: str) -> SecretStr | None:
        """:meth:`text`, wrapped so that it never shows."""
        value = self.text(key)
        return None if value is None else SecretStr(value)

    def flag(self, key: str, default: bool) -> bool:
        """``true`` or ``false``; ``default`` when missing or wrong."""
        if key not in self.values:
            return default
        node = self.values[key]
        if not isinstance(node.value, bool):
            self.error(key, "must be true or false")
            return default
        return node.value

    def strings(self, key: str) -> tuple[str, ...] | None:
        """A list of texts; ``None`` when missing, bad items left out (and reported)."""
        if key not in self.values:
            return None
        node = self.values[key]
        if not node.is_seq:
            self.error(key, "must be a list, e.g. [a.read, b.write]")
            return None
        items: list[str] = []
        for index, item in enumerate(node.value):
            raw = item.value
            if not item.is_scalar or isinstance(raw, bool) or raw is None or not str(raw):
                self.report.error(item, (*self.path, key, index), "must be a string")
                continue
            items.append(str(raw))
        return tuple(items)

    def mapping(self, key: str) -> Node | None:
        """The mapping of ``key``; ``None`` when missing, empty or not a mapping (reported)."""
        node = self.get(key)
        if node is None:
            return None
        if not node.is_map:
            self.error(key, "must be a mapping")
            return None
        return node

    def _interpolate(self, key: str, raw: str) -> str | None:
        """Fill ``${NAME}`` references; an unset variable is recorded, not an error."""
        leftover = _ENV_REF.sub("", raw)
        if "${" in leftover:
            self.error(key, "malformed ${...} reference; write ${ENV_NAME} (letters, digits, _)")
            return None
        env = self.report.env
        missing = [name for name in _ENV_REF.findall(raw) if name not in env]
        if missing:
            self.report.missing.extend(missing)
            self.report.unset_fields.append(key)
            return None
        return _ENV_REF.sub(lambda m: env[m.group(1)], raw)
