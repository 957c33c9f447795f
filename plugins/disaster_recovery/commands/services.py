"""``services validate [FILE]`` and ``services schema``: the health monitor's services file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    services = subparsers.add_parser("services", help="monitored services: validate, JSON schema")
    commands = services.add_subparsers(title="services commands", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate", help="validate a services file; exit 1 and print one line per problem if it is invalid"
    )
    validate.add_argument("path", nargs="?", type=Path, help="default: $DR_SERVICES_FILE or include/services.yaml")
    validate.add_argument(
        "--clusters", type=Path, help="clusters file the postgres probes' clusters must be in "
        "(default: $DR_CLUSTERS_FILE or include/clusters.yaml)")
    validate.set_defaults(handler=validate_command)

    schema = commands.add_parser("schema", help="print the JSON Schema of services files")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(handler=schema_command)


def validate_command(args: argparse.Namespace) -> int:
    from disaster_recovery.clusters.model import load_clusters
    from disaster_recovery.health.services import cluster_problems, load_services

    services = load_services(args.path)
    problems = [str(p) for p in services.problems]
    clusters = load_clusters(args.clusters)
    problems += cluster_problems(services, set(clusters.items))
    if not clusters.ok:
        print(f"{clusters.file} has problems of its own (see: clusters validate)", file=sys.stderr)
    for problem in problems:
        print(problem)
    print(f"{len(services.items)} service(s) valid" + (f", {len(problems)} problem(s)" if problems else ""),
          file=sys.stderr)
    return 1 if problems else 0


def services_json_schema_text() -> str:
    from disaster_recovery.health.services import services_json_schema

    return json.dumps(services_json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_command(args: argparse.Namespace) -> int:
    text = services_json_schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0
