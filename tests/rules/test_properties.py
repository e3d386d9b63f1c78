"""Property tests: operators agree with their plain definitions; the loader never crashes."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules import (
    OPERATORS,
    Probe,
    RuleLoadError,
    TemplateCompileError,
    TemplateError,
    compile_template,
    load_rules,
)
from tests.rules.conftest import DATA

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-1000, 1000),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=10,
)


def run(name: str, value, operand, present: bool = True) -> bool:
    spec = OPERATORS[name]
    return spec.test(Probe(present, value), spec.prepare(operand))


@FAST
@given(value=scalars)
def test_equals_is_reflexive_and_not_equals_its_negation(value):
    assert run("equals", value, value)
    assert run("not_equals", value, value) is False


@FAST
@given(value=json_values, operand=scalars)
def test_negated_operators_are_complements(value, operand):
    assert run("not_equals", value, operand) is not run("equals", value, operand)
    assert run("not_in", value, [operand]) is not run("in", value, [operand])


@FAST
@given(value=st.text(max_size=30), needle=st.text(max_size=5))
def test_text_operators_agree_with_python(value, needle):
    assert run("contains", value, needle) is (needle in value)
    assert run("icontains", value, needle) is (needle.casefold() in value.casefold())
    assert run("starts_with", value, needle) is value.startswith(needle)
    assert run("ends_with", value, needle) is value.endswith(needle)
    assert run("matches", value, re.escape(needle)) is (needle in value)


@FAST
@given(a=st.integers(-(10**6), 10**6), b=st.integers(-(10**6), 10**6), as_text=st.booleans())
def test_ordering_agrees_with_numbers(a, b, as_text):
    value = str(a) if as_text else a
    assert run("gt", value, b) is (a > b)
    assert run("gte", value, b) is (a >= b)
    assert run("lt", value, b) is (a < b)
    assert run("lte", value, b) is (a <= b)


@FAST
@given(age=st.integers(0, 10**7), limit=st.integers(1, 10**5))
def test_durations(age, limit):
    now = 1_800_000_000.0
    moment_ms = int((now - age) * 1000)
    spec_old, spec_new = OPERATORS["older_than"], OPERATORS["newer_than"]
    for value in (moment_ms, str(moment_ms), {"value": str(moment_ms)}):
        probe = Probe(True, value, now=now)
        assert spec_old.test(probe, spec_old.prepare(f"{limit}s")) is (age > limit)
        assert spec_new.test(probe, spec_new.prepare(f"{limit}s")) is (age < limit)


@FAST
@given(value=json_values)
def test_missing_is_never_equal_or_empty(value):
    assert run("equals", value, "x", present=False) is False
    assert run("exists", value, True, present=False) is False
    assert run("empty", value, True, present=False) is False


@FAST
@given(value=json_values)
def test_single_expression_returns_the_value(value):
    assert compile_template("{{ request.x }}").render({"request": {"x": value}}) == value


@FAST
@given(
    text=st.text(min_size=1, max_size=40).filter(
        lambda t: not any(m in t for m in ("{{", "{%", "{#", "{"))
    )
)
def test_text_around_an_expression_is_kept(text):
    # Jinja normalises line endings to \n; everything else is kept as written.
    expected = text.replace("\r\n", "\n").replace("\r", "\n") + "1"
    assert compile_template(text + "{{ x }}").render({"x": 1}) == expected


@FAST
@given(source=st.text(alphabet=st.sampled_from(list("{}%#|._()[]'\"=+-*/ abcx0129")), max_size=30))
def test_arbitrary_templates_fail_only_with_our_errors(source):
    try:
        compiled = compile_template(source)
    except TemplateCompileError:
        return
    with contextlib.suppress(TemplateError):
        compiled.render({"request": {"a": 1}, "a": [1, 2], "b": "x"})


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def load_text(folder: Path, text: str) -> None:
    (folder / "r.yml").write_text(text, encoding="utf-8")
    try:
        load_rules(folder)
    except RuleLoadError as exc:
        errors = exc.errors
    else:
        return
    assert errors
    assert all(error.message for error in errors)


@FAST
@given(text=st.text(max_size=200))
def test_random_text_never_crashes_the_loader(folder, text):
    load_text(folder, text)


YAML_ATOMS = st.sampled_from(
    [
        "rules",
        "id",
        "on",
        "when",
        "actions",
        "uses",
        "with",
        "all",
        "any",
        "not",
        "request.x",
        "equals",
        "matches",
        "gt",
        "if",
        "older_than",
        "sdp.add_note",
        "log",
        "message",
        "1",
        "null",
        "true",
        "[]",
        "{}",
        "'{{ x }}'",
        "'(['",
        "2h",
        "a",
    ]
)


@st.composite
def yamlish(draw) -> object:
    return draw(
        st.recursive(
            st.one_of(YAML_ATOMS, st.integers(), st.none(), st.booleans()),
            lambda inner: st.one_of(
                st.lists(inner, max_size=3), st.dictionaries(YAML_ATOMS, inner, max_size=4)
            ),
            max_leaves=25,
        )
    )


@FAST
@given(tree=yamlish())
def test_wrong_types_everywhere_never_crash(folder, tree):
    import json

    load_text(folder, json.dumps({"rules": tree if isinstance(tree, list) else [tree]}))


REAL = "\n".join(p.read_text() for p in sorted((DATA / "rules").glob("*.y*ml")))


@FAST
@given(cut=st.integers(0, len(REAL)), junk=st.text(max_size=5))
def test_truncated_real_files_never_crash(folder, cut, junk):
    load_text(folder, REAL[:cut] + junk)
