"""Resource bounds of template rendering: stopped while rendering, never after.

A rule template is short, but a few characters can ask for gigabytes (``'x' * 99999``
doubled a dozen times, a ``join`` with a huge separator, two nested loops writing text)
or for minutes of CPU. Checking the rendered text afterwards is too late: the memory is
already spent. So every place where a template can make a value bigger checks *before*
making it:

* each value has a *weight*, an estimate of its size (characters of strings, plus items
  of containers, counted through nesting, so ``[big] * 1000`` weighs a thousand bigs);
  no operator, method call or filter may produce a value heavier than :data:`MAX_VALUE`,
  and the ones that multiply (``*``, ``+``, ``~``, ``%``, ``replace``, ``join``,
  ``indent``, ``ljust``…, ``batch``, ``slice``) are checked from their inputs first;
* the rendered text is consumed as a stream with a running count (:data:`MAX_OUTPUT`);
* a render has a deadline (:data:`MAX_SECONDS`) and a budget of loop iterations
  (:data:`MAX_ITERATIONS`), checked on every loop step, attribute access and call.

Block constructs that render into a hidden buffer (``{% set %}…{% endset %}``,
``{% filter %}``, macros and ``{% call %}``) would escape the streamed count; rule
templates do not need them, so they are refused when the template is compiled.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.exceptions import SecurityError

MAX_OUTPUT = 1_000_000
MAX_VALUE = 4_000_000  # a whole webhook payload (1 MiB) still fits
MAX_SECONDS = 5.0
MAX_ITERATIONS = 200_000

# Filters registered under names a template cannot spell, applied by the tree rewrite.
LOOP_FILTER = "deskwire:loop"
CONCAT_FILTER = "deskwire:concat"

_REFUSED_BLOCKS: Mapping[type[nodes.Node], str] = {
    nodes.AssignBlock: "{% set %}…{% endset %} blocks",
    nodes.FilterBlock: "{% filter %} blocks",
    nodes.Macro: "macros",
    nodes.CallBlock: "{% call %} blocks",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from … import %}",
    nodes.Extends: "{% extends %}",
}


@dataclass
class _Budget:
    deadline: float
    iterations: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("deskwire_template_budget", default=None)


class RenderBudget:
    """Context manager: the deadline and loop budget of one render (nesting keeps the outer)."""

    def __enter__(self) -> None:
        self._token = None
        if _BUDGET.get() is None:
            self._token = _BUDGET.set(_Budget(time.monotonic() + MAX_SECONDS))

    def __exit__(self, *_exc: object) -> None:
        if self._token is not None:
            _BUDGET.reset(self._token)


def tick() -> None:
    """Stop the render once its deadline has passed."""
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise SecurityError(f"the template ran longer than {MAX_SECONDS:g} s")


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """An estimate of ``value``'s size; counting stops once it passes ``limit``."""
    total = 0
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str | bytes | bytearray):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item) + 1
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item) + 1
            pending.extend(item)
        else:
            total += 1
        if total > limit:
            break
    return total


def refuse_heavier(estimate: int, what: str) -> None:
    """Raise before building a value whose estimated weight is over :data:`MAX_VALUE`."""
    if estimate > MAX_VALUE:
        raise SecurityError(f"{what} would be larger than {MAX_VALUE} characters or items")


def checked(value: Any, what: str) -> Any:
    """``value``, unless it is heavier than :data:`MAX_VALUE`."""
    refuse_heavier(weight(value), what)
    return value


# ---- operators and str methods ------------------------------------------------------------


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would be too large."""
    if operator == "*":
        for seq, times in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(times, int):
                refuse_heavier(weight(seq) * max(times, 0), "this repetition")
    elif operator == "+":
        sized = (str, list, tuple)
        if isinstance(left, sized) and isinstance(right, sized):
            refuse_heavier(weight(left) + weight(right), "this sum")
    elif operator == "%" and isinstance(left, str):
        refuse_heavier(len(left) + weight(right), "this formatted text")


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def check_str_call(method: Any, args: tuple[Any, ...]) -> None:
    """Refuse a call of a ``str`` method whose result would be too large."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(method, "__name__", "")
    first = args[0] if args else None
    if name in {"ljust", "rjust", "center", "zfill"}:
        refuse_heavier(_int(first), f"str.{name}()")
    elif name == "expandtabs":
        tabsize = _int(first) if args else 8
        refuse_heavier(len(owner) + owner.count("\t") * tabsize, "str.expandtabs()")
    elif name == "replace" and len(args) >= 2:
        refuse_heavier(_replace_estimate(owner, args[0], args[1]), "str.replace()")
    elif name == "join" and args:
        items = list(first) if isinstance(first, Iterable) else []
        refuse_heavier(weight(items) + len(owner) * len(items), "str.join()")


