"""The start-up heap is frozen only in a process that is the recorder's from start to end."""

from __future__ import annotations

import gc
import subprocess
import sys

from recorder import heap


def test_a_command_run_inside_another_program_leaves_its_heap_alone() -> None:
    """In-process callers (these tests, CliRunner) never get their heap frozen."""
    frozen_before = gc.get_freeze_count()
    assert heap.freeze_startup_heap() is False
    assert gc.get_freeze_count() == frozen_before


def test_a_claimed_process_freezes_what_start_up_left() -> None:
    script = (
        "import gc; from recorder import heap; heap.claim_process(); "
        "print(heap.freeze_startup_heap(), gc.get_freeze_count() > 1000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["True", "True"]
