"""Execution structure of a plan's steps.

Steps run in plan order. Steps sharing a ``parallel_group`` form one stage that runs at the position of
the group's first member. Each stage waits for the whole previous stage; ``depends_on`` adds edges.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class StepLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def depends_on(self) -> Sequence[str]: ...
    @property
    def parallel_group(self) -> str | None: ...


@dataclass(frozen=True)
class Stage:
    steps: tuple[str, ...]
    parallel_group: str | None = None


@dataclass(frozen=True)
class GraphProblem:
    index: int  # position of the step in the sequence given
    step: str
    field: str
    message: str


class StepGraphError(ValueError):
    def __init__(self, problems: Sequence[GraphProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"step {p.step!r} {p.field}: {p.message}" for p in self.problems))


@dataclass(frozen=True)
class StepGraph:
    stages: tuple[Stage, ...]
    upstream: Mapping[str, tuple[str, ...]]  # step -> the steps it waits for, in plan order
    order: tuple[str, ...]  # a topological order, as close to plan order as the edges allow

    @property
    def downstream(self) -> dict[str, tuple[str, ...]]:
        down: dict[str, list[str]] = {name: [] for name in self.order}
        for name in self.order:
            for up in self.upstream[name]:
                down[up].append(name)
        return {name: tuple(v) for name, v in down.items()}

    @property
    def roots(self) -> tuple[str, ...]:
        return tuple(n for n in self.order if not self.upstream[n])

    @property
    def leaves(self) -> tuple[str, ...]:
        down = self.downstream
        return tuple(n for n in self.order if not down[n])


def plan_stages(steps: Sequence[StepLike]) -> tuple[Stage, ...]:
    """Stages in execution order; a parallel group sits where its first member is."""
    stages: list[tuple[list[str], str | None]] = []
    group_stage: dict[str, int] = {}
    for step in steps:
        group = step.parallel_group
        if group is None:
            stages.append(([step.name], None))
        elif group in group_stage:
            stages[group_stage[group]][0].append(step.name)
        else:
            group_stage[group] = len(stages)
            stages.append(([step.name], group))
    return tuple(Stage(tuple(names), group) for names, group in stages)


def _edges(steps: Sequence[StepLike], stages: Sequence[Stage]) -> tuple[dict[str, list[str]], set[tuple[str, str]]]:
    """``upstream`` lists (plan order, no duplicates) and the set of explicit depends_on edges."""
    position = {s.name: i for i, s in enumerate(steps)}
    upstream: dict[str, set[str]] = {s.name: set() for s in steps}
    for before, after in zip(stages, stages[1:], strict=False):
        for name in after.steps:
            upstream[name].update(before.steps)
    explicit = set()
    for step in steps:
        for dep in step.depends_on:
            if dep in position and dep != step.name:
                upstream[step.name].add(dep)
                explicit.add((step.name, dep))
    return {n: sorted(ups, key=position.__getitem__) for n, ups in upstream.items()}, explicit


def _find_cycle(upstream: Mapping[str, Sequence[str]], order: Sequence[str]) -> list[str] | None:
    """A cycle ``[a, b, ..., a]`` meaning a waits for b ... waits for a; None if acyclic."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for up in upstream[node]:
            if state.get(up) == 1:
                return [*stack[stack.index(up) :], up]
            if up not in state:
                found = visit(up)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in order:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def _describe_cycle(cycle: Sequence[str], explicit: set[tuple[str, str]]) -> str:
    links = []
    for waiter, waited in zip(cycle, cycle[1:], strict=False):
        why = "depends_on" if (waiter, waited) in explicit else "plan order"
        links.append(f"{waiter!r} waits for {waited!r} ({why})")
    return "dependency cycle: " + ", ".join(links)


def step_graph_problems(steps: Sequence[StepLike]) -> list[GraphProblem]:
    """Everything wrong with the steps' names and edges (empty when a graph can be built)."""
    problems: list[GraphProblem] = []
    first_index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if step.name in first_index:
            problems.append(
                GraphProblem(i, step.name, "name", f"duplicate step name (also step #{first_index[step.name] + 1})")
            )
        else:
            first_index[step.name] = i
    for i, step in enumerate(steps):
        for dep in step.depends_on:
            if dep == step.name:
                problems.append(GraphProblem(i, step.name, "depends_on", "a step cannot depend on itself"))
            elif dep not in first_index:
                problems.append(GraphProblem(i, step.name, "depends_on", f"unknown step {dep!r}"))
            elif step.parallel_group is not None and steps[first_index[dep]].parallel_group == step.parallel_group:
                problems.append(
                    GraphProblem(
                        i,
                        step.name,
                        "depends_on",
                        f"{dep!r} is in the same parallel_group {step.parallel_group!r}; steps of a group run "
                        "at the same time and cannot depend on each other",
                    )
                )
    if problems:
        return problems
    stages = plan_stages(steps)
    upstream, explicit = _edges(steps, stages)
    cycle = _find_cycle(upstream, [s.name for s in steps])
    if cycle:
        # blame the first step in the cycle whose own depends_on closes it
        culprit = next(w for w, u in zip(cycle, cycle[1:], strict=False) if (w, u) in explicit)
        problems.append(GraphProblem(first_index[culprit], culprit, "depends_on", _describe_cycle(cycle, explicit)))
    return problems


def build_step_graph(steps: Sequence[StepLike]) -> StepGraph:
    """Stages, upstream sets and a topological order; raise StepGraphError naming what is wrong."""
    problems = step_graph_problems(steps)
    if problems:
        raise StepGraphError(problems)
    stages = plan_stages(steps)
    upstream, _ = _edges(steps, stages)
    position = {s.name: i for i, s in enumerate(steps)}
    # Kahn's algorithm, always taking the ready step that comes first in the plan
    waiting = {name: len(ups) for name, ups in upstream.items()}
    down: dict[str, list[str]] = {name: [] for name in upstream}
    for name, ups in upstream.items():
        for up in ups:
            down[up].append(name)
    ready = [position[n] for n, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order: list[str] = []
    names = [s.name for s in steps]
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for after in down[name]:
            waiting[after] -= 1
            if waiting[after] == 0:
                heapq.heappush(ready, position[after])
    return StepGraph(
        stages=stages,
        upstream={name: tuple(upstream[name]) for name in order},
        order=tuple(order),
    )
