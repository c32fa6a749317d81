"""A viewer (video or SSE) that reads nothing for write_timeout_s loses its connection and its place.

A write waits only while that one viewer's socket buffer is full, so a write that does not
finish in time means the viewer stopped reading (or its network did).
"""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("people_counter.dashboard.viewers")


def drop_stalled(request: web.Request, who: str, write_timeout_s: float) -> None:
    log.warning("dropped %s at %s: it read nothing for %.0f s", who, request.remote, write_timeout_s)
    if request.transport is not None:
        request.transport.abort()
