"""Explain what rules would do with an event, without calling anything."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from configfiles import did_you_mean
from rules._errors import TemplateError
from rules._model import Rule, RuleSet, unresolved_marker


def context_from_body(body: Mapping[str, Any], *, source: str = "test") -> dict[str, Any]:
    """Build an evaluation context from a webhook body, as `rules test` does.

    ``event.type`` comes from the body's ``event``; ``request`` from its ``request`` (or the
    body itself when it has none); ``previous`` from an optional ``previous`` key.
    """
    request = body.get("request", body)
    previous = body.get("previous")
    return {
        "event": {
            "type": str(body.get("event", "")),
            "id": str(body.get("event_id", "test")),
            "source": source,
            "received_at": dt.datetime.now(dt.UTC).isoformat(),
        },
        "request": request if isinstance(request, Mapping) else {},
        "payload": dict(body),
        "previous": previous if isinstance(previous, Mapping) else None,
        "steps": {},
    }


def rule_context(context: Mapping[str, Any], rule: Rule) -> dict[str, Any]:
    """The context one rule's steps render with: adds ``rule`` and an empty ``steps``."""
    return {
        "steps": {},
        **context,
        "rule": {"id": rule.id, "description": rule.description},
    }


@dataclass(frozen=True, slots=True)
class StepExplanation:
    """A step as it would run. ``runs`` is ``None`` when `if` needs outputs of earlier steps."""

    id: str
    uses: str
    runs: bool | None
    note: str | None
    args: dict[str, Any]
    unresolved: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "uses": self.uses,
            "runs": self.runs,
            "note": self.note,
            "args": self.args,
            "unresolved": list(self.unresolved),
        }


@dataclass(frozen=True, slots=True)
class RuleExplanation:
    """One candidate rule: matched or the first failing condition; and its steps."""

    id: str
    file: str
    line: int
    matched: bool
    runs: bool
    reason: str | None
    steps: tuple[StepExplanation, ...]
    mode: str = "live"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "file": self.file,
            "line": self.line,
            "mode": self.mode,
            "matched": self.matched,
            "runs": self.runs,
            "reason": self.reason,
            "steps": [step.to_dict() for step in self.steps],
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """What the rule set would do with one event."""

    event_type: str
    version: str
    rules: tuple[RuleExplanation, ...]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape (see docs/rules.md, "JSON output")."""
        return {
            "event_type": self.event_type,
            "version": self.version,
            "rules": [rule.to_dict() for rule in self.rules],
        }

    def to_text(self) -> str:
        """A readable report, one block per candidate rule."""
        count = len(self.rules)
        lines = [
            f"event {self.event_type or '(no type)'}: {count} candidate rule"
            f"{'' if count == 1 else 's'} (rules version {self.version})"
        ]
        for rule in self.rules:
            if rule.runs:
                shadow = "  [shadow: records what it would send]" if rule.mode == "shadow" else ""
                lines.append(f"MATCH    {rule.id}  ({rule.file}:{rule.line}){shadow}")
            else:
                lines.append(f"no match {rule.id}: {rule.reason}")
            for step in rule.steps:
                state = {True: "", False: "  [skipped: if is false]", None: f"  [if: {step.note}]"}[
                    step.runs
                ]
                lines.append(f"    step {step.id}: {step.uses}{state}")
                for name, value in step.args.items():
                    shown = value if isinstance(value, str) else json.dumps(value, default=str)
                    lines.append(f"        {name}: {shown}")
        if not self.rules:
            lines.append("no rule listens to this event type")
        return "\n".join(lines)


def explain(
    rule_set: RuleSet, context: Mapping[str, Any], rule_id: str | None = None
) -> Explanation:
    """Say, for each candidate rule, whether it matches and what its steps would receive.

    Candidates are ``rule_set.for_event(event type)``, or only ``rule_id`` (then also a
    disabled rule or one that does not listen to the event is explained, as not matching).
    A matching rule after one with ``stop: true`` is reported as matched but not run.
    Raises ``LookupError`` for an unknown ``rule_id``.
    """
    event = context.get("event")
    event_type = str(event.get("type", "")) if isinstance(event, Mapping) else ""
    if rule_id is not None:
        rule = rule_set.get(rule_id)
        if rule is None:
            hint = did_you_mean(rule_id, [r.id for r in rule_set.rules])
            raise LookupError(f"unknown rule id {rule_id!r}{hint}")
        candidates: tuple[Rule, ...] = (rule,)
    else:
        candidates = rule_set.for_event(event_type)
    explained = []
    stopped_by: str | None = None
    for rule in candidates:
        explained.append(_explain_rule(rule, context, event_type, stopped_by))
        if explained[-1].runs and rule.stop and not rule.shadow:  # shadow: recorded only
            stopped_by = rule.id
    return Explanation(event_type, rule_set.version, tuple(explained))


def _explain_rule(
    rule: Rule, context: Mapping[str, Any], event_type: str, stopped_by: str | None
) -> RuleExplanation:
    def verdict(
        matched: bool, reason: str | None, steps: tuple[StepExplanation, ...] = ()
    ) -> RuleExplanation:
        runs = matched and stopped_by is None
        if matched and stopped_by is not None:
            reason = f"matched, but the earlier rule {stopped_by!r} has stop: true"
        return RuleExplanation(
            rule.id, rule.file, rule.line, matched, runs, reason, steps, rule.mode
        )

    if not rule.enabled:
        return verdict(False, "the rule is disabled (enabled: false)")
    if not rule.listens_to(event_type):
        return verdict(False, f"on: event type {event_type!r} is not one of {list(rule.on)}")
    result = rule.evaluate(context)
    if not result.matched:
        return verdict(False, result.reason)
    ctx = rule_context(context, rule)
    return verdict(True, None, tuple(_explain_step(action, ctx) for action in rule.actions))


def _explain_step(action: Any, context: Mapping[str, Any]) -> StepExplanation:
    runs: bool | None
    note: str | None = None
    try:
        runs = action.should_run(context)
    except TemplateError as exc:
        runs = None
        note = unresolved_marker(exc).strip("<>")
    args, problems = action.render_partial(context)
    return StepExplanation(action.id, action.uses, runs, note, args, tuple(problems))
