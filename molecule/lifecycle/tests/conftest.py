"""The lifecycle scenario's helpers: the fleet scenario's (molecule/default/tests/conftest.py,
loaded here as `fleet_conftest`: its hosts, fixtures and failure journals), and a run of one of
the project's playbooks against this scenario's inventory."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

_FLEET_CONFTEST = (
    Path(__file__).resolve().parents[2] / "default" / "tests" / "conftest.py"
)
_spec = importlib.util.spec_from_file_location("fleet_conftest", _FLEET_CONFTEST)
assert _spec is not None and _spec.loader is not None
fleet = importlib.util.module_from_spec(_spec)
sys.modules["fleet_conftest"] = fleet
_spec.loader.exec_module(fleet)

# The fleet's fixture and hooks, as this directory's own.
device = fleet.device
pytest_configure = fleet.pytest_configure
pytest_runtest_makereport = fleet.pytest_runtest_makereport


def run_playbook(playbook: str, *extra_vars: str) -> subprocess.CompletedProcess[str]:
    """playbooks/PLAYBOOK on this scenario's inventory; each task's result as one line of JSON,
    so that a message is never folded."""
    return fleet.run_playbook(playbook, *extra_vars, result_format="json")
