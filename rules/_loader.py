"""Load a folder of rule files into a :class:`RuleSet`, reporting every error at once.

Which files: every ``*.yml`` / ``*.yaml`` under the folder, recursively, in sorted path
order, except hidden files and folders (names starting with ``.``) and regression test-case
files (``*.case.yml`` / ``*.case.yaml``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from types import MappingProxyType
from typing import Any

from configfiles import (
    INVALID,
    Field,
    Node,
    ParseStore,
    Path,
    Record,
    YamlProblem,
    did_you_mean,
    format_path,
    parse_yaml_cached,
)
from rules import _records
from rules._actions import ACTIONS
from rules._errors import RuleError, RuleLoadError
from rules._model import MODES, Action, Rule, RuleSet
from rules._rule_format import (
    ACTION_SCHEMA,
    CASE_SUFFIXES,
    FILE_SCHEMA,
    MAX_FILE_BYTES,
    RULE_SCHEMA,
)
from rules._schema import Report


def rule_files(directory: FsPath) -> list[FsPath]:
    """The rule files of a folder, recursively, in a stable order (see the module doc)."""
    found = []
    for path in directory.rglob("*"):
        relative = path.relative_to(directory)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix not in (".yml", ".yaml") or path.name.endswith(CASE_SUFFIXES):
            continue
        if path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(directory).as_posix())


@dataclass(frozen=True, slots=True)
class Candidate:
    """A rule of one file that is valid on its own; the id's position is for duplicate errors."""

    rule: Rule
    id_line: int
    id_column: int


@dataclass(frozen=True, slots=True)
class ConnectionUse:
    """A step's `connection:`, checked against the configured names when files are joined.

    ``error``: its error (at the value of `connection:`), less its message. ``candidate``:
    the index of the rule it belongs to in :attr:`ParsedFile.rules` (an unknown connection
    drops the rule), ``None`` when that rule has other errors anyway.
    """

    name: str
    error: RuleError
    candidate: int | None


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What one rule file contributes, whatever the other files and the connections are.

    ``digest``: SHA-256 of the file name and content (``None`` when the file could not be
    read). ``errors``: its own errors (duplicate ids across rules and unknown connections
    are found by :func:`assemble`).
    """

    name: str
    digest: bytes | None
    rules: tuple[Candidate, ...]
    errors: tuple[RuleError, ...]
    connection_uses: tuple[ConnectionUse, ...] = ()


def file_digest(name: str, data: bytes) -> bytes:
    """The digest of one file's name and content, from which :func:`version_of` is made."""
    encoded = name.encode()
    digest = hashlib.sha256(len(encoded).to_bytes(4, "big") + encoded)
    digest.update(len(data).to_bytes(8, "big"))
    digest.update(data)
    return digest.digest()


def version_of(digests: Iterable[bytes]) -> str:
    """A short digest of the file names and contents (see :func:`file_digest`)."""
    return hashlib.sha256(b"".join(digests)).hexdigest()[:12]


