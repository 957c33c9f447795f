"""Nothing a test made outlives it: run last (conftest moves it there), after every module's fixtures ended.

Only session-scoped fixtures are still up here (their clusters are expected); conftest's
``pytest_sessionfinish`` repeats the check once those are gone too, and fails the run if anything was left.
"""

from __future__ import annotations

import pytest

from tests.leftovers import leftovers
from tests.support import HELD, SCRATCH_DIR, SWEEPER, TEMP_DIR

pytestmark = pytest.mark.session_end


@pytest.mark.skipif(SWEEPER is None, reason="a nested session: the outer one checks")
def test_nothing_of_this_session_is_left():
    """No server, process, listening port, shared memory, scratch restore or temp file of ours remains."""
    found = leftovers(SWEEPER, held=HELD, scratch=SCRATCH_DIR, temp=TEMP_DIR, final=False)
    assert found == [], "\n".join(found)


@pytest.mark.skipif(SWEEPER is None, reason="a nested session: the outer one checks")
def test_the_registry_names_this_session():
    """A run killed now would still be cleared by the next: the registry names our folders and clusters."""
    import json

    record = json.loads(SWEEPER.path.read_text())
    assert record["pid"] == SWEEPER.record.pid and record["folders"] == SWEEPER.record.folders
    assert set(record["clusters"]) == set(SWEEPER.record.clusters)
