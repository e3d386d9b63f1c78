"""Sandboxed templates: native values, missing variables named, known escapes refused."""

from __future__ import annotations

import pytest

from rules import TemplateCompileError, TemplateError, compile_template


def render(source: str, context: dict) -> object:
    return compile_template(source).render(context)


def test_single_expression_keeps_native_type(context):
    assert render("{{ request.requester.is_vip_user }}", context) is True
    assert render("{{ request.priority }}", context) == {"name": "High"}
    assert render("{{ request.tags }}", context) == ["mail", "P1"]
    assert render("{{ request.id | int + 1 }}", context) == 124
    assert render("{{ steps.page.status == 202 }}", {"steps": {"page": {"status": 202}}}) is True
    assert render("{{- request.site -}}", context) is None


def test_mixed_text_renders_a_string(context):
    assert render("#{{ request.id }}: {{ request.subject }}", context) == "#123: Mail outage in HQ"
    assert render(" {{ request.id }}", context) == " 123"
    assert render("{{ request.id }}{{ request.id }}", context) == "123123"
    assert render("{% if request.requester.is_vip_user %}VIP{% endif %}", context) == "VIP"


def test_missing_variable_is_named(context):
    with pytest.raises(TemplateError) as caught:
        render("Subject: {{ request.subjekt }}", context)
    assert str(caught.value) == "'request.subjekt' is undefined"
    assert caught.value.variable == "request.subjekt"
    with pytest.raises(TemplateError, match=r"'request\.subjekt' is undefined"):
        render("{{ request.subjekt }}", context)
    with pytest.raises(TemplateError, match=r"'request\.nope' is undefined"):
        render("{{ request.nope.deeper | upper }}", context)


def test_missing_under_null_says_so(context):
    with pytest.raises(TemplateError, match=r"'request.site.name' is undefined \(request.site is"):
        render("{{ request.site.name }}", context)


def test_missing_step_output_names_the_whole_read(context):
    with pytest.raises(TemplateError) as caught:
        render("Paged ({{ steps.page.json.dedup_key }})", context)
    assert caught.value.variable == "steps.page.json.dedup_key"


def test_missing_root_is_named():
    with pytest.raises(TemplateError, match="'request' is undefined"):
        render("{{ request.id }}", {})


def test_default_filter_still_works(context):
    assert render("{{ request.nope | default('n/a') }}", context) == "n/a"


def test_syntax_error_at_compile_time():
    with pytest.raises(TemplateCompileError, match="template syntax error"):
        compile_template("{{ request.id }")
    with pytest.raises(TemplateCompileError):
        compile_template("{% for %}")


ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ joiner.__init__.__globals__.os }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.__class__ }}",
    "{{ request.get.__self__ }}",
    "{{ request.pop('id') }}",
    "{{ request.update({'x': 1}) }}",
    "{{ request.tags.append(1) }}",
    "{{ '{0.__class__.__mro__}'.format(request) }}",
    "{{ '{0.__init__.__globals__}'.format(cycler) }}",
    "{{ '{:>999999999}'.format('x') }}",
    "{{ '%999999999s' % 'x' }}",
    "{{ '%*s' % (999999999, 'x') }}",
    "{{ '%s' | format(request.__class__) }}",
    "{{ '%999999s' | format('x') }}",
    "{{ range(10**9) | list }}",
    "{% for i in range(10**9) %}{% endfor %}",
    "{{ 'a' * 10**9 }}",
    "{{ [1] * 10**9 }}",
    "{{ 9**(9**9) }}",
    "{{ (10**1000)**1000 }}",
    "{{ 'x' | center(10**9) }}",
    "{{ 'x' | indent(10**9) }}",
    "{{ dict.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ request|attr('__class__') }}",
    "{{ request|attr('__init__') }}",
    "{{ x.__globals__ }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_escapes_fail_cleanly(context, payload):
    try:
        compiled = compile_template(payload)
    except TemplateCompileError:
        return
    with pytest.raises(TemplateError) as caught:
        compiled.render(context)
    assert "os" not in caught.value.message.split() or "undefined" in caught.value.message


def test_environment_and_files_are_not_reachable(context):
    for payload in ("{{ environ }}", "{{ os }}", "{{ open('/etc/passwd') }}", "{{ import }}"):
        try:
            compiled = compile_template(payload)
        except TemplateCompileError:
            continue
        with pytest.raises(TemplateError):
            compiled.render(context)


def test_allowed_helpers(context):
    assert render("{{ range(3) | list }}", context) == [0, 1, 2]
    assert render("{{ dict(a=1) }}", context) == {"a": 1}
    assert render("{{ '%05d' % 42 }}", context) == "00042"
    assert render("{{ '{:>5}'.format('x') }}", context) == "    x"
    assert render("{{ 'ab' * 3 }}", context) == "ababab"
    assert render("{{ 2 ** 10 }}", context) == 1024
    assert render("{{ request.subject | upper }}", context) == "MAIL OUTAGE IN HQ"
    assert render("{{ request | tojson }}", context).startswith("{")
