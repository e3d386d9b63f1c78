"""Template resource bounds: a render that grows too large or runs too long is stopped
while it runs, and memory stays bounded (measured in a separate process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rules import MAX_ITERATIONS, MAX_SECONDS, TemplateCompileError, TemplateError, compile_template

BIG = "{% set big = 'x' * 100000 %}"

# Each would build about a gigabyte (or more) if it were allowed to finish.
HOSTILE = {
    "nested loops writing text": (
        "{% for i in range(10000) %}{% for j in range(10000) %}xxxxxxxxxx{% endfor %}{% endfor %}"
    ),
    "doubling with ~": BIG
    + "{% set b = big ~ big %}" * 1
    + "".join("{% set b = b ~ b %}" for _ in range(14))
    + "{{ b | length }}",
    "doubling with +": BIG + "".join("{% set big = big + big %}" for _ in range(14)),
    "replace": "{{ ('x' * 100000) | replace('x', 'y' * 10000) }}",
    "str.replace": "{{ ('x' * 100000).replace('x', 'y' * 10000) }}",
    "join separator": "{{ range(10000) | join('x' * 100000) }}",
    "str.join": "{{ ('x' * 100000).join(['a'] * 10000) }}",
    "join of repeated big strings": BIG + "{{ ([big] * 10000) | join }}",
    "nested repetition": "{{ [[1] * 100000] * 100000 }}",
    "indent": "{{ ('x\\n' * 50000) | indent(50000) }}",
    "ljust": "{{ 'x'.ljust(1000000000) }}",
    "zfill": "{{ '1'.zfill(1000000000) }}",
    "expandtabs": "{{ ('\\t' * 100000).expandtabs(10000) }}",
    "batch fill": "{{ [1] | batch(1000000000, 'x') | list }}",
    "percent formatting": BIG + "{{ '%s%s%s%s%s%s%s%s%s%s%s%s' % ((big,) * 12) }}",
    "tojson of shared references": BIG + "{{ ([big] * 100000) | tojson }}",
}


def render(source: str, context: dict | None = None) -> object:
    return compile_template(source).render(context or {})


@pytest.mark.parametrize("source", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_templates_are_stopped_while_rendering(source: str) -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError) as caught:
        render(source)
    assert time.monotonic() - started < MAX_SECONDS + 5
    message = str(caught.value)
    assert "larger than" in message or "longer than" in message or "limited to" in message, message


def test_loops_are_limited_in_steps_even_without_output() -> None:
    source = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match=f"limited to {MAX_ITERATIONS} steps"):
        render(source)


def test_loops_over_event_data_count_too() -> None:
    context = {"payload": {"items": list(range(1000))}}
    source = (
        "{% for a in payload['items'] %}{% for b in payload['items'] %}{% endfor %}{% endfor %}"
    )
    with pytest.raises(TemplateError, match="steps per template"):
        render(source, context)


def test_a_slow_render_is_stopped_at_the_deadline() -> None:
    # Few loop steps, each slow (a 2-million-character replace): the deadline, not the step
    # budget, ends it; unbounded it would take well over a minute.
    source = (
        "{% set s = 'x' * 100000 %}{% set big = " + " ~ ".join(["s"] * 20) + " %}"
        "{% for i in range(10000) %}{{ big | replace('x', 'y') | length }}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(TemplateError, match=f"longer than {MAX_SECONDS:g} s"):
        render(source)
    assert time.monotonic() - started < MAX_SECONDS + 10


@pytest.mark.parametrize(
    "source",
    [
        "{% set x %}{{ 1 }}{% endset %}",
        "{% filter upper %}x{% endfilter %}",
        "{% macro m() %}x{% endmacro %}{{ m() }}",
        "{% include 'other' %}",
    ],
)
def test_buffered_blocks_are_refused_when_compiled(source: str) -> None:
    with pytest.raises(TemplateCompileError, match="not allowed in rule templates"):
        compile_template(source)


def test_ordinary_templates_are_unaffected() -> None:
    context = {
        "request": {"subject": "Mail down", "tags": ["a", "b", "c"], "id": "42"},
        "steps": {"page": {"json": {"items": [{"n": 1}, {"n": 2}]}}},
    }
    assert render("{{ request.subject ~ '!' }}", context) == "Mail down!"
    assert render("#{{ request.id }} {{ request.subject ~ ' (' ~ request.id ~ ')' }}", context) == (
        "#42 Mail down (42)"
    )
    assert render("{{ request.tags | join(', ') }}", context) == "a, b, c"
    assert (
        render(
            "{% for t in request.tags %}{{ loop.index }}={{ t }}{% if not loop.last %};{% endif %}"
            "{% endfor %}",
            context,
        )
        == "1=a;2=b;3=c"
    )
    assert render("{{ steps.page.json['items'] | map(attribute='n') | sum }}", context) == 3
    assert render("{{ request.subject | replace('down', 'up') | upper }}", context) == "MAIL UP"
    assert render("{{ 'x' * 3 + 'y' }}", context) == "xxxy"
    assert render("{{ request.tags + ['d'] }}", context) == ["a", "b", "c", "d"]
    assert render("{% for x in [] %}a{% else %}empty{% endfor %}", context) == "empty"
    text = render("{% for i in range(1000) %}{{ i }},{% endfor %}", context)
    assert isinstance(text, str)
    assert text.startswith("0,1,2,")


MEASURE = textwrap.dedent(
    """\
    import json, resource, sys
    from rules import TemplateError
    from rules import compile_template

    sources = json.load(sys.stdin)
    compile_template("{{ 1 }}").render({})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {}
    for name, source in sources.items():
        try:
            compile_template(source).render({})
            outcomes[name] = "rendered"
        except TemplateError as exc:
            outcomes[name] = str(exc)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grown_kib": after - before, "outcomes": outcomes}))
    """
)


def test_memory_stays_bounded_while_refusing_gigabyte_templates(tmp_path: Path) -> None:
    """Peak RSS of a fresh process grows by less than 100 MB over all the hostile renders."""
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    result = subprocess.run(
        [sys.executable, str(script)],
        input=json.dumps(HOSTILE),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(result.stdout)
    assert "rendered" not in report["outcomes"].values(), report["outcomes"]
    assert report["grown_kib"] < 100 * 1024, report
