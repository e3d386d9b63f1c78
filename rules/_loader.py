"""Load a folder of rule files into a :class:`RuleSet`, reporting every error at once.

Which files: every ``*.yml`` / ``*.yaml`` under the folder, recursively, in sorted path
order, except hidden files and folders (names starting with ``.``) and regression test-case
files (``*.case.yml`` / ``*.case.yaml``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from pathlib import Path as FsPath
from types import MappingProxyType
from typing import Any

from rules._actions import ACTIONS
from rules._conditions import read_condition
from rules._errors import RuleError, RuleLoadError
from rules._model import ON_ERROR, Action, Rule, RuleSet
from rules._schema import (
    INVALID,
    Boolean,
    Choice,
    Custom,
    Field,
    Integer,
    ListOf,
    OneOrList,
    Path,
    Raw,
    Record,
    Report,
    Templated,
    Text,
    did_you_mean,
)
from rules._yaml import Node, YamlProblem, parse_yaml

RULE_ID = r"[a-z0-9][a-z0-9_-]*"
STEP_ID = r"[a-z_][a-z0-9_]*"
EVENT_PATTERN = r"[A-Za-z0-9_.:*-]+"
CASE_SUFFIXES = (".case.yml", ".case.yaml")
MAX_FILE_BYTES = 2 * 1024 * 1024

# The rule format, as data. Conditions and `with` arguments have schemas of their own
# (the operator registry and the action catalogue).
ACTION_SCHEMA = Record(
    {
        "id": Field(
            Text(
                pattern=STEP_ID,
                hint="a step id is lowercase letters, digits and _, "
                "starting with a letter or _ (so that steps.<id> works in templates)",
            )
        ),
        "uses": Field(Choice(tuple(ACTIONS), what="action"), required=True),
        "with": Field(Raw()),
        "if": Field(Templated(Boolean(), native_only=True)),
        "on_error": Field(Choice(ON_ERROR, what="on_error value"), default="stop"),
    },
    what="step key",
)

RULE_SCHEMA = Record(
    {
        "id": Field(
            Text(
                pattern=RULE_ID,
                hint="a rule id is lowercase letters, digits, _ and "
                "-, starting with a letter or digit",
            ),
            required=True,
        ),
        "description": Field(Text(), default=""),
        "on": Field(
            OneOrList(
                Text(
                    pattern=EVENT_PATTERN,
                    hint="an event type such as request.created, or a glob such as request.*",
                )
            ),
            required=True,
        ),
        "order": Field(Integer(), default=100),
        "stop": Field(Boolean(), default=False),
        "enabled": Field(Boolean(), default=True),
        "on_own_writes": Field(Boolean(), default=False),
        "when": Field(Custom(read_condition, expected="a condition")),
        "actions": Field(ListOf(Raw()), default=()),
    },
    what="rule key",
)

FILE_SCHEMA = Record({"rules": Field(ListOf(Raw()), required=True)}, what="top-level key")


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


def version_of(directory: FsPath, contents: Iterable[tuple[FsPath, bytes]]) -> str:
    """A short digest of the file names and contents: same files, same version."""
    digest = hashlib.sha256()
    for path, data in contents:
        name = path.relative_to(directory).as_posix().encode()
        digest.update(len(name).to_bytes(4, "big") + name)
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:12]


def read_document(path: FsPath, data: bytes, report: Report, top: str = "rules") -> Node | None:
    """Decode and parse one file, reporting why it cannot be used."""
    if len(data) > MAX_FILE_BYTES:
        report.error(None, (), f"file larger than {MAX_FILE_BYTES} bytes")
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.error(None, (), f"not UTF-8 text: {exc.reason} at byte {exc.start}")
        return None
    try:
        node = parse_yaml(text)
    except YamlProblem as exc:
        report.errors.append(RuleError(report.file, exc.line, exc.column, None, "", exc.message))
        return None
    if node is None:
        report.error(None, (), f"the file is empty; expected a mapping with a `{top}:` list")
        return None
    return node


def load_rules(directory: str | FsPath, connections: Collection[str] | None = None) -> RuleSet:
    """Load and validate every rule file under ``directory``.

    ``connections``: the connection link names that exist; every `connection:` in a step must
    be one of them (``None`` skips that check). Raises :class:`RuleLoadError` listing every
    error of every file.
    """
    root = FsPath(directory)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise RuleLoadError((RuleError(str(root), 0, 0, None, "", f"rules folder {what}"),))
    errors: list[RuleError] = []
    rules: list[Rule] = []
    contents: list[tuple[FsPath, bytes]] = []
    first_seen: dict[str, Rule] = {}
    for path in rule_files(root):
        report = Report(str(path))
        try:
            data = path.read_bytes()
        except OSError as exc:
            report.error(None, (), f"cannot read: {exc.strerror or exc}")
            errors.extend(report.errors)
            continue
        contents.append((path, data))
        for rule, id_node in _read_file(path, data, report, connections):
            other = first_seen.get(rule.id)
            if other is not None:
                report.rule = rule.id
                report.error(
                    id_node,
                    ("rules",),
                    f"duplicate rule id {rule.id!r}: also defined at {other.file}:{other.line}",
                )
                continue
            first_seen[rule.id] = rule
            rules.append(rule)
        errors.extend(report.errors)
    if errors:
        raise RuleLoadError(tuple(errors))
    return RuleSet(tuple(rules), version_of(root, contents))


def _read_file(
    path: FsPath, data: bytes, report: Report, connections: Collection[str] | None
) -> list[tuple[Rule, Node]]:
    node = read_document(path, data, report)
    if node is None:
        return []
    if not node.is_map:
        report.error(node, (), "expected a mapping with a `rules:` list at the top")
        return []
    top = FILE_SCHEMA.check(node, (), report)
    items = top.get("rules")
    if items is INVALID or items is None:
        return []
    built = []
    for index, item in enumerate(items):
        rule = _read_rule(item, ("rules", index), str(path), report, connections)
        if rule is not None:
            built.append(rule)
    return built


def _id_of(node: Node) -> tuple[str | None, Node]:
    if node.is_map:
        for key, value in node.value:
            if key.value == "id" and value.is_scalar and isinstance(value.value, str):
                return value.value, value
    return None, node


def _read_rule(
    node: Node, path: Path, file: str, report: Report, connections: Collection[str] | None
) -> tuple[Rule, Node] | None:
    rule_id, id_node = _id_of(node)
    report.rule = rule_id
    try:
        before = len(report.errors)
        values = RULE_SCHEMA.check(node, path, report)
        if values is INVALID:
            return None
        actions = _read_actions(values["actions"], (*path, "actions"), report, connections)
        if len(report.errors) > before or actions is None:
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
        )
        return rule, id_node
    finally:
        report.rule = None
        report.step_ids = None


def _read_actions(
    nodes: Any, path: Path, report: Report, connections: Collection[str] | None
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
            report.error(node, (*here, "id"), f"duplicate step id {step_id!r} in this rule")
            ok = False
        ids.append(step_id)
        action = _read_action(step_id, values, node, here, report, connections)
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
    connections: Collection[str] | None,
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
                node, path, f"{uses} needs `with:` and its arguments: " + ", ".join(spec.required)
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
    connection = args.get("connection")
    if connection is not None and connections is not None and connection not in connections:
        hint = did_you_mean(connection, connections)
        known = ", ".join(sorted(connections)) or "none"
        report.error(
            _value_node(with_node, "connection"),
            (*here, "connection"),
            f"unknown connection {connection!r}{hint} (configured: {known})",
        )
        return None
    return Action(
        step_id,
        uses,
        MappingProxyType(args),
        values["if"],
        values["on_error"],
        connection,
        node.line,
        node.column,
    )


def _given(node: Node | None, name: str) -> bool:
    return node is not None and any(key.value == name for key, _ in node.value)


def _value_node(node: Node | None, name: str) -> Node | None:
    if node is not None:
        for key, value in node.value:
            if key.value == name:
                found: Node = value
                return found
    return node
