"""people_counter_password_hash: the dashboard's login hash, with a stable salt.

Format `pbkdf2_sha256$<iterations>$<salt b64>$<hash b64>` (hashlib.pbkdf2_hmac). The salt
comes from a seed (host and user), so that an unchanged password renders an unchanged
dashboard.yml and a second run changes nothing.
"""

from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError


def people_counter_password_hash(password, seed, iterations=600000):
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("people_counter_password_hash: the password must be a non-empty string")
    if not seed:
        raise AnsibleFilterError("people_counter_password_hash: a seed (e.g. host and user) is required")
    iterations = int(iterations)
    salt = hashlib.sha256(("people-counter-salt:" + str(seed)).encode("utf-8")).digest()[:16]
    key = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    return "pbkdf2_sha256${}${}${}".format(
        iterations,
        base64.b64encode(salt).decode("ascii"),
        base64.b64encode(key).decode("ascii"),
    )


class FilterModule:
    def filters(self):
        return {"people_counter_password_hash": people_counter_password_hash}
