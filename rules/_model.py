"""Frozen, typed records of loaded rules, and the rule set with its event-type index."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from rules._conditions import AllOf, AnyOf, Condition, Criterion, NotOf, clock
from rules._errors import TemplateError
from rules._templates import CompiledTemplate, render_tree

ON_ERROR = ("stop", "continue")
# `mode:` of a rule or a file. Shadow: matched and rendered, what each step would send is
# recorded, nothing is called (docs/rules.md, "Shadow mode").
MODES = ("live", "shadow")


@dataclass(frozen=True, slots=True)
class Verdict:
    """Whether a rule's `when` matched; ``reason`` is the first failing condition otherwise."""

    matched: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Action:
    """One step of a rule. ``args`` is the `with` mapping with its templates compiled."""

    id: str
    uses: str
    args: Mapping[str, Any] = field(repr=False)
    condition: CompiledTemplate | bool | None = field(repr=False)
    on_error: str = "stop"
    connection: str | None = None
    line: int = 0
    column: int = 0
    # A `wait` step's `until`: checked against the re-read request when the wait ends.
    until: Condition | None = field(default=None, repr=False)

    def until_holds(self, context: Mapping[str, Any]) -> Verdict:
        """Whether a `wait` step's `until` holds (true when it has none)."""
        if self.until is None:
            return Verdict(True)
        outcome = self.until.evaluate(context, clock(context))
        return Verdict(outcome.matched, outcome.reason)

    def should_run(self, context: Mapping[str, Any]) -> bool:
        """Render `if` (absent: true). Raises :class:`TemplateError`."""
        if self.condition is None or isinstance(self.condition, bool):
            return self.condition is not False
        return bool(self.condition.render(context))

    def render(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Render every template in `with`, recursively. Raises :class:`TemplateError`."""
        rendered = render_tree(self.args, context)
        assert isinstance(rendered, dict)
        return rendered

    def render_partial(self, context: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Render what can be rendered; each failing template becomes a ``<…>`` marker.

        Returns the arguments and one message per marker. Used by ``explain``, where the
        outputs of earlier steps (``steps.<id>``) do not exist because nothing is called.
        """
        return self._render_marking(context, lambda _exc: True)

    def render_without(
        self, context: Mapping[str, Any], steps: Collection[str]
    ) -> tuple[dict[str, Any], list[str]]:
        """Render like :meth:`render`, except that a template reading an output of one of
        ``steps`` (which have none: shadow steps call nothing) becomes its
        ``<known at run time: steps.…>`` marker. Any other template error raises.
        """
        return self._render_marking(context, lambda exc: reads_step(exc, steps))

    def _render_marking(
        self, context: Mapping[str, Any], marks: Callable[[TemplateError], bool]
    ) -> tuple[dict[str, Any], list[str]]:
        problems: list[str] = []

        def walk(value: Any) -> Any:
            if isinstance(value, CompiledTemplate):
                try:
                    return value.render(context)
                except TemplateError as exc:
                    if not marks(exc):
                        raise
                    problems.append(exc.message)
                    return unresolved_marker(exc)
            if isinstance(value, Mapping):
                return {key: walk(item) for key, item in value.items()}
            if isinstance(value, list | tuple):
                return [walk(item) for item in value]
            return value

        rendered = walk(self.args)
        assert isinstance(rendered, dict)
        return rendered, problems


def reads_step(exc: TemplateError, steps: Collection[str]) -> bool:
    """Whether a template failed because it read an output of one of ``steps``."""
    parts = (exc.variable or "").split(".")
    return len(parts) > 1 and parts[0] == "steps" and parts[1] in steps


def unresolved_marker(exc: TemplateError) -> str:
    """The placeholder shown for a template that cannot be rendered without running steps."""
    if exc.variable and exc.variable.startswith("steps."):
        return f"<known at run time: {exc.variable}>"
    return f"<error: {exc.message}>"


@dataclass(frozen=True, slots=True)
class Rule:
    """A loaded rule. ``when`` is ``None`` when the rule always matches its events."""

    id: str
    description: str
    on: tuple[str, ...]
    order: int
    stop: bool
    enabled: bool
    when: Condition | None = field(repr=False)
    actions: tuple[Action, ...] = field(repr=False)
    # Run on events that deskwire's own SDP writes caused (off: no loops by default).
    on_own_writes: bool = False
    file: str = ""
    line: int = 0
    mode: str = "live"

    @property
    def shadow(self) -> bool:
        """Whether the rule runs in shadow mode: it records what it would send, calls nothing."""
        return self.mode == "shadow"

    # Event types (exact or globs) of a newer event about the same request that cancel
    # this rule's waiting `wait` steps.
    cancel_waits_on: tuple[str, ...] = ()

    def evaluate(self, context: Mapping[str, Any]) -> Verdict:
        """Test `when` against the context (the event type is checked by ``for_event``)."""
        if self.when is None:
            return Verdict(True)
        outcome = self.when.evaluate(context, clock(context))
        return Verdict(outcome.matched, outcome.reason)

    def fields_read(self, root: str) -> frozenset[str] | None:
        """The keys right under ``root`` (e.g. ``request``) that `when`, `if` and `with` read.

        ``None`` when the rule reads ``root`` whole (``{{ request | tojson }}``). Lets the
        worker tell whether a webhook carries what the rules use before it calls SDP.
        """
        chains: list[tuple[str, ...]] = []
        if self.when is not None:
            chains.extend(_condition_paths(self.when))
        for action in self.actions:
            if isinstance(action.condition, CompiledTemplate):
                chains.extend(action.condition.references)
            chains.extend(_template_paths(action.args))
        keys: set[str] = set()
        for chain in chains:
            if chain[0] != root:
                continue
            if len(chain) == 1:
                return None
            keys.add(chain[1])
        return frozenset(keys)

    def listens_to(self, event_type: str) -> bool:
        """Whether one of the `on` patterns matches the event type."""
        return any(_glob(pattern).fullmatch(event_type) for pattern in self.on)

    def cancels_waits_on(self, event_type: str) -> bool:
        """Whether an event of this type cancels the rule's waiting waits (`cancel_waits_on`)."""
        return any(_glob(pattern).fullmatch(event_type) for pattern in self.cancel_waits_on)


def _condition_paths(condition: Condition) -> list[tuple[str, ...]]:
    if isinstance(condition, Criterion):
        return [condition.segments]
    if isinstance(condition, NotOf):
        return _condition_paths(condition.item)
    if isinstance(condition, AllOf | AnyOf):
        return [path for item in condition.items for path in _condition_paths(item)]
    return []


def _template_paths(value: Any) -> list[tuple[str, ...]]:
    if isinstance(value, CompiledTemplate):
        return list(value.references)
    if isinstance(value, Mapping):
        return [path for item in value.values() for path in _template_paths(item)]
    if isinstance(value, list | tuple):
        return [path for item in value for path in _template_paths(item)]
    return []


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


_CACHE_LIMIT = 4096


class RuleSet:
    """All loaded rules, sorted by (order, id), indexed by event type."""

    __slots__ = ("_by_id", "_cache", "_exact", "_globs", "_lock", "rules", "version")

    def __init__(self, rules: tuple[Rule, ...], version: str) -> None:
        self.rules: tuple[Rule, ...] = tuple(sorted(rules, key=lambda r: (r.order, r.id)))
        self.version = version
        self._by_id = {rule.id: rule for rule in self.rules}
        self._exact: dict[str, list[Rule]] = {}
        self._globs: list[tuple[re.Pattern[str], Rule]] = []
        for rule in self.rules:
            if not rule.enabled:
                continue
            for pattern in dict.fromkeys(rule.on):
                if "*" in pattern:
                    self._globs.append((_glob(pattern), rule))
                else:
                    self._exact.setdefault(pattern, []).append(rule)
        self._cache: dict[str, tuple[Rule, ...]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<RuleSet version={self.version} rules={len(self.rules)}>"

    def __len__(self) -> int:
        return len(self.rules)

    def get(self, rule_id: str) -> Rule | None:
        """The rule with this id, or ``None``."""
        return self._by_id.get(rule_id)

    def for_event(self, event_type: str) -> tuple[Rule, ...]:
        """Enabled rules whose `on` matches the event type, in (order, id) order.

        Exact types come from a dict, glob patterns from a short list; the result per event
        type is cached, so the cost follows the rules that can match, not the total.
        """
        cached = self._cache.get(event_type)
        if cached is not None:
            return cached
        found = {rule.id: rule for rule in self._exact.get(event_type, ())}
        for pattern, rule in self._globs:
            if rule.id not in found and pattern.fullmatch(event_type):
                found[rule.id] = rule
        result = tuple(sorted(found.values(), key=lambda r: (r.order, r.id)))
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()  # event types are few; unbounded input must not grow memory
            self._cache[event_type] = result
        return result

    def connections_used(self) -> dict[str, tuple[str, ...]]:
        """Link name → ids of the rules whose steps use that connection (sorted)."""
        used: dict[str, set[str]] = {}
        for rule in self.rules:
            for action in rule.actions:
                if action.connection is not None:
                    used.setdefault(action.connection, set()).add(rule.id)
        return {name: tuple(sorted(ids)) for name, ids in sorted(used.items())}
