"""people_counter_password_hash: the dashboard's login hash, made by the app itself, with a stable salt.

    lookup('people_counter_password_hash', PASSWORD, seed=SEED, bin_dir=DIR)

runs ``DIR/people-counter-dashboard hash-password --salt-hex SALT`` on the controller, with the
password on standard input (never on a command line), and returns the hash it prints. The salt
comes from the seed (host and user), so that an unchanged password renders an unchanged
dashboard.yml and a second run changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

SALT_BYTES = 16


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        seed, bin_dir = kwargs.get("seed"), kwargs.get("bin_dir")
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0]:
            raise AnsibleLookupError("people_counter_password_hash: give one non-empty password")
        if not seed or not bin_dir:
            raise AnsibleLookupError("people_counter_password_hash: seed= and bin_dir= are required")
        salt = hashlib.sha256(("people-counter-salt:" + str(seed)).encode("utf-8")).digest()[:SALT_BYTES]
        command = [os.path.join(bin_dir, "people-counter-dashboard"), "hash-password", "--salt-hex", salt.hex()]
        try:
            done = subprocess.run(
                command, input=terms[0] + "\n", capture_output=True, text=True, timeout=60, check=False
            )
        except OSError as error:
            raise AnsibleLookupError(
                f"people_counter_password_hash: cannot run {command[0]}: {error.strerror}"
            ) from None
        if done.returncode != 0:
            said = " ".join(f"{done.stderr} {done.stdout}".split())
            raise AnsibleLookupError(f"people_counter_password_hash: {command[0]} failed: {said}")
        return [done.stdout.strip()]
