"""Callbacks on every LocalCluster made or started in this process (the test session registers what it must
clean up with them, even a cluster a test forgets or a restore makes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CREATED: list[Callable[[Any], None]] = []
_STARTED: list[Callable[[Any], None]] = []


def on_cluster_created(hook: Callable[[Any], None]) -> None:
    """Call ``hook(cluster)`` for every LocalCluster (restored and scratch ones included) made from now on."""
    _CREATED.append(hook)


def on_cluster_started(hook: Callable[[Any], None]) -> None:
    """Call ``hook(cluster)`` whenever ``LocalCluster.start`` has started a server."""
    _STARTED.append(hook)


def created(cluster) -> None:
    for hook in _CREATED:
        hook(cluster)


def started(cluster) -> None:
    for hook in _STARTED:
        hook(cluster)
