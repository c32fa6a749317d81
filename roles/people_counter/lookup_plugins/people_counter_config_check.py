"""people_counter_config_check: the app's own verdict on a device's rendered configs.

    query('people_counter_config_check', counter=TEXT, dashboard=TEXT, bin_dir=DIR)

runs ``DIR/people-counter check-config /dev/stdin`` with the counter config on standard
input, and ``DIR/people-counter-dashboard check-config /dev/stdin`` with the dashboard's,
on the controller (an empty DIR: the commands on the controller's PATH), and returns one
line per invalid config (the app's own line, which names the field), or nothing. It is the
check the device's ``validate:`` runs, done before any device changes. A lookup rather than a
delegated task: no connection and no task of its own, so the validation play checks both
configs of a host in one assert.
"""

from __future__ import annotations

import os
import subprocess

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

CHECKS = (
    ("counter", "people-counter", "config.yml"),
    ("dashboard", "people-counter-dashboard", "dashboard.yml"),
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        bin_dir = kwargs.get("bin_dir")
        if bin_dir is None:
            raise AnsibleLookupError(
                "people_counter_config_check: bin_dir= (the app's bin directory, or '' for PATH) is required"
            )
        problems = []
        for kind, program, shown_as in CHECKS:
            text = kwargs.get(kind)
            if text is None:
                continue
            command = os.path.join(bin_dir, program)
            try:
                done = subprocess.run(
                    [command, "check-config", "/dev/stdin"],
                    input=str(text),
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
            except OSError as error:
                raise AnsibleLookupError(
                    f"people_counter_config_check: cannot run {command}: {error.strerror}"
                ) from None
            if done.returncode != 0:
                said = " ".join(f"{done.stderr} {done.stdout}".split()).replace("/dev/stdin", shown_as)
                problems.append(f"the {kind} config from the inventory is invalid: {said}")
        return problems
