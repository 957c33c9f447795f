"""Where scratch restores go (backups.verification.scratch_base). The suite points DR_SCRATCH_DIR at a folder
of its own on /dev/shm (tests/support.py), so the default choice is checked here, without the variable."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from disaster_recovery.backups.verification import SCRATCH_ENV, SHM, make_scratch_folder, scratch_base
from tests.support import SCRATCH_DIR


def test_the_suite_keeps_scratch_restores_in_a_folder_of_its_own():
    assert os.environ[SCRATCH_ENV] == str(SCRATCH_DIR) and scratch_base(0) == SCRATCH_DIR
    folder = make_scratch_folder(needed_bytes=0)
    try:
        assert folder.parent == SCRATCH_DIR and folder.name.startswith("dr-verify-")
    finally:
        folder.rmdir()


@pytest.mark.skipif(not os.access(SHM, os.W_OK), reason="no writable /dev/shm here")
def test_by_default_in_ram_when_it_has_room_else_in_the_temp_folder(monkeypatch):
    monkeypatch.delenv(SCRATCH_ENV)
    stats = os.statvfs(SHM)
    free = stats.f_bavail * stats.f_frsize
    if free > 2**30 + 1:
        assert scratch_base(1) == SHM
    assert scratch_base(free) == Path(tempfile.gettempdir())  # no room for it and 1 GiB to spare
