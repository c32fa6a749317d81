"""Secrets as an operator keeps them in git: the scenario runs with a vault password file, so
every password the roles generate is written Vault-encrypted, and the roles read them back
decrypted (a file used verbatim would give the devices ciphertext as their passwords)."""

from __future__ import annotations

from conftest import CREDENTIALS_DIR, WEB_USER, Node


def test_every_generated_password_is_vault_encrypted() -> None:
    files = [
        path
        for path in CREDENTIALS_DIR.glob("*/*")
        if path.is_file() and path.parent.name != "pki"
    ]
    assert len(files) >= 5, f"too few generated secrets: {files}"
    plain = [
        str(path)
        for path in files
        if not path.read_bytes().startswith(b"$ANSIBLE_VAULT;")
    ]
    assert not plain, f"not Vault-encrypted: {plain}"


def test_the_devices_got_the_plaintext(device: Node) -> None:
    """The broker accepts the decrypted password: the roles did not install the ciphertext."""
    result = device.mqtt_sub(
        f"people_counter/{device.name}/state",
        WEB_USER,
        device.mqtt_password(WEB_USER),
        retained_only=True,
    )
    assert result.rc == 0 and result.stdout.strip().startswith("{"), result.stderr
