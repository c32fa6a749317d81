"""A service's nice value reaches its session's autogroup, and nothing else's (real kernel, child processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

AUTOGROUP = "/proc/self/autogroup"
pytestmark = pytest.mark.skipif(
    not Path(AUTOGROUP).exists(), reason="this kernel has no autogroups (sched_autogroup off)"
)

REPORT = """
import sys
from pathlib import Path
from people_counter.priority import share_nice_with_autogroup
print(share_nice_with_autogroup(Path(sys.argv[1])), Path("/proc/self/autogroup").read_text().split()[-1])
"""


def run_child(nice: int, new_session: bool, autogroup: str = AUTOGROUP) -> tuple[str, str]:
    """(what share_nice_with_autogroup returned, the autogroup's nice after it) in a child process."""
    output = subprocess.run(
        [sys.executable, "-c", REPORT, autogroup],
        preexec_fn=lambda: os.nice(nice),
        start_new_session=new_session,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return output[0], output[1]


def test_a_niced_session_leader_gives_its_autogroup_the_same_nice() -> None:
    assert run_child(7, new_session=True) == ("7", "7")


def test_a_command_in_someone_elses_session_leaves_that_session_alone() -> None:
    before = Path(AUTOGROUP).read_text()
    assert run_child(7, new_session=False) == ("None", before.split()[-1])
    assert Path(AUTOGROUP).read_text() == before


def test_a_service_at_nice_0_changes_nothing() -> None:
    assert run_child(0, new_session=True) == ("None", "0")


def test_a_kernel_without_autogroups_is_no_error() -> None:
    assert run_child(7, new_session=True, autogroup="/nonexistent/autogroup") == ("None", "0")
