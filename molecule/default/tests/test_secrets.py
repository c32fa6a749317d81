"""Secrets as an operator keeps them in git: the scenario runs with a vault password file, so
every password the roles generate is written Vault-encrypted, and the roles read them back
decrypted (a file used verbatim would give the devices ciphertext as their passwords)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import CREDENTIALS_DIR, PROJECT_DIR, WEB_USER, Node


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


def test_a_whole_inventory_directory_is_read_without_its_secrets(
    tmp_path: Path,
) -> None:
    """`-i inventory/` parses every file below it: the project's ansible.cfg keeps the generated
    passwords (and backups and Prometheus targets) kept there from becoming hosts."""
    inventory = tmp_path / "inventory"
    shutil.copytree(
        PROJECT_DIR / "inventory",
        inventory,
        ignore=shutil.ignore_patterns("credentials"),
    )
    for kept in (
        "credentials/shop-exit/mqtt-bridge",
        "backups/shop-exit/counts-1.sqlite3",
    ):
        (inventory / kept).parent.mkdir(parents=True, exist_ok=True)
        (inventory / kept).write_text("not-a-host-name\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(PROJECT_DIR / "ansible.cfg")}
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True, text=True, env=env, check=False, cwd=PROJECT_DIR,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    hosts = set(json.loads(listed.stdout)["_meta"]["hostvars"])
    assert hosts == {
        "demo",
        "shop-entrance",
        "shop-exit",
        "warehouse-door",
        "mqtt-central",
    }, hosts
