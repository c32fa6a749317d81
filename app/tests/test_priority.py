"""A service's nice value reaches its session's autogroup, and nothing else's (real kernel, child processes).

Every check runs in a session of its own: the session that runs pytest may be the kernel's
root autogroup (a process that never called setsid), which has no nice to read or set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

AUTOGROUP = "/proc/self/autogroup"
pytestmark = pytest.mark.skipif(
    not Path(AUTOGROUP).exists(), reason="this kernel has no autogroups (sched_autogroup off)"
)

# argv: autogroup path -> [what share_nice_with_autogroup returned, this session's autogroup text after it]
REPORT = """
import json, sys
from pathlib import Path
from people_counter.priority import share_nice_with_autogroup
result = share_nice_with_autogroup(Path(sys.argv[1]))
print(json.dumps([result, Path("/proc/self/autogroup").read_text()]))
"""

# argv: REPORT, autogroup path -> [this session's autogroup text before, REPORT's output from a
# niced process in this session that does not lead it, this session's autogroup text after]
SESSION_WITH_A_FOLLOWER = """
import json, os, subprocess, sys
from pathlib import Path
before = Path("/proc/self/autogroup").read_text()
follower = subprocess.run(
    [sys.executable, "-c", sys.argv[1], sys.argv[2]],
    preexec_fn=lambda: os.nice(7), capture_output=True, text=True, check=True,
)
print(json.dumps([before, json.loads(follower.stdout), Path("/proc/self/autogroup").read_text()]))
"""


def run_leader(nice: int, autogroup: str = AUTOGROUP) -> tuple[int | None, str]:
    """(what share_nice_with_autogroup returned, its autogroup's text after) in a new session's leader."""
    output = subprocess.run(
        [sys.executable, "-c", REPORT, autogroup],
        preexec_fn=lambda: os.nice(nice),
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result, text = json.loads(output)
    return result, text


def nice_of(autogroup_text: str) -> str:
    """The nice value in a /proc/<pid>/autogroup line such as '/autogroup-12 nice 7'."""
    return autogroup_text.split()[-1]


def test_a_niced_session_leader_gives_its_autogroup_the_same_nice() -> None:
    result, text = run_leader(7)
    assert (result, nice_of(text)) == (7, "7")


def test_a_command_in_someone_elses_session_leaves_that_session_alone() -> None:
    output = subprocess.run(
        [sys.executable, "-c", SESSION_WITH_A_FOLLOWER, REPORT, AUTOGROUP],
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    before, (result, text_seen_by_follower), after = json.loads(output)
    assert nice_of(before) == "0"
    assert result is None
    assert text_seen_by_follower == before
    assert after == before


def test_a_service_at_nice_0_changes_nothing() -> None:
    result, text = run_leader(0)
    assert (result, nice_of(text)) == (None, "0")


def test_a_kernel_without_autogroups_is_no_error() -> None:
    result, text = run_leader(7, autogroup="/nonexistent/autogroup")
    assert (result, nice_of(text)) == (None, "0")
