"""people_counter_password_hash: the dashboard's login hash, made by the app itself, with a stable salt.

    lookup('people_counter_password_hash', PASSWORD, seed=SEED, python=PYTHON)

runs the app's own hash_password (what `people-counter-dashboard hash-password --salt-hex` prints)
with the controller's Python that has the app installed, the password on standard input (never
on a command line), and returns the hash. The salt comes from the seed (host and user), so that
an unchanged password renders an unchanged dashboard.yml and a second run changes nothing.
It imports the password module alone: the full command loads the config models too, 3x slower.
"""

from __future__ import annotations

import hashlib
import subprocess

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

SALT_BYTES = 16
HASH = (
    "import sys; from people_counter.dashboard.passwords import hash_password; "
    "print(hash_password(sys.stdin.readline().rstrip('\\r\\n'), bytes.fromhex(sys.argv[1])))"
)


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        seed, python = kwargs.get("seed"), kwargs.get("python")
        if len(terms) != 1 or not isinstance(terms[0], str) or not terms[0]:
            raise AnsibleLookupError("people_counter_password_hash: give one non-empty password")
        if not seed or not python:
            raise AnsibleLookupError("people_counter_password_hash: seed= and python= are required")
        salt = hashlib.sha256(("people-counter-salt:" + str(seed)).encode("utf-8")).digest()[:SALT_BYTES]
        command = [str(python), "-c", HASH, salt.hex()]
        try:
            done = subprocess.run(
                command, input=terms[0] + "\n", capture_output=True, text=True, timeout=60, check=False
            )
        except OSError as error:
            raise AnsibleLookupError(f"people_counter_password_hash: cannot run {python}: {error.strerror}") from None
        if done.returncode != 0 or not done.stdout.startswith("scrypt$"):
            said = " ".join(f"{done.stderr} {done.stdout}".split())
            raise AnsibleLookupError(f"people_counter_password_hash: {python} could not hash: {said}")
        return [done.stdout.strip()]
