from dataclasses import dataclass

import pytest
from plan_factory import EXAMPLE_PLAN, base_plan, validation_step

from disaster_recovery.plans import StepGraphError, build_step_graph, load_plan, parse_plan, plan_stages
from disaster_recovery.plans.rules.graph import Stage, step_graph_problems


@dataclass(frozen=True)
class S:
    name: str
    depends_on: tuple[str, ...] = ()
    parallel_group: str | None = None


def test_sequential_plan_chains_each_step_to_the_previous():
    graph = build_step_graph([S("a"), S("b"), S("c")])
    assert graph.stages == (Stage(("a",)), Stage(("b",)), Stage(("c",)))
    assert graph.upstream == {"a": (), "b": ("a",), "c": ("b",)}
    assert graph.order == ("a", "b", "c")
    assert graph.roots == ("a",) and graph.leaves == ("c",)


def test_parallel_group_runs_at_its_first_members_position():
    steps = [S("a"), S("g1", parallel_group="g"), S("b"), S("g2", parallel_group="g"), S("c")]
    graph = build_step_graph(steps)
    assert graph.stages == (Stage(("a",)), Stage(("g1", "g2"), "g"), Stage(("b",)), Stage(("c",)))
    assert graph.upstream == {"a": (), "g1": ("a",), "g2": ("a",), "b": ("g1", "g2"), "c": ("b",)}
    assert graph.order == ("a", "g1", "g2", "b", "c")
    assert graph.downstream["a"] == ("g1", "g2")


def test_group_first_and_two_groups_back_to_back():
    steps = [
        S("x1", parallel_group="x"),
        S("x2", parallel_group="x"),
        S("y1", parallel_group="y"),
        S("y2", parallel_group="y"),
        S("y3", parallel_group="y"),
    ]
    graph = build_step_graph(steps)
    assert [s.steps for s in graph.stages] == [("x1", "x2"), ("y1", "y2", "y3")]
    assert graph.roots == ("x1", "x2")
    assert graph.leaves == ("y1", "y2", "y3")
    assert all(graph.upstream[y] == ("x1", "x2") for y in ("y1", "y2", "y3"))


def test_depends_on_adds_edges():
    steps = [
        S("a"),
        S("b"),
        S("c", depends_on=("a",)),
        S("d", parallel_group="g", depends_on=("a",)),
        S("e", parallel_group="g"),
    ]
    graph = build_step_graph(steps)
    assert graph.upstream["c"] == ("a", "b")
    assert graph.upstream["d"] == ("a", "c")
    assert graph.upstream["e"] == ("c",)


def test_single_step():
    graph = build_step_graph([S("only")])
    assert graph.upstream == {"only": ()} and graph.order == ("only",)


def test_forward_dependency_is_a_named_cycle():
    with pytest.raises(StepGraphError) as info:
        build_step_graph([S("a", depends_on=("c",)), S("b"), S("c")])
    (problem,) = info.value.problems
    assert (problem.step, problem.field, problem.index) == ("a", "depends_on", 0)
    assert problem.message.startswith("dependency cycle: ")
    assert "'a' waits for 'c' (depends_on)" in problem.message
    assert "waits for 'a' (plan order)" in problem.message


def test_cycle_through_a_group_member_moved_forward():
    # g2 belongs to the group at g1's position, so it runs before b: g2 cannot depend on b
    problems = step_graph_problems(
        [S("g1", parallel_group="g"), S("b"), S("g2", parallel_group="g", depends_on=("b",))]
    )
    (problem,) = problems
    assert problem.step == "g2"
    assert "'g2' waits for 'b' (depends_on)" in problem.message
    assert "'b' waits for 'g2' (plan order)" in problem.message


def test_group_members_cannot_depend_on_each_other():
    problems = step_graph_problems([S("a", parallel_group="g"), S("b", parallel_group="g", depends_on=("a",))])
    (problem,) = problems
    assert (problem.step, problem.field) == ("b", "depends_on")
    assert "'a' is in the same parallel_group 'g'" in problem.message


def test_unknown_self_and_duplicate_problems():
    problems = step_graph_problems([S("a"), S("a"), S("b", depends_on=("b", "zz"))])
    assert [(p.index, p.step, p.field) for p in problems] == [
        (1, "a", "name"),
        (2, "b", "depends_on"),
        (2, "b", "depends_on"),
    ]
    assert "duplicate step name (also step #1)" in problems[0].message
    assert "cannot depend on itself" in problems[1].message
    assert "unknown step 'zz'" in problems[2].message


def test_plan_stages_keeps_plan_order():
    stages = plan_stages([S("a", parallel_group="g"), S("b"), S("c", parallel_group="h"), S("d", parallel_group="g")])
    assert stages == (Stage(("a", "d"), "g"), Stage(("b",)), Stage(("c",), "h"))


def test_example_plan_graph():
    plan = load_plan(EXAMPLE_PLAN)
    graph = plan.graph()
    assert [s.steps for s in graph.stages] == [
        ("promote_standby",),
        ("verify_writable", "verify_data"),
        ("notify_team",),
    ]
    assert graph.upstream["notify_team"] == ("verify_writable", "verify_data")
    assert graph.order == ("promote_standby", "verify_writable", "verify_data", "notify_team")


def test_rollback_graph_is_separate():
    plan = parse_plan(base_plan(rollback_steps=[validation_step("undo1"), validation_step("undo2")]))
    assert plan.graph().order == ("check", "promote")
    assert plan.rollback_graph().upstream == {"undo1": (), "undo2": ("undo1",)}
