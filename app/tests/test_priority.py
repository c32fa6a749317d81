"""A service's nice value reaches its session's autogroup, and nothing else's (real kernel, child processes).

Every check runs in a session of its own: the session that runs pytest may be the kernel's
root autogroup (a process that never called setsid), which has no nice to read or set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from people_counter.priority import AUTOGROUP

pytestmark = pytest.mark.skipif(not AUTOGROUP.exists(), reason="this kernel has no autogroups (sched_autogroup off)")

# argv: autogroup path -> [what share_nice_with_autogroup returned, this session's autogroup text after it]
REPORT = """
import json, sys
from pathlib import Path
from people_counter.priority import AUTOGROUP, share_nice_with_autogroup
result = share_nice_with_autogroup(Path(sys.argv[1]))
print(json.dumps([result, AUTOGROUP.read_text()]))
"""

# argv: REPORT, autogroup path -> [this session's autogroup text before, REPORT's output from a
# niced process in this session that does not lead it, this session's autogroup text after]
SESSION_WITH_A_FOLLOWER = """
import json, os, subprocess, sys
from people_counter.priority import AUTOGROUP
before = AUTOGROUP.read_text()
follower = subprocess.run(
    [sys.executable, "-c", sys.argv[1], sys.argv[2]],
    preexec_fn=lambda: os.nice(7), capture_output=True, text=True, check=True,
)
print(json.dumps([before, json.loads(follower.stdout), AUTOGROUP.read_text()]))
"""


def run_in_new_session(script: str, *args: str, nice: int = 0) -> Any:
    """What a script run at this nice value, as the leader of a new session, prints as JSON."""
    output = subprocess.run(
        [sys.executable, "-c", script, *args],
        preexec_fn=lambda: os.nice(nice),
        start_new_session=True,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output)


def nice_of(autogroup_text: str) -> str:
    """The nice value in a /proc/<pid>/autogroup line such as '/autogroup-12 nice 7'."""
    return autogroup_text.split()[-1]


def test_a_niced_session_leader_gives_its_autogroup_the_same_nice() -> None:
    result, text = run_in_new_session(REPORT, str(AUTOGROUP), nice=7)
    assert (result, nice_of(text)) == (7, "7")


def test_a_command_in_someone_elses_session_leaves_that_session_alone() -> None:
    before, (result, text_seen_by_follower), after = run_in_new_session(SESSION_WITH_A_FOLLOWER, REPORT, str(AUTOGROUP))
    assert nice_of(before) == "0"
    assert result is None
    assert text_seen_by_follower == before
    assert after == before


def test_a_service_at_nice_0_changes_nothing() -> None:
    result, text = run_in_new_session(REPORT, str(AUTOGROUP), nice=0)
    assert (result, nice_of(text)) == (None, "0")


def test_a_kernel_without_autogroups_is_no_error() -> None:
    result, text = run_in_new_session(REPORT, "/nonexistent/autogroup", nice=7)
    assert (result, nice_of(text)) == (None, "0")
