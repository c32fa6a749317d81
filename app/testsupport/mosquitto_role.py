"""The mosquitto role's templates rendered by Ansible itself, for tests of what a device's broker gets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MOSQUITTO_ROLE = REPO / "roles" / "mosquitto"

PLAY = """
- name: Render the mosquitto role's templates
  hosts: all
  gather_facts: false
  tasks:
    - name: Load the role's defaults and vars
      ansible.builtin.include_role: {name: mosquitto, tasks_from: validate, public: true}
    - name: Write each template
      ansible.builtin.copy:
        content: "{{ lookup('ansible.builtin.template', role ~ '/templates/' ~ item) }}"
        dest: "{{ out }}/{{ item }}"
        mode: "0600"
      loop: "{{ templates }}"
"""


def ansible_playbook() -> str | None:
    """The ansible-playbook beside this Python (the repository's venv), else the one on PATH."""
    beside = Path(sys.executable).with_name("ansible-playbook")
    return str(beside) if beside.exists() else shutil.which("ansible-playbook")


def render_role_templates(
    names: Iterable[str], host_vars: Mapping[str, object], workdir: Path, host: str = "dev1"
) -> dict[str, str]:
    """templates/<name> of the mosquitto role, rendered for one inventory host with these variables."""
    playbook = ansible_playbook()
    if playbook is None:
        raise RuntimeError("ansible-playbook is not installed")
    names = list(names)
    out = workdir / "rendered"
    out.mkdir(parents=True, exist_ok=True)
    host_entry = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, **host_vars}
    (workdir / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {host: host_entry}}}), encoding="utf-8")
    (workdir / "play.yml").write_text(PLAY, encoding="utf-8")
    extra = {"role": str(MOSQUITTO_ROLE), "out": str(out), "templates": names}
    # The role's templates use appliance_common's lookups, loaded with that role on a real run.
    lookups = REPO / "roles" / "appliance_common" / "lookup_plugins"
    env = os.environ | {"ANSIBLE_ROLES_PATH": str(REPO / "roles"), "ANSIBLE_LOOKUP_PLUGINS": str(lookups)}
    done = subprocess.run(
        [playbook, "-i", "hosts.yml", "-e", json.dumps(extra), "play.yml"],
        cwd=workdir,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {name: (out / name).read_text(encoding="utf-8") for name in names}


def acl_rules(acl_text: str) -> list[list[str]]:
    """The user and topic lines of a Mosquitto ACL, split into words."""
    return [line.split() for line in acl_text.splitlines() if line.startswith(("user ", "topic "))]
