"""Debian's Chromium for the browser tests (the app's, and the fleet scenario's on the controller):
where it is, how it is launched, and how it is told to accept one self-signed certificate."""

from __future__ import annotations

import base64
import hashlib
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def spki_sha256(cert_pem: bytes) -> str:
    """The base64 SHA-256 of a PEM certificate's public key, as Chromium's SPKI allow list takes it."""
    public = subprocess.run(
        ["openssl", "x509", "-pubkey", "-noout"], input=cert_pem, check=True, capture_output=True
    ).stdout
    der = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "der"], input=public, check=True, capture_output=True
    ).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def accept_only(cert_pem: bytes) -> str:
    """The Chromium switch that accepts this certificate's key, and no other untrusted one."""
    return f"--ignore-certificate-errors-spki-list={spki_sha256(cert_pem)}"