def read_document(
    path: FsPath, data: bytes, report: Report, top: str = "rules", store: ParseStore | None = None
) -> Node | None:
    """Decode and parse one file, reporting why it cannot be used.

    ``store``: where parsed trees are kept between processes (see ``ParseStore``).
    """
    if len(data) > MAX_FILE_BYTES:
        report.error(None, (), f"file larger than {MAX_FILE_BYTES} bytes")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.error(None, (), f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        return None
    try:
        node = parse_yaml_cached(text, store)
    except YamlProblem as exc:
        report.errors.append(RuleError(report.file, exc.line, exc.column, None, "", exc.message))
        return None
    if node is None:
        report.error(None, (), f"the file is empty; expected a mapping with a `{top}:` list")
        return None
    return node


def check_folder(root: FsPath) -> None:
    """Raise :class:`RuleLoadError` unless ``root`` is a folder."""
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise RuleLoadError((RuleError(str(root), 0, 0, None, "", f"rules folder {what}"),))


def load_rules(
    directory: str | FsPath,
    connections: Collection[str] | None = None,
    store: ParseStore | None = None,
) -> RuleSet:
    """Load and validate every rule file under ``directory``.

    ``connections``: the connection link names that exist; every `connection:` in a step must
    be one of them (``None`` skips that check). Raises :class:`RuleLoadError` listing every
    error of every file.
    """
    root = FsPath(directory)
    check_folder(root)
    files = [read_file(root, path, store) for path in rule_files(root)]
    return assemble(files, connections)


def read_file(root: FsPath, path: FsPath, store: ParseStore | None = None) -> ParsedFile:
    """Read and parse one rule file (a file that cannot be read gives one error)."""
    name = path.relative_to(root).as_posix()
    try:
        data = path.read_bytes()
    except OSError as exc:
        return unreadable(path, name, exc)
    return parse_file(path, name, data, store=store)


def unreadable(path: FsPath, name: str, exc: OSError) -> ParsedFile:
    """The result for a file that cannot be read: that error, no rules, no digest."""
    report = Report(str(path))
    report.error(None, (), f"cannot read: {exc.strerror or exc}")
    return ParsedFile(name, None, (), tuple(report.errors))


def parse_file(
    path: FsPath,
    name: str,
    data: bytes,
    digest: bytes | None = None,
    store: ParseStore | None = None,
) -> ParsedFile:
    """Parse and validate the content of one rule file on its own.

    ``digest``: :func:`file_digest` of ``name`` and ``data`` when the caller has it already.
    ``store``: where parsed trees and the records of valid files are kept between
    processes (see :mod:`rules._records`).
    """
    digest = digest if digest is not None else file_digest(name, data)
    key = _records.records_key(str(path), digest) if store is not None else ""
    if store is not None:
        kept = _records.get(store, key)
        if isinstance(kept, ParsedFile) and kept.name == name and kept.digest == digest:
            return kept
    report = Report(str(path))
    uses: list[ConnectionUse] = []
    candidates = _read_file(path, data, report, uses, store)
    parsed = ParsedFile(name, digest, tuple(candidates), tuple(report.errors), tuple(uses))
    if store is not None and not parsed.errors:
        _records.put(store, key, parsed)
    return parsed


def assemble(files: Sequence[ParsedFile], connections: Collection[str] | None) -> RuleSet:
    """Join parsed files (in rule-file order) into a rule set: the steps across files.

    Unknown connections and rule ids defined twice are reported here; raises
    :class:`RuleLoadError` with every error of every file, sorted by file, line and column.
    """
    errors: list[RuleError] = []
    rules: list[Rule] = []
    first_seen: dict[str, Rule] = {}
    known = ", ".join(sorted(connections)) if connections is not None else ""
    for parsed in files:
        file_errors = list(parsed.errors)
        dropped: set[int] = set()
        if connections is not None and parsed.connection_uses:
            unknown = [use for use in parsed.connection_uses if use.name not in connections]
            for use in unknown:
                hint = did_you_mean(use.name, connections)
                message = f"unknown connection {use.name!r}{hint} (configured: {known or 'none'})"
                file_errors.append(dataclasses.replace(use.error, message=message))
            dropped = {use.candidate for use in unknown if use.candidate is not None}
        for index, candidate in enumerate(parsed.rules):
            if index in dropped:
                continue
            rule = candidate.rule
            other = first_seen.get(rule.id)
            if other is not None:
                file_errors.append(
                    RuleError(
                        rule.file,
                        candidate.id_line,
                        candidate.id_column,
                        rule.id,
                        "rules",
                        f"duplicate rule id {rule.id!r}: also defined at {other.file}:{other.line}",
                    )
                )
                continue
            first_seen[rule.id] = rule
            rules.append(rule)
        errors.extend(file_errors)
    if errors:
        raise RuleLoadError(tuple(errors))
    digests = (parsed.digest for parsed in files if parsed.digest is not None)
    return RuleSet(tuple(rules), version_of(digests))


def _read_file(
    path: FsPath,
    data: bytes,
    report: Report,
    uses: list[ConnectionUse],
    store: ParseStore | None = None,
) -> list[Candidate]:
    node = read_document(path, data, report, store=store)
    if node is None:
        return []
    if not node.is_map:
        report.error(node, (), "expected a mapping with a `rules:` list at the top")
        return []
    top = FILE_SCHEMA.check(node, (), report)
    items = top.get("rules")
    if items is INVALID or items is None:
        return []
    # A bad file-level mode is reported once; its rules are read as live meanwhile.
    file_mode = top["mode"] if top["mode"] in MODES else "live"
    built: list[Candidate] = []
    for index, item in enumerate(items):
        first_use = len(uses)
        rule = _read_rule(item, ("rules", index), str(path), report, uses, file_mode)
        slot = len(built) if rule is not None else None
        for at in range(first_use, len(uses)):
            uses[at] = dataclasses.replace(uses[at], candidate=slot)
        if rule is not None:
            built.append(rule)
    return built


def _id_of(node: Node) -> tuple[str | None, Node]:
    value = node.get("id")
    if value is not None and value.is_scalar and isinstance(value.value, str):
        return value.value, value
    return None, node


def _read_rule(
    node: Node,
    path: Path,
    file: str,
    report: Report,
    uses: list[ConnectionUse],
    file_mode: str = "live",
) -> Candidate | None:
    rule_id, id_node = _id_of(node)
    report.rule = rule_id
    try:
        before = len(report.errors)
        values = RULE_SCHEMA.check(node, path, report)
        if values is INVALID:
            return None
        actions = _read_actions(values["actions"], (*path, "actions"), report, uses)
        if len(report.errors) > before or actions is None:
            return None
        if values["cancel_waits_on"] and not any(a.uses == "wait" for a in actions):
            report.error(
                _value_node(node, "cancel_waits_on"),
                (*path, "cancel_waits_on"),
                "cancel_waits_on needs a `uses: wait` step in this rule's actions "
                "(there is no wait to cancel); add one or remove cancel_waits_on",
            )
            return None
        rule = Rule(
            id=values["id"],
            description=values["description"],
            on=values["on"],
            order=values["order"],
            stop=values["stop"],
            enabled=values["enabled"],
            when=values["when"],
            actions=actions,
            on_own_writes=values["on_own_writes"],
            file=file,
            line=node.line,
            mode=values["mode"] or file_mode,
            cancel_waits_on=values["cancel_waits_on"],
        )
        return Candidate(rule, id_node.line, id_node.column)
    finally:
        report.rule = None
        report.step_ids = None


def _read_actions(
    nodes: Any, path: Path, report: Report, uses: list[ConnectionUse]
) -> tuple[Action, ...] | None:
    if nodes is INVALID:
        return None
    actions: list[Action] = []
    ids: list[str] = []
    ok = True
    for index, node in enumerate(nodes):
        here = (*path, index)
        report.step_ids = tuple(ids)
        values = ACTION_SCHEMA.check(node, here, report)
        if values is INVALID:
            ok = False
            ids.append(f"step{index + 1}")
            continue
        step_id = values["id"] if isinstance(values["id"], str) else f"step{index + 1}"
        if step_id in ids:
            at = _value_node(node, "id")
            report.error(at, (*here, "id"), f"duplicate step id {step_id!r} in this rule")
            ok = False
        ids.append(step_id)
        action = _read_action(step_id, values, node, here, report, uses)
        if action is None or any(v is INVALID for v in values.values()):
            ok = False
            continue
        actions.append(action)
    return tuple(actions) if ok else None


def _read_action(
    step_id: str,
    values: dict[str, Any],
    node: Node,
    path: Path,
    report: Report,
    connection_uses: list[ConnectionUse],
) -> Action | None:
    uses = values["uses"]
    if uses is INVALID:
        return None
    spec = ACTIONS[uses]
    schema = Record(
        {name: Field(arg.kind, arg.required) for name, arg in spec.args.items()},
        what=f"argument of {uses}",
    )
    with_node: Node | None = values["with"]
    here = (*path, "with")
    if with_node is None:
        if spec.required:
            report.error(
                node,
                path,
                f"{uses} needs `with:` and its arguments: " + ", ".join(spec.required),
                at_key=True,
            )
            return None
        args: Any = {}
    else:
        args = schema.check(with_node, here, report)
        if args is INVALID or any(v is INVALID for v in args.values()):
            return None
        args = {
            name: value
            for name, value in args.items()
            if value is not None or _given(with_node, name)
        }
        if spec.one_of and not any(name in args for name in spec.one_of):
            report.error(
                with_node, here, f"{uses} needs at least one of: " + ", ".join(spec.one_of)
            )
            return None
    # A wait's `until` is a condition, not an argument to render: it lives on the step.
    until = args.pop("until", None) if uses == "wait" else None
    connection = args.get("connection")
    if connection is not None:
        # Checked against the configured names when the files are joined (see assemble).
        at = _value_node(with_node, "connection")
        line, column = (at.line, at.column) if at is not None else (0, 0)
        where = format_path((*here, "connection"))
        error = RuleError(report.file, line, column, report.rule, where, "")
        connection_uses.append(ConnectionUse(connection, error, None))
    return Action(
        step_id,
        uses,
        MappingProxyType(args),
        values["if"],
        values["on_error"],
        connection,
        node.line,
        node.column,
        until,
    )


def _given(node: Node | None, name: str) -> bool:
    return node is not None and node.get(name) is not None


def _value_node(node: Node | None, name: str) -> Node | None:
    """The value of ``name`` in ``node``, or ``node`` itself when it has none."""
    found = node.get(name) if node is not None else None
    return found if found is not None else node