def _replace_estimate(text: str, old: Any, new: Any) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    return len(text) + hits * max(0, len(new) - len(old))


# ---- filters ------------------------------------------------------------------------------


def _value_and_args(args: tuple[Any, ...], skip: int) -> tuple[Any, tuple[Any, ...]]:
    """The filtered value and the filter's own arguments (after context/env arguments)."""
    rest = args[skip:]
    return (rest[0] if rest else None), rest[1:]


def _precheck_filter(
    name: str, value: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> None:
    arg = args[0] if args else None
    if name == "replace" and isinstance(value, str) and len(args) >= 2:
        refuse_heavier(_replace_estimate(value, args[0], args[1]), "replace")
    elif name == "join":
        separator = kwargs.get("d", arg if arg is not None else "")
        items = value if isinstance(value, list | tuple) else None
        if items is not None and isinstance(separator, str):
            refuse_heavier(weight(items) + len(separator) * len(items), "join")
    elif name == "indent" and isinstance(value, str):
        width = kwargs.get("width", arg if arg is not None else 4)
        per_line = width if isinstance(width, int) else len(str(width))
        refuse_heavier(len(value) + (value.count("\n") + 1) * per_line, "indent")
    elif name in {"center", "wordwrap", "truncate"}:
        width = kwargs.get("width", kwargs.get("length", arg))
        refuse_heavier(_int(width) + weight(value), name)
    elif name in {"batch", "slice"}:
        count = kwargs.get("linecount", kwargs.get("slices", arg))
        refuse_heavier(_int(count) + weight(value), name)
    elif name == "format":
        refuse_heavier(weight(value) + weight(args) + weight(dict(kwargs)), "format")


def bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with the deadline, the size pre-checks of ``name`` and a result check."""
    pass_arg = getattr(function, "jinja_pass_arg", None)
    skip = 0 if pass_arg is None else 1

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        tick()
        value, own = _value_and_args(args, skip)
        if name == "join" and isinstance(value, Iterable) and not isinstance(value, str | Mapping):
            value = list(value)  # a range or generator: its items must be counted first
            args = (*args[:skip], value, *own)
        _precheck_filter(name, value, own, kwargs)
        return checked(function(*args, **kwargs), f"the result of the {name} filter")

    return bounded


def loop_filter(value: Any) -> Iterator[Any]:
    """Each step of a ``{% for %}`` loop: the deadline and the render's iteration budget."""
    for item in value:
        budget = _BUDGET.get()
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise SecurityError(f"loops are limited to {MAX_ITERATIONS} steps per template")
        tick()
        yield item


def concat_filter(parts: tuple[Any, ...]) -> str:
    """The ``~`` operator, checked before it joins."""
    tick()
    refuse_heavier(sum(weight(part) for part in parts), "this text (~)")
    return "".join(str(part) for part in parts)


# ---- the tree rewrite ---------------------------------------------------------------------


def bound_tree(tree: nodes.Template) -> None:
    """Refuse buffered blocks; route loops and ``~`` through the bounded filters (in place)."""
    for kind, label in _REFUSED_BLOCKS.items():
        found = tree.find(kind)
        if found is not None:
            raise SecurityError(f"{label} are not allowed in rule templates")
    for loop in tree.find_all(nodes.For):
        loop.iter = nodes.Filter(loop.iter, LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
    for concat in list(tree.find_all(nodes.Concat)):
        operands = nodes.Tuple(concat.nodes, "load", lineno=concat.lineno)
        bounded = nodes.Filter(operands, CONCAT_FILTER, [], [], None, None, lineno=concat.lineno)
        _replace_node(tree, concat, bounded)


def _replace_node(tree: nodes.Node, old: nodes.Node, new: nodes.Node) -> None:
    for parent in [tree, *tree.find_all(nodes.Node)]:
        for field_name, field_value in parent.iter_fields():
            if field_value is old:
                setattr(parent, field_name, new)
                return
            if isinstance(field_value, list):
                for index, item in enumerate(field_value):
                    if item is old:
                        field_value[index] = new
                        return
