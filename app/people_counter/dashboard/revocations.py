"""Sessions ended by a logout, kept in a small file so that they stay ended after a restart.

One JSON object, session id -> the session's expiry (unix seconds); an entry is dropped
once its session would have expired anyway. Written whole (to a temporary file, then
renamed), mode 0600.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("people_counter.dashboard.auth")


class RevokedSessions:
    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._ids: dict[str, int] = self._read()

    def _read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            # Not fatal: the sessions it held are still bound to their expiry and the password.
            log.warning("%s: cannot read the ended sessions (%s); starting with none", self.path, error)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): int(v) for k, v in data.items() if isinstance(v, int)}

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._ids

    def add(self, session_id: str, expiry: int) -> None:
        now = self.clock()
        self._ids = {k: v for k, v in self._ids.items() if v >= now}
        self._ids[session_id] = expiry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(self._ids, handle)
            os.replace(tmp, self.path)
        except OSError as error:
            # Ended here all the same; only a restart before the disk recovers would forget it.
            log.warning("%s: cannot save an ended session: %s", self.path, error.strerror or error)
