"""``clusters validate FILE``, ``clusters schema`` and ``clusters status [NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    clusters = subparsers.add_parser("clusters", help="protected clusters: validate, JSON schema, live roles")
    commands = clusters.add_subparsers(title="clusters commands", metavar="COMMAND", required=True)

    validate = commands.add_parser(
        "validate", help="validate a clusters file; exit 1 and print one line per problem if it is invalid"
    )
    validate.add_argument("path", nargs="?", type=Path, help="default: $DR_CLUSTERS_FILE or include/clusters.yaml")
    validate.set_defaults(handler=validate_command)

    schema = commands.add_parser("schema", help="print the JSON Schema of clusters files")
    schema.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")
    schema.set_defaults(handler=schema_command)

    status = commands.add_parser(
        "status", help="read every member now (through its Airflow connection) and print the roles"
    )
    status.add_argument("name", nargs="?", help="one cluster (default: all)")
    status.add_argument("--json", action="store_true", help="print the snapshot as JSON")
    status.set_defaults(handler=status_command)


def validate_command(args: argparse.Namespace) -> int:
    from disaster_recovery.clusters.model import load_clusters

    clusters = load_clusters(args.path)
    for problem in clusters.problems:
        print(problem)
    print(f"{len(clusters.items)} cluster(s) valid" + (f", {len(clusters.problems)} problem(s)" if clusters.problems
                                                        else ""), file=sys.stderr)
    return 1 if clusters.problems else 0


def clusters_json_schema_text() -> str:
    from disaster_recovery.clusters.model import clusters_json_schema

    return json.dumps(clusters_json_schema(), indent=2, ensure_ascii=False) + "\n"


def schema_command(args: argparse.Namespace) -> int:
    text = clusters_json_schema_text()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


def status_command(args: argparse.Namespace) -> int:
    from disaster_recovery.clusters.access import snapshot_cluster
    from disaster_recovery.clusters.model import load_clusters
    from disaster_recovery.clusters.topology import decide_topology

    clusters = load_clusters()
    for problem in clusters.problems:
        print(problem, file=sys.stderr)
    names = [args.name] if args.name else sorted(clusters.items)
    healthy = True
    for name in names:
        try:
            cluster = clusters.require(name)
        except ValueError as exc:
            print(exc, file=sys.stderr)
            return 1
        snapshot = snapshot_cluster(cluster)
        topology = decide_topology(snapshot)
        healthy = healthy and topology.healthy
        if args.json:
            print(json.dumps({"topology": topology.sentence, **snapshot.as_dict()}, indent=2, default=str))
        else:
            print(topology.sentence)
            for state in snapshot.members:
                fence = f"; {state.fence.sentence()}" if state.fence else ""
                print(f"  {state.member}: " + (f"unreachable ({state.error})" if not state.reachable else
                      f"{'standby' if state.in_recovery else 'primary'}, timeline {state.timeline}, "
                      f"{'read-only, ' if state.read_only else ''}LSN "
                      f"{state.current_lsn or state.replay_lsn}{fence}"))
    return 0 if healthy else 1
