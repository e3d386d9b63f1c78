"""The deskwire rule language: load, validate, match and render YAML rules.

Pure: reads rule files and nothing else; imports nothing else of deskwire. Reference and
tutorial: docs/rules.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from configfiles import ParseStore
from rules._actions import ACTIONS as ACTIONS
from rules._actions import ActionSpec, Arg
from rules._bounds import MAX_ITERATIONS, MAX_SECONDS
from rules._cases import CaseReport, CaseResult, run_cases
from rules._errors import RuleError, RuleLoadError, TemplateError
from rules._explain import (
    Explanation,
    RuleExplanation,
    StepExplanation,
    context_from_body,
    explain,
)
from rules._loader import load_rules, rule_files
from rules._model import MODES, Action, Rule, RuleSet, Verdict, reads_step
from rules._operators import OPERATORS as _OPERATORS
from rules._operators import Operator, Probe
from rules._templates import CompiledTemplate, TemplateCompileError, compile_template

OPERATORS: Mapping[str, Operator] = MappingProxyType(_OPERATORS)

__all__ = [
    "ACTIONS",
    "MAX_ITERATIONS",
    "MAX_SECONDS",
    "MODES",
    "OPERATORS",
    "Action",
    "ActionSpec",
    "Arg",
    "CaseReport",
    "CaseResult",
    "CompiledTemplate",
    "Explanation",
    "Operator",
    "ParseStore",
    "Probe",
    "Rule",
    "RuleError",
    "RuleExplanation",
    "RuleLoadError",
    "RuleSet",
    "StepExplanation",
    "TemplateCompileError",
    "TemplateError",
    "Verdict",
    "compile_template",
    "context_from_body",
    "explain",
    "load_rules",
    "reads_step",
    "rule_files",
    "run_cases",
]
