"""people_counter_password_hash: the dashboard's login hash, with a stable salt.

The format is the dashboard's (`people-counter-dashboard hash-password`):
`scrypt$<n>$<r>$<p>$<salt b64>$<key b64>`, hashlib.scrypt with a 32-byte key. The salt
comes from a seed (host and user), so that an unchanged password renders an unchanged
dashboard.yml and a second run changes nothing.
"""

from __future__ import annotations

import base64
import hashlib

from ansible.errors import AnsibleFilterError

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
KEY_BYTES = 32
SALT_BYTES = 16


def people_counter_password_hash(password, seed):
    if not isinstance(password, str) or not password:
        raise AnsibleFilterError("people_counter_password_hash: the password must be a non-empty string")
    if not seed:
        raise AnsibleFilterError("people_counter_password_hash: a seed (e.g. host and user) is required")
    salt = hashlib.sha256(("people-counter-salt:" + str(seed)).encode("utf-8")).digest()[:SALT_BYTES]
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=KEY_BYTES)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


class FilterModule:
    def filters(self):
        return {"people_counter_password_hash": people_counter_password_hash}
