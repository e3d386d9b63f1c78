"""Sandboxed Jinja2 templates: compiled at load time, rendered with a context dict.

Only rule authors write templates; request data is passed in as values and is never itself
rendered as a template. The sandbox still closes the known escapes (dunder attributes, the
template globals, ``str.format`` field access) and caps the cheap ways to burn memory or CPU
(huge ranges, string repetition, big powers, giant format widths); :mod:`rules._bounds`
stops a render that grows too large or runs too long while it runs.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, Undefined, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.meta import find_undeclared_variables
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rules._bounds import (
    CONCAT_FILTER,
    LOOP_FILTER,
    MAX_OUTPUT,
    RenderBudget,
    bound_tree,
    bounded_filter,
    check_binop,
    check_str_call,
    checked,
    concat_filter,
    loop_filter,
    tick,
)
from rules._errors import TemplateError

MARKERS = ("{{", "{%", "{#")
MAX_RANGE = 10_000
MAX_SEQUENCE = 100_000
MAX_POWER_BITS = 100_000
# A field width or precision of 4+ digits (or a `*` taken from the arguments) in a format string.
_BIG_PERCENT_WIDTH = re.compile(r"%[^a-zA-Z%]*?(\*|\d{4,})")
_BIG_BRACE_WIDTH = re.compile(r"\{[^{}]*:[^{}]*(\d{4,}|\{)")


def _capped_range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items")
    return values


def _check_format_string(text: str) -> None:
    if _BIG_PERCENT_WIDTH.search(text) or _BIG_BRACE_WIDTH.search(text):
        raise SecurityError("format widths of 1000 or more are not allowed in templates")


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        check_binop(operator, left, right)
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_SEQUENCE:
                    raise SecurityError(f"results longer than {MAX_SEQUENCE} are not allowed")
        elif operator == "**":
            too_big = (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and max(left.bit_length(), 1) * right > MAX_POWER_BITS
            )
            if too_big:
                raise SecurityError("this power is too large for a template")
        elif operator == "%" and isinstance(left, str):
            _check_format_string(left)
        return checked(super().call_binop(context, operator, left, right), "this result")

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        tick()
        check_str_call(__obj, args)
        return checked(super().call(__context, __obj, *args, **kwargs), "this call's result")

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            _check_format_string(str(getattr(value, "__self__", "")))
        return wrapped


def _safe_format(value: Any, *args: Any, **kwargs: Any) -> str:
    text = str(value)
    _check_format_string(text)
    return text % (kwargs or args)


def _capped_width(name: str, original: Callable[..., str]) -> Callable[..., str]:
    def capped(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> str:
        if isinstance(width, int) and width > MAX_SEQUENCE:
            raise SecurityError(f"{name} width is limited to {MAX_SEQUENCE}")
        return original(value, width, *args, **kwargs)

    return capped


def _make_environment() -> _Sandbox:
    env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    # Only harmless helpers remain: no lipsum/cycler/joiner/namespace objects to poke at.
    env.globals.clear()
    env.globals["range"] = _capped_range
    env.globals["dict"] = dict
    env.filters["format"] = _safe_format
    for name in ("center", "indent", "truncate", "wordwrap"):
        env.filters[name] = _capped_width(name, env.filters[name])
    for name, function in list(env.filters.items()):
        env.filters[name] = bounded_filter(name, function)
    env.filters[LOOP_FILTER] = loop_filter
    env.filters[CONCAT_FILTER] = concat_filter
    return env


ENVIRONMENT = _make_environment()

# Variables a template may use (the keys of the evaluation context).
TEMPLATE_ROOTS = ("event", "request", "payload", "previous", "steps", "rule")


def has_template(text: str) -> bool:
    """Whether a string contains Jinja markup (otherwise it is a plain literal)."""
    return any(marker in text for marker in MARKERS)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """A template compiled at load time.

    ``native``: the source is exactly one ``{{ expression }}``; rendering returns the value
    itself (int, bool, dict, …) rather than text. ``references``: dotted variable chains the
    template reads from the context, in source order (``("steps", "page", "status")``).
    """

    source: str
    native: bool = field(repr=False)
    references: tuple[tuple[str, ...], ...] = field(repr=False)
    roots: frozenset[str] = field(repr=False)
    _template: Template | None = field(repr=False)  # None when native
    _expression: Callable[..., Any] | None = field(repr=False)

    def render(self, context: Mapping[str, Any]) -> Any:
        """Render against ``context``; raises :class:`TemplateError` naming what is missing."""
        try:
            with RenderBudget():
                if self._expression is not None:
                    value = self._expression(**context)
                    if isinstance(value, Undefined):
                        raise UndefinedError("undefined value")
                    return _to_data(checked(value, "the value"))
                assert self._template is not None
                text = self._stream(context)
        except TemplateError:
            raise
        except UndefinedError as exc:
            raise self._undefined(context, exc) from None
        except SecurityError as exc:
            raise TemplateError(f"not allowed in a template: {exc}", source=self.source) from None
        except Exception as exc:  # noqa: BLE001 - a template can fail in any way; report, not crash
            message = f"template failed: {type(exc).__name__}: {exc}"
            raise TemplateError(message, source=self.source) from None
        return text

    def _stream(self, context: Mapping[str, Any]) -> str:
        """The rendered text, counted as it is produced and stopped at :data:`MAX_OUTPUT`."""
        assert self._template is not None
        parts: list[str] = []
        size = 0
        chunks = self._template.generate(context)
        try:
            for chunk in chunks:
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(
                        f"rendered text longer than {MAX_OUTPUT}", source=self.source
                    )
                tick()
                parts.append(chunk)
        finally:
            if isinstance(chunks, Generator):
                chunks.close()  # stop the template's code where it is
        return "".join(parts)

    def _undefined(self, context: Mapping[str, Any], exc: Exception) -> TemplateError:
        for chain in self.references:
            missing = _first_missing(context, chain)
            if missing is not None:
                name, note = missing
                return TemplateError(
                    f"'{name}' is undefined{note}", variable=name, source=self.source
                )
        return TemplateError(f"undefined: {exc}", source=self.source)


def _first_missing(context: Mapping[str, Any], chain: tuple[str, ...]) -> tuple[str, str] | None:
    if chain[0] not in context:
        return chain[0], ""
    if chain[0] == "steps" and not _resolves(context, chain):
        # Name the whole output read (steps.page.json.key): what explain marks as "at run time".
        return ".".join(chain), ""
    value: Any = context[chain[0]]
    for index, segment in enumerate(chain[1:], start=1):
        here = ".".join(chain[: index + 1])
        if value is None:
            return here, f" ({'.'.join(chain[:index])} is null)"
        if isinstance(value, Mapping):
            if segment not in value:
                return here, ""
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit():
            if int(segment) >= len(value):
                return here, ""
            value = value[int(segment)]
        else:
            return None  # a method or attribute of a value: not a missing variable
    return None


def _resolves(context: Mapping[str, Any], chain: tuple[str, ...]) -> bool:
    value: Any = context
    for segment in chain:
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return False
    return True


def _to_data(value: Any) -> Any:
    """Turn a native result into plain data the worker can send as JSON."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, Mapping):
        return {str(key): _to_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_data(item) for item in value]
    return str(value)


