"""Password guessing, slowed per address: a few free tries, then one try per delay, doubling.

After FREE_FAILURES wrong passwords from an address, its next try must wait 1 s after the
last failure, then 2 s, 4 s ... up to MAX_DELAY_S. A try too early is refused (429 with
Retry-After) before the password is even hashed, so guessing costs the device nothing and
holds nothing open. A right password clears the address's record. Other addresses are not
affected: the right password from elsewhere gets in at once.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

FREE_FAILURES = 5
MAX_DELAY_S = 60.0
_MAX_ADDRESSES = 10_000  # the oldest record goes first when more addresses than this have failed


@dataclass
class _Record:
    failures: int
    last_failure: float


class LoginLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _delay_s(self, failures: int) -> float:
        if failures < FREE_FAILURES:
            return 0.0
        return float(min(MAX_DELAY_S, 2 ** (failures - FREE_FAILURES)))

    def attempt(self, address: str) -> int:
        """0 if the address may try now, else the whole seconds it must wait first.

        A try let through counts as a failure until succeeded() says otherwise, so that
        tries sent at once, before any has been checked, are counted too.
        """
        record = self._records.pop(address, None) or _Record(0, 0.0)
        self._records[address] = record
        now = self.clock()
        wait = record.last_failure + self._delay_s(record.failures) - now
        if wait > 0:
            return math.ceil(wait)
        record.failures += 1
        record.last_failure = now
        while len(self._records) > _MAX_ADDRESSES:
            self._records.popitem(last=False)
        return 0

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)
