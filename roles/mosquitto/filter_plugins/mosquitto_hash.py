"""mosquitto_hash: a Mosquitto password-file hash with a stable salt.

Mosquitto 2.x writes `$7$<iterations>$<salt b64>$<hash b64>`: PBKDF2-HMAC-SHA512 over a
12-byte salt, 64-byte key. mosquitto_passwd draws a random salt, so every run would change
the file; here the salt comes from a seed (host and user), so the same password gives the
same line and a second run changes nothing.
"""

from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError

SALT_BYTES = 12
KEY_BYTES = 64


def mosquitto_hash(password, seed, iterations=101):
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("mosquitto_hash: the password must be a non-empty string")
    if not seed:
        raise AnsibleFilterError("mosquitto_hash: a seed (e.g. host and user) is required")
    iterations = int(iterations)
    if iterations < 1:
        raise AnsibleFilterError("mosquitto_hash: iterations must be positive")
    salt = hashlib.sha256(("mosquitto-salt:" + str(seed)).encode("utf-8")).digest()[:SALT_BYTES]
    key = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, KEY_BYTES)
    return "$7${}${}${}".format(
        iterations,
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(key).decode("ascii"),
    )


class FilterModule:
    def filters(self):
        return {"mosquitto_hash": mosquitto_hash}
