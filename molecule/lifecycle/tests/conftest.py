"""The lifecycle scenario's helpers: the fleet scenario's (molecule/default/tests/conftest.py,
loaded here as `fleet_conftest`: its hosts, fixtures and failure journals), and a run of one of
the project's playbooks against this scenario's inventory."""

from __future__ import annotations

import importlib.util
import os
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
    """playbooks/PLAYBOOK on this scenario's inventory, with Molecule's ansible.cfg; each task's
    result as one line of JSON, so that a message is never folded."""
    env = dict(os.environ)
    ephemeral = os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY")
    if ephemeral:
        env["ANSIBLE_CONFIG"] = str(Path(ephemeral) / "ansible.cfg")
    env.update(
        ANSIBLE_ROLES_PATH=str(fleet.PROJECT_DIR / "roles"),
        ANSIBLE_CALLBACK_RESULT_FORMAT="json",
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        NO_COLOR="1",
    )
    argv = [
        str(Path(sys.executable).parent / "ansible-playbook"),
        "-i",
        str(fleet.INVENTORY_DIR),
    ]
    for value in extra_vars:
        argv += ["-e", value]
    argv.append(str(fleet.PROJECT_DIR / "playbooks" / playbook))
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=900, check=False
    )
