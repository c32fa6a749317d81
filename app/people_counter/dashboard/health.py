"""What /healthz says: the counter's problems, read from its latest state.

- stale: no state yet, or the latest is `stale_after_s` old (the counter or the broker is down);
- degraded: the input has been down more than `input_down_after_s` (the state's
  `input_down_s`, or how long the dashboard has seen `input` other than "ok"), or the
  state's `store` is "degraded" (the disk cannot be written; counts are kept in memory).

A field the state lacks (an older counter) is unknown, not a problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Health:
    status: str  # "ok", "degraded" or "stale"
    problems: list[str] = field(default_factory=list)
    input_down_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def assess(
    state: dict[str, Any],
    state_age_s: float | None,
    stale_after_s: float,
    input_not_ok_for_s: float | None,
    input_down_after_s: float,
) -> Health:
    """input_not_ok_for_s: how long the dashboard has seen `input` other than "ok" (None: it is ok)."""
    problems: list[str] = []
    stale = state_age_s is None or state_age_s >= stale_after_s
    if state_age_s is None:
        problems.append("no state from the counter yet")
    elif stale:
        problems.append(f"the counter's state is {state_age_s:.0f} s old")
    known = [s for s in (_number(state.get("input_down_s")), input_not_ok_for_s) if s is not None]
    down_s = max(known) if known else None
    if down_s is not None and down_s > input_down_after_s:
        problems.append(f"input down for {down_s:.0f} s (input: {state.get('input', 'unknown')})")
    if state.get("store") == "degraded":
        problems.append("store degraded: counts kept in memory, not yet written")
    status = "stale" if stale else "degraded" if problems else "ok"
    return Health(status, problems, down_s)
