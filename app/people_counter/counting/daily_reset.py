"""The optional daily reset: a local time of day at which a new count starts."""

from __future__ import annotations

import datetime as dt


class DailyReset:
    def __init__(self, at: dt.time | None, now: float | None = None) -> None:
        self._at = at
        self._next: float | None = None
        if at is not None:
            start = dt.datetime.now().astimezone() if now is None else dt.datetime.fromtimestamp(now).astimezone()
            self._next = self._following(start)

    def _following(self, after: dt.datetime) -> float:
        assert self._at is not None
        candidate = after.replace(hour=self._at.hour, minute=self._at.minute, second=self._at.second, microsecond=0)
        if candidate <= after:
            candidate += dt.timedelta(days=1)
        return candidate.timestamp()

    def due(self, now: float) -> bool:
        """True once when the reset time has passed; then it waits for the next day."""
        if self._next is None or now < self._next:
            return False
        self._next = self._following(dt.datetime.fromtimestamp(now).astimezone())
        return True
