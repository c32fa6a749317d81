"""systemd readiness: READY=1, WATCHDOG=1 and STATUS= through sd_notify.

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the same loop
runs from a shell, a test or a unit.
"""

from __future__ import annotations

import os

import sdnotify


class ServiceNotifier:
    def __init__(self) -> None:
        self._enabled = bool(os.environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self._enabled else None

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def watchdog(self, status: str) -> None:
        self._send(f"WATCHDOG=1\nSTATUS={status}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=flushing counts")
