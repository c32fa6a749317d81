"""appliance_secret: a secret kept in a file on the controller, Vault-encrypted or not.

    lookup('appliance_secret', PATH, length=32)

An existing file is read through Ansible's loader, so a Vault-encrypted one (`ansible-vault
encrypt`) gives its plaintext, not its ciphertext; surrounding whitespace is dropped. A missing
file is made once: a random secret of `length` letters and digits, written with mode 0600, and
Vault-encrypted when the run has a vault password (--vault-password-file, --vault-id or
ANSIBLE_VAULT_PASSWORD_FILE), so that the credentials directory can be kept in git. A second
controller with the same files generates nothing.
"""

from __future__ import annotations

import os
import secrets
import string

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.parsing.vault import VaultLib
from ansible.plugins.lookup import LookupBase

ALPHABET = string.ascii_letters + string.digits


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        length = int(kwargs.get("length", 32))
        if length < 8:
            raise AnsibleLookupError("appliance_secret: length must be at least 8")
        return [self._read_or_make(str(path), length) for path in terms]

    def _read_or_make(self, path: str, length: int) -> str:
        if os.path.exists(path):
            return self._read(path)
        secret = "".join(secrets.choice(ALPHABET) for _ in range(length))
        if not self._write_once(path, secret):  # another host of the run made it first
            return self._read(path)
        return secret

    def _read(self, path: str) -> str:
        try:
            real = self._loader.get_real_file(path, decrypt=True)
            try:
                with open(real, "rb") as handle:
                    text = to_text(handle.read(), errors="surrogate_or_strict").strip()
            finally:
                self._loader.cleanup_tmp_file(real)
        except AnsibleError as error:
            raise AnsibleLookupError(f"appliance_secret: {path}: {error.message}") from None
        except OSError as error:
            raise AnsibleLookupError(f"appliance_secret: {path}: {error.strerror}") from None
        if not text:
            raise AnsibleLookupError(f"appliance_secret: {path} is empty: delete it to have a new secret made")
        return text

    def _write_once(self, path: str, secret: str) -> bool:
        """Write the file unless it exists: hosts run in parallel, and the first one's secret wins."""
        data = to_bytes(secret + "\n")
        vault_secrets = self._loader._vault.secrets  # the run's vault passwords, if any
        if vault_secrets:
            vault_id, vault_secret = vault_secrets[0]
            data = VaultLib(vault_secrets).encrypt(data, vault_secret, vault_id=vault_id)
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        temporary = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        try:
            os.link(temporary, path)  # fails if the file exists: never two secrets for one name
        except FileExistsError:
            return False
        finally:
            os.unlink(temporary)
        return True