def _chain(node: nodes.Node) -> tuple[str, ...] | None:
    if isinstance(node, nodes.Name):
        return (node.name,)
    if isinstance(node, nodes.Getattr):
        inner = _chain(node.node)
        return None if inner is None else (*inner, node.attr)
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and isinstance(node.arg.value, str | int)
        and not isinstance(node.arg.value, bool)
    ):
        inner = _chain(node.node)
        return None if inner is None else (*inner, str(node.arg.value))
    return None


def _collect(node: nodes.Node, out: list[tuple[str, ...]]) -> None:
    chain = _chain(node)
    if chain is not None:
        out.append(chain)
        return
    for child in node.iter_child_nodes():
        _collect(child, out)


def _single_expression(source: str, tree: nodes.Template) -> str | None:
    if not (source.startswith("{{") and source.endswith("}}")):
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = tree.body[0].nodes
    if len(parts) != 1 or isinstance(parts[0], nodes.TemplateData):
        return None
    inner = source[2:-2]
    return inner.removeprefix("-").removeprefix("+").removesuffix("-")


class TemplateCompileError(Exception):
    """A template does not compile; ``line`` is the line inside the template (1-based)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.message = message
        self.line = line
        super().__init__(message)


@functools.lru_cache(maxsize=4096)
def compile_template(source: str) -> CompiledTemplate:
    """Compile a template string; raises :class:`TemplateCompileError` for a syntax error.

    Cached by source: rules repeat the same templates (``{{ request.id }}``) a lot, and a
    compiled template is immutable, so sharing it is safe. The source is parsed once; a
    single ``{{ expression }}`` is compiled only as that expression (it never renders as
    text), anything else only as a text template.
    """
    try:
        tree = ENVIRONMENT.parse(source)
        bound_tree(tree)
        expression = _native_expression(source, tree)
        template = None if expression is not None else ENVIRONMENT.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateCompileError(f"template syntax error: {exc.message}", exc.lineno) from None
    except SecurityError as exc:
        raise TemplateCompileError(f"not allowed in a template: {exc}") from None
    except JinjaTemplateError as exc:
        raise TemplateCompileError(f"template error: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - e.g. RecursionError on absurd nesting
        raise TemplateCompileError(f"template cannot be compiled: {type(exc).__name__}") from None
    references: list[tuple[str, ...]] = []
    _collect(tree, references)
    roots = frozenset(find_undeclared_variables(tree))
    references = [chain for chain in references if chain[0] in roots]
    return CompiledTemplate(
        source, expression is not None, tuple(references), roots, template, expression
    )


def _native_expression(source: str, tree: nodes.Template) -> TemplateExpression | None:
    """The single ``{{ expression }}`` of ``tree`` compiled to return its value, else ``None``.

    What ``Environment.compile_expression`` builds, but from the node already parsed (no
    second parse, and no text template compiled beside it). ``None`` when the source is not
    one expression or the expression does not compile on its own (then it is compiled as a
    text template, which reports the error if there is one).
    """
    if _single_expression(source, tree) is None:
        return None
    output = tree.body[0]
    assert isinstance(output, nodes.Output)
    body = [nodes.Assign(nodes.Name("result", "store"), output.nodes[0], lineno=1)]
    try:
        compiled = ENVIRONMENT.from_string(nodes.Template(body, lineno=1))
    except JinjaTemplateError:
        return None
    return TemplateExpression(compiled, undefined_to_none=False)


def render_tree(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template inside a tree of dicts/lists; other values pass through."""
    if isinstance(value, CompiledTemplate):
        return value.render(context)
    if isinstance(value, Mapping):
        return {key: render_tree(item, context) for key, item in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [render_tree(item, context) for item in value]
    return value


def iter_templates(value: Any) -> list[CompiledTemplate]:
    """Every compiled template inside a tree, in order."""
    if isinstance(value, CompiledTemplate):
        return [value]
    found: list[CompiledTemplate] = []
    if isinstance(value, Mapping):
        for item in value.values():
            found.extend(iter_templates(item))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for item in value:
            found.extend(iter_templates(item))
    return found
