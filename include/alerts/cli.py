"""``python -m include.cli alerts ...``: check a rules file, evaluate the alerts once.

Registered by include/cli.py, whose ``main`` prints a ``CommandError`` or a bad setting as one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_alerts_commands(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "alerts",
        help="check the alert rules, or evaluate them once (the alerts DAG also delivers)",
        description="Market alert rules and pipeline alerts (README, 'Alerts').",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    check = actions.add_parser(
        "check",
        help="validate a rules file: every bad rule is named, and the exit status is 1 if there is one",
        description="Validate a rules file against SYMBOLS. Prints each bad rule on stderr, naming it, "
        "and the number of valid rules on stdout; exits 1 if any rule is bad.",
    )
    check.add_argument("--rules", type=rules_file, default=None, help="a rules file (default: ALERT_RULES)")
    check.set_defaults(run=_run_check)
    evaluate = actions.add_parser(
        "evaluate",
        help="evaluate every rule and pipeline check once into marts.alerts",
        description="Evaluate the rules file's rules, the dashboard's, and the pipeline checks once, on the "
        "warehouse WAREHOUSE names; store what fired in marts.alerts and resolve the incidents that ended. "
        "Prints a JSON summary; a refused rule is named on stderr (the others run) and exits 1.",
    )
    evaluate.set_defaults(run=_run_evaluate)


def rules_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"rules file {text!r} does not exist")
    return path


def _run_check(args: argparse.Namespace) -> int:
    from include.alerts.rules import read_rules_file
    from include.config import load_settings

    settings = load_settings()
    path = args.rules or settings.alerts.rules_file
    checked = read_rules_file(path, settings.symbols)
    for error in checked.errors:
        print(f"error: {error}", file=sys.stderr)
    print(json.dumps({"rules_file": str(path), "valid": len(checked.rules), "refused": len(checked.errors)}))
    return 1 if checked.errors else 0


def _run_evaluate(args: argparse.Namespace) -> int:
    from include.alerts.run import run_alerts
    from include.config import load_settings

    # No channel here: the notifiers are Airflow's (the alerts DAG delivers what this stores).
    result = run_alerts(load_settings(), senders={}).evaluated
    for error in result.refused:
        print(f"error: {error}", file=sys.stderr)
    for failure in result.failed_checks:
        print(f"error: {failure}", file=sys.stderr)
    print(json.dumps(result.as_dict()))
    return 1 if result.refused or result.failed_checks else 0
