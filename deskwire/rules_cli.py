"""``deskwire rules …``: check rule files, try them on a saved event, run regression cases.

Everything here is presentation; the work is done by the pure ``rules`` package.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NoReturn

import click

from rules import RuleLoadError, RuleSet, context_from_body, explain, load_rules, run_cases
from sdp.request_shapes import request_in_payload

rules_group = click.Group("rules", help="Check rule files and try them on saved events.")

JSON_HELP = "Print a JSON document instead of text (shape: docs/rules.md, 'JSON output')."


def _settings() -> Any:
    from deskwire.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _rules_dir(directory: Path | None) -> Path:
    return directory if directory is not None else Path(_settings().rules_dir)


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _fail_load(exc: RuleLoadError, as_json: bool, **extra: Any) -> NoReturn:
    if as_json:
        _emit({"ok": False, **extra, "errors": exc.to_dicts()})
    else:
        click.echo(str(exc), err=True)
    raise SystemExit(1)


def _connection_names(path: Path) -> tuple[set[str] | None, str | None, list[dict[str, Any]]]:
    """(link names or None to skip, a warning to show, the connections file's errors).

    The errors have the shape of rule errors (``rule`` null, ``path`` the field path), so
    ``rules check`` lists them with the rule errors, in file, line and column order.
    """
    if not path.exists():
        return None, f"connections file {path} does not exist: connection names not checked", []
    from connections import ConnectionsConfigError
    from deskwire.compose import connections_config

    try:
        config = connections_config(path)
    except ConnectionsConfigError as exc:
        errors = [
            {
                "file": issue.file,
                "line": issue.line,
                "column": issue.column,
                "rule": None,
                "path": issue.field,
                "message": issue.message,
            }
            for issue in exc.errors
        ]
        return None, "the connections file has errors: connection names not checked", errors
    return set(config.connections), None, []


def _error_text(error: dict[str, Any]) -> str:
    """One error as text, as :class:`rules.RuleError` prints it."""
    rule = f" [rule {error['rule']}]" if error["rule"] else ""
    path = f" {error['path']}:" if error["path"] else ""
    return f"{error['file']}:{error['line']}:{error['column']}:{rule}{path} {error['message']}"


@rules_group.command("check")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--connections",
    "connections_file",
    type=click.Path(path_type=Path),
    help="Connections file (default: DESKWIRE_CONNECTIONS_FILE).",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def check(directory: Path | None, connections_file: Path | None, as_json: bool) -> None:
    """Validate every rule file in DIRECTORY (default: DESKWIRE_RULES_DIR).

    Also checks that each `connection:` names a connection of the connections file.
    Exits 1 when anything is wrong, listing every error with file:line:column, sorted by
    file, line and column (the connections file's own errors included).
    """
    folder = _rules_dir(directory)
    path = connections_file if connections_file is not None else _settings().connections_file
    names, note, errors = _connection_names(Path(path))
    warnings = [note] if note else []
    rule_set: RuleSet | None = None
    try:
        rule_set = load_rules(folder, connections=names)
    except RuleLoadError as exc:
        errors.extend(exc.to_dicts())
    errors.sort(key=lambda error: (error["file"], error["line"], error["column"]))
    if as_json:
        _emit(
            {
                "ok": not errors,
                "version": rule_set.version if rule_set is not None else None,
                "rules": len(rule_set.rules) if rule_set is not None else 0,
                "warnings": warnings,
                "errors": errors,
            }
        )
    else:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        if errors:
            noun = "error" if len(errors) == 1 else "errors"
            lines = [f"{len(errors)} {noun}:", *(f"  {_error_text(e)}" for e in errors)]
            click.echo("\n".join(lines), err=True)
        if rule_set is not None and not errors:
            click.echo(f"{len(rule_set.rules)} rules OK in {folder} (version {rule_set.version})")
    if errors:
        raise SystemExit(1)


def _read_event(path: Path) -> dict[str, Any]:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise click.ClickException(f"{path} must hold a JSON object (a webhook body)")
    return body


def _load(folder: Path, as_json: bool) -> RuleSet:
    try:
        return load_rules(folder)
    except RuleLoadError as exc:
        _fail_load(exc, as_json)


@rules_group.command("test")
@click.argument("event_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--rule",
    "rule_id",
    help="Explain only this rule (even if disabled or not listening to the event).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    help="Rules folder (default: DESKWIRE_RULES_DIR).",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def test(event_file: Path, rule_id: str | None, directory: Path | None, as_json: bool) -> None:
    """Show which rules match EVENT_FILE (a webhook body as JSON) and why, without calling.

    The event type is the body's `event`; the request is its `request` (or `requestObj`, or
    the body itself), normalised as the worker does (docs/sdp.md);
    an optional `previous` key is the last state seen, for changed/changed_from/changed_to.
    Steps that need outputs of earlier steps show <known at run time: steps.…>.
    """
    body = _read_event(event_file)
    rule_set = _load(_rules_dir(directory), as_json)
    context = context_from_body(body)
    # The request as the worker gives it to the rules: v3 names and shapes for every shape.
    event_type = str(body.get("event") or "request")
    context["request"] = request_in_payload(body, event_type=event_type) or context["request"]
    try:
        explanation = explain(rule_set, context, rule_id=rule_id)
    except LookupError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="--rule") from None
    if as_json:
        _emit(explanation.to_dict())
    else:
        click.echo(explanation.to_text())


@rules_group.command("verify")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--cases",
    "cases_path",
    type=click.Path(exists=True, path_type=Path),
    help="Case file or folder (default: the *.case.yml files in the rules folder).",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
def verify(directory: Path | None, cases_path: Path | None, as_json: bool) -> None:
    """Run the regression cases (*.case.yml) against the rules in DIRECTORY.

    Exits 1 when a case fails, a case file is invalid, or there is no case to run.
    """
    folder = _rules_dir(directory)
    rule_set = _load(folder, as_json)
    report = run_cases(rule_set, cases_path if cases_path is not None else folder)
    if as_json:
        _emit(report.to_dict())
    elif not report.results and not report.errors:
        # Nothing was verified: a pipeline running this must not pass by accident.
        click.echo(f"no *.case.yml files found under {cases_path or folder}", err=True)
        raise SystemExit(1)
    else:
        click.echo(report.to_text())
    if not report.ok:
        raise SystemExit(1)
