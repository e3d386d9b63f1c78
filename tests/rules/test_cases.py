"""Regression case files (*.case.yml) and their runner."""

from __future__ import annotations

import textwrap

from rules import load_rules, run_cases
from tests.rules.conftest import DATA


def test_sample_cases_pass():
    report = run_cases(load_rules(DATA / "rules"), DATA / "rules")
    assert report.ok, report.to_text()
    assert len(report.results) == 4
    assert report.to_dict()["ok"] is True


def write_case(folder, text: str):
    path = folder / "x.case.yml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_failures_say_what_differed(tmp_path):
    rule_set = load_rules(DATA / "rules")
    write_case(
        tmp_path,
        """
        cases:
          - name: wrong expectations
            event:
              event: request.created
              request: {id: "1", subject: outage, priority: {name: Low},
                        requester: {is_vip_user: true}, status: {name: Open}}
            expect:
              matched: [vip-outage-page, resolved-notfy]
              not_matched: [ignore-own-writes]
              steps:
                ignore-own-writes: {step1: {}}
        """,
    )
    report = run_cases(rule_set, tmp_path)
    assert not report.ok
    (result,) = report.results
    assert result.name == "wrong expectations"
    assert result.failures == (
        "matched: expected 'vip-outage-page' to run, but when.all[0]: request.priority.name "
        "equals 'High' — actual: 'Low'",
        "unknown rule id 'resolved-notfy'; did you mean 'resolved-notify'?",
        "steps.ignore-own-writes: the rule did not match, so it has no steps",
    )


def test_step_argument_diffs(tmp_path):
    rule_set = load_rules(DATA / "rules")
    write_case(
        tmp_path,
        """
        cases:
          - name: diffs
            event_file: vip.json
            expect:
              steps:
                vip-outage-page:
                  page:
                    url: https://wrong.example
                    json: {summary: Mail OUTAGE at HQ, severity: low, extra: 1}
                    timeout: 5
                  nostep: {}
        """,
    )
    (tmp_path / "vip.json").write_text((DATA / "rules/events/vip.json").read_text())
    (result,) = run_cases(rule_set, tmp_path).results
    assert result.failures == (
        'steps.vip-outage-page.page.url: expected "https://wrong.example" — got '
        '"https://events.pagerduty.com/v2/enqueue"',
        "steps.vip-outage-page.page.json.extra: expected 1 — missing",
        'steps.vip-outage-page.page.json.severity: expected "low" — got "critical"',
        "steps.vip-outage-page.page.timeout: expected 5 — argument not given",
        "steps.vip-outage-page: no step 'nostep'; did you mean 'step2'?",
    )


def test_bad_case_files_are_errors_with_locations(tmp_path):
    rule_set = load_rules(DATA / "rules")
    write_case(
        tmp_path,
        """
        cases:
          - name: no event
            expect: {}
          - name: both
            event: {event: x}
            event_file: y.json
            expect: {}
          - name: missing file
            event_file: nope.json
            expect: {}
          - name: typo
            evnt: {}
            expect: {matchd: []}
        """,
    )
    report = run_cases(rule_set, tmp_path)
    assert not report.ok
    messages = [(e.path, e.message.split(";")[0]) for e in report.errors]
    assert messages[0] == ("cases[0]", "needs `event` (a webhook body mapping) or `event_file`")
    assert messages[1] == ("cases[1]", "give either `event` or `event_file`, not both")
    assert messages[2][0] == "cases[2].event_file"
    assert ("cases[3].evnt", "unknown case key 'evnt'") in messages
    assert ("cases[3].expect.matchd", "unknown expect key 'matchd'") in messages
    assert all(e.line > 0 for e in report.errors)


def test_case_file_not_yaml(tmp_path):
    write_case(tmp_path, "cases: [\n")
    report = run_cases(load_rules(DATA / "rules"), tmp_path)
    assert "invalid YAML" in report.errors[0].message
