"""The parse cache (disaster_recovery.parse_cache): a plan judged once per content, never a stale or broken answer."""

from __future__ import annotations

import gc
import os
import pickle
import threading

import pytest
import yaml

from disaster_recovery import parse_cache, rendering
from disaster_recovery.plans.reading.loader import plan_files
from tests.unit.plan_factory import base_plan

BAD_LAG = "config.max_lag_bytes"


def _plan(name: str, **overrides) -> dict:
    return base_plan(name=name, **overrides)


def _bad(name: str) -> dict:
    plan = _plan(name)
    plan["steps"][1]["config"]["max_lag_bytes"] = "lots"
    return plan


@pytest.fixture
def plans(tmp_path, monkeypatch):
    folder = tmp_path / "plans"
    folder.mkdir()
    (folder / "a.yaml").write_text(yaml.safe_dump(_plan("a")))
    (folder / "b.yaml").write_text(yaml.safe_dump(_bad("b")))
    monkeypatch.setenv("DR_PARSE_CACHE", str(tmp_path / "cache"))
    return folder


@pytest.fixture
def loads(monkeypatch):
    """How many times the plans were really read and validated."""
    calls = []
    real = rendering.load_valid_plans

    def counting(files):
        calls.append(tuple(files))
        return real(files)

    monkeypatch.setattr(rendering, "load_valid_plans", counting)
    return calls


def test_the_second_parse_judges_nothing_and_answers_the_same(plans, loads):
    cold_problems = rendering.plan_problems(plans)
    cold_dags = rendering.build_dags(plans)
    assert len(loads) == 1  # build_dags found what plan_problems stored
    assert rendering.plan_problems(plans) == cold_problems
    warm_dags = rendering.build_dags(plans)
    assert len(loads) == 1
    (line,) = cold_problems
    assert "b.yaml" in line and BAD_LAG in line
    assert set(warm_dags) == set(cold_dags) == {"dr_plan__a"}
    assert warm_dags["dr_plan__a"].doc_md == cold_dags["dr_plan__a"].doc_md
    assert set(warm_dags["dr_plan__a"].task_dict) == set(cold_dags["dr_plan__a"].task_dict)


