"""Small pieces the test servers and clients share."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def free_port() -> int:
    """A loopback port nobody listens on now (a small race with other processes is accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_first(
    cond: threading.Condition, items: Sequence[T], predicate: Callable[[T], bool], timeout_s: float
) -> T | None:
    """The first of `items` that matches, already there or arriving within the timeout.

    `items` grows under `cond`, whose owner calls notify_all() after each append.
    """
    deadline = time.monotonic() + timeout_s
    seen = 0
    with cond:
        while True:
            for item in items[seen:]:
                if predicate(item):
                    return item
            seen = len(items)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            cond.wait(remaining)


def wait_until(condition: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    """Poll `condition` until it holds or the timeout passes; its last answer. The timeout only
    bounds a hang: a test waits for the condition, never for it to hold within a span of time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
