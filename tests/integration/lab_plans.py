"""The plans the lab tests run: the shipped ones, plus small plans of their own, in a folder of the lab's."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from disaster_recovery.plans import parse_plan

REPO = Path(__file__).resolve().parents[2]
MID_RUN_EDIT = "lab-mid-run-edit"


def _sql_step(name: str, query: str, expected: Any) -> dict[str, Any]:
    check = {"kind": "sql", "name": name, "cluster": "wedsync", "role": "primary", "query": query,
             "expected": expected}
    return {"name": name, "type": "validation", "config": {"checks": [check]}}


def mid_run_edit_plan(*, version: str = "v1", extra_step: bool = False) -> dict[str, Any]:
    """A slow first step (an edit lands while it runs), then a step whose result names its version."""
    steps = [_sql_step("slow", "SELECT true FROM pg_sleep(8)", True),
             _sql_step("version", f"SELECT '{version}'", version)]
    if extra_step:
        steps.append(_sql_step("extra", "SELECT 1", 1))
    return {
        "name": MID_RUN_EDIT,
        "description": "Lab test plan: edited on disk while it runs.",
        "disaster_scenario": "human_error",
        "objectives": {"rto": "15m", "rpo": "1m"},
        "steps": steps,
    }


def approved(data: dict[str, Any]) -> dict[str, Any]:
    """The plan approved as it is (fingerprint included)."""
    fingerprint = parse_plan(data).fingerprint()
    return {**data, "approval": {"status": "approved", "approved_by": "dr-lead",
                                 "approved_at": "2026-12-02T09:00:00Z", "fingerprint": fingerprint}}


def write_plan(folder: Path, data: dict[str, Any], *, approval: dict[str, Any] | None = None) -> Path:
    """Write a plan file (keeping ``approval`` as given: an edit after approval keeps the old one)."""
    content = {**data, "approval": approval} if approval else data
    path = folder / f"{data['name']}.yaml"
    tmp = folder / f".{path.name}.tmp"  # hidden: never taken for a plan file
    tmp.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    tmp.replace(path)  # the task process reads either version, never half of one
    return path


def write_lab_plans(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path in (REPO / "include" / "plans").iterdir():
        if path.is_file():
            shutil.copy(path, folder / path.name)
    write_plan(folder, approved(mid_run_edit_plan()))
    return folder
