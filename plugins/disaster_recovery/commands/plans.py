"""``plans validate PATH...`` and ``plans schema``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    plans = subparsers.add_parser("plans", help="recovery plans: validate them, print their JSON schema")
    commands = plans.add_subparsers(title="plans commands", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate",
        help="validate plan files; exit 1 and print one line per problem if any is invalid",
        description="Validate recovery plans (directories of *.yaml/*.yml files, or single files). "
        "Exit 0 when every plan is valid, 1 otherwise, printing one line per problem: "
        "FILE: step 'NAME' field 'FIELD': MESSAGE. Warnings (valid, probably not meant: RPO above RTO, review "
        "overdue, changed since approval) are printed as 'warning: ...' and do not change the exit status.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="plan directory or file")
    validate.add_argument(
        "--allow-unimplemented",
        action="store_true",
        help="accept step types whose executor is not implemented in this installation",
    )
    validate.add_argument("-q", "--quiet", action="store_true", help="print problems only")
    validate.set_defaults(handler=validate_command)

    fingerprint = commands.add_parser(
        "fingerprint",
        help="print a plan's fingerprint (sha256 of its content, approval left out) for approval.fingerprint",
    )
    fingerprint.add_argument("path", type=Path, metavar="FILE", help="plan file")
    fingerprint.set_defaults(handler=fingerprint_command)

    schema = commands.add_parser("schema", help="print the JSON Schema of plan files")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(handler=schema_command)


def validate_command(args: argparse.Namespace) -> int:
    from disaster_recovery.plans import PlanProblem, load_plan_files
    from disaster_recovery.plans.reading.loader import plan_files, skipped_file_problems
    from disaster_recovery.steps.registry import implemented_step_types

    files: list[Path] = []
    problems: list[PlanProblem] = []
    for path in args.paths:
        if path.is_dir():
            found = plan_files(path)
            if not found:
                problems.append(PlanProblem(str(path), None, None, "no plan files (*.yaml, *.yml) here"))
            files.extend(found)
            problems.extend(skipped_file_problems(path))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(PlanProblem(str(path), None, None, "no such file or directory"))
    implemented = None if args.allow_unimplemented else implemented_step_types()
    plan_set = load_plan_files(dict.fromkeys(files), implemented_step_types=implemented)
    problems.extend(plan_set.problems)
    for problem in problems:
        print(problem)
    for warning in plan_set.warnings:
        print(f"warning: {warning}")
    if not args.quiet:
        bad_files = len({p.file for p in problems})
        summary = (
            f"{len(plan_set.plans)} plan(s) valid"
            if not problems
            else f"{len(problems)} problem(s) in {bad_files} file(s); {len(plan_set.plans)} plan(s) valid"
        )
        if plan_set.warnings:
            summary += f", {len(plan_set.warnings)} warning(s)"
        print(summary, file=sys.stderr)
    return 1 if problems else 0


def fingerprint_command(args: argparse.Namespace) -> int:
    from disaster_recovery.plans import PlanValidationError, load_plan

    try:
        plan = load_plan(args.path)
    except PlanValidationError as exc:
        print(exc)
        return 1
    print(plan.fingerprint())
    return 0


def schema_command(args: argparse.Namespace) -> int:
    from disaster_recovery.plans import plan_json_schema_text

    text = plan_json_schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