def test_an_edit_that_keeps_size_and_mtime_is_seen(plans, loads):
    assert rendering.build_dags(plans).keys() == {"dr_plan__a"}
    target = plans / "b.yaml"
    before = target.stat()
    fixed = yaml.safe_dump(_plan("b"))
    assert len(fixed) < before.st_size
    target.write_text(fixed.ljust(before.st_size))  # trailing blanks: the same size, a valid plan
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (target.stat().st_size, target.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert rendering.plan_problems(plans) == []
    assert rendering.build_dags(plans).keys() == {"dr_plan__a", "dr_plan__b"}
    assert len(loads) == 2


@pytest.mark.parametrize("change", ["add", "remove", "rename"])
def test_a_changed_folder_is_judged_again(plans, loads, change):
    rendering.plan_problems(plans)
    if change == "add":
        (plans / "c.yaml").write_text(yaml.safe_dump(_bad("c")))
    elif change == "remove":
        (plans / "b.yaml").unlink()
    else:
        (plans / "b.yaml").rename(plans / "z.yaml")
    lines = rendering.plan_problems(plans)
    assert len(loads) == 2
    assert lines == [str(p) for p in rendering.load_plan_files(
        plan_files(plans), implemented_step_types=rendering.implemented_step_types()).problems]


def test_other_code_or_other_step_types_are_a_miss(plans, loads, monkeypatch):
    rendering.plan_problems(plans)
    monkeypatch.setattr(parse_cache, "code_version", lambda: "another version of the code")
    rendering.plan_problems(plans)
    assert len(loads) == 2
    monkeypatch.setattr(rendering, "_judged_by", lambda: ("validation",))
    rendering.plan_problems(plans)
    assert len(loads) == 3
    rendering.plan_problems(plans)
    assert len(loads) == 3


def _entries(tmp_path):
    cache = tmp_path / "cache"
    return next(cache.glob("*.problems.json")), next(cache.glob("*.plans.pickle"))


@pytest.mark.parametrize("damage", [b"", b"{", b"[1, 2]", b'{"format": 1, "key": 3}', b"\x80\x04garbage"])
def test_a_damaged_entry_is_ignored_and_replaced(plans, loads, tmp_path, damage):
    expected = rendering.plan_problems(plans)
    dags = rendering.build_dags(plans)
    problems_entry, plans_entry = _entries(tmp_path)
    problems_entry.write_bytes(damage)
    assert rendering.plan_problems(plans) == expected
    assert len(loads) == 2  # a miss, which wrote both entries again
    plans_entry.write_bytes(damage)
    assert rendering.build_dags(plans).keys() == dags.keys()
    assert len(loads) == 3
    assert rendering.plan_problems(plans) == expected
    assert rendering.build_dags(plans).keys() == dags.keys()
    assert len(loads) == 3  # both whole again


def test_a_pickle_of_the_right_key_but_cut_short_is_ignored(plans, loads, tmp_path):
    rendering.build_dags(plans)
    _, pickled = _entries(tmp_path)
    pickled.write_bytes(pickled.read_bytes()[:-100])
    assert rendering.build_dags(plans).keys() == {"dr_plan__a"}
    assert len(loads) == 2


def test_a_file_edited_while_it_is_judged_is_not_cached(plans, monkeypatch):
    real = rendering.load_valid_plans
    calls = []

    def editing(files):
        calls.append(1)
        result = real(files)
        if len(calls) == 1:
            (plans / "b.yaml").write_text(yaml.safe_dump(_plan("b")))  # fixed after it was read
        return result

    monkeypatch.setattr(rendering, "load_valid_plans", editing)
    assert len(rendering.plan_problems(plans)) == 1  # what was read: the broken version
    assert rendering.plan_problems(plans) == []  # not the stale answer under the new contents' key
    assert len(calls) == 2


def test_off_or_an_untrusted_folder_means_no_cache(plans, loads, tmp_path, monkeypatch):
    monkeypatch.setenv("DR_PARSE_CACHE", "off")
    rendering.plan_problems(plans)
    rendering.plan_problems(plans)
    assert len(loads) == 2 and not (tmp_path / "cache").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("DR_PARSE_CACHE", str(shared))
    rendering.plan_problems(plans)
    rendering.plan_problems(plans)
    assert len(loads) == 4 and not list(shared.iterdir())


def test_a_cache_folder_that_cannot_be_made_is_no_cache(plans, loads, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("DR_PARSE_CACHE", str(blocker / "cache"))
    assert len(rendering.plan_problems(plans)) == 1
    assert len(rendering.plan_problems(plans)) == 1
    assert len(loads) == 2


def test_two_writers_and_a_reader_never_see_half_an_entry(plans, tmp_path):
    """Entries are written to a temporary file and renamed: a reader gets an old or a new entry, whole."""
    cache = parse_cache.PlansCache(parse_cache.cache_dir(), plans)
    other = tmp_path / "other"
    other.mkdir()
    for i in range(20):
        (other / f"p{i}.yaml").write_text(yaml.safe_dump(_plan(f"p{i}")))
    sets = {"one": rendering.load_valid_plans(plan_files(plans)), "two": rendering.load_valid_plans(plan_files(other))}
    keys = {"one": "k1", "two": "k2"}
    stop = threading.Event()
    seen, errors = [], []

    def write(name):
        while not stop.is_set():
            cache.store(keys[name], sets[name])

    def read():
        for _ in range(300):
            for name, key in keys.items():
                plan_set, lines = cache.plan_set(key), cache.problem_lines(key)
                if plan_set is not None and set(plan_set.plans) != set(sets[name].plans):
                    errors.append(("plans", name))
                if lines is not None and lines != [str(p) for p in sets[name].problems]:
                    errors.append(("lines", name))
                seen.append((plan_set is not None, lines is not None))

    writers = [threading.Thread(target=write, args=(name,)) for name in keys]
    for thread in writers:
        thread.start()
    try:
        read()
    finally:
        stop.set()
        for thread in writers:
            thread.join()
    assert not errors
    assert any(hit for hit, _ in seen) and any(hit for _, hit in seen)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def test_the_pickle_is_only_read_after_its_key_matches(plans, tmp_path):
    rendering.build_dags(plans)
    _, pickled = _entries(tmp_path)
    header, _, body = pickled.read_bytes().partition(b"\n")
    assert header.startswith(b"dr-parse-cache ")
    assert isinstance(pickle.loads(body), parse_cache.PlanSet)
    cache = parse_cache.PlansCache(tmp_path / "cache", plans)
    assert cache.plan_set("not-the-key") is None


def test_dags_built_in_a_frozen_heap_join_it_and_elsewhere_nothing_is_frozen(plans):
    if gc.get_freeze_count():
        pytest.skip("this test process already runs with a frozen heap")
    rendering.build_dags(plans)
    assert gc.get_freeze_count() == 0 and gc.isenabled()
    gc.freeze()  # as Airflow's dag-processor manager does before it forks the parsing processes
    try:
        frozen = gc.get_freeze_count()
        dags = rendering.build_dags(plans)
        assert gc.get_freeze_count() > frozen and gc.isenabled()
        assert dags.keys() == {"dr_plan__a"}
    finally:
        gc.unfreeze()


def test_through_airflow_the_warm_cycle_reports_and_builds_what_the_cold_one_did(plans, loads, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("DR_PLANS_DIR", str(plans))
    dags = rendering.REPO / "dags"
    cold = DagBag(dag_folder=str(dags / "dr_config_errors.py")), DagBag(dag_folder=str(dags / "recovery_plans.py"))
    warm = DagBag(dag_folder=str(dags / "dr_config_errors.py")), DagBag(dag_folder=str(dags / "recovery_plans.py"))
    assert len(loads) == 1
    for first, second in zip(cold, warm, strict=True):
        assert first.import_errors == second.import_errors
        assert set(first.dags) == set(second.dags)
    (message,) = warm[0].import_errors.values()
    assert "b.yaml" in message and BAD_LAG in message
    assert set(warm[1].dags) == {"dr_plan__a"} and not warm[1].import_errors
