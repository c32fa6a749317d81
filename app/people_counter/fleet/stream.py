"""The fleet page's Server-Sent Events: the whole table once, then only the devices that changed.

Each browser has a set of changed device ids, not a queue of messages: a slow browser gets the
latest rows of every device that changed since it last read, never a backlog, and its memory is
bounded by the number of devices. A browser that reads nothing for `write_timeout_s` loses its
connection.

    event: fleet    data: {"devices": [every row], "fleet": totals, "broker": {...}, "now": ts}
    event: update   data: {"devices": [the rows that changed], "fleet": totals, "broker": {...}, "now": ts}
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from people_counter.dashboard.stalled import drop_stalled
from people_counter.fleet.registry import FleetRegistry


@dataclass(eq=False)
class _Client:
    dirty: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class FleetStream:
    def __init__(
        self,
        registry: FleetRegistry,
        broker: Callable[[], dict[str, Any]],
        write_timeout_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.broker = broker
        self.write_timeout_s = write_timeout_s
        self.clock = clock
        self._clients: set[_Client] = set()

    @property
    def clients(self) -> int:
        return len(self._clients)

    def publish(self, changed: Iterable[str], wake: bool = False) -> None:
        """Tell every browser of these devices; wake=True sends the totals even if none changed."""
        changed = set(changed)
        if not changed and not wake:
            return
        for client in self._clients:
            client.dirty |= changed
            client.wake.set()

    def message(self, devices: Iterable[str]) -> dict[str, Any]:
        return {
            "devices": [self.registry.row(device) for device in sorted(devices)],
            "fleet": self.registry.totals(),
            "broker": self.broker(),
            "now": self.clock(),
        }

    def snapshot(self) -> dict[str, Any]:
        return self.message(self.registry.devices)

    async def handler(self, request: web.Request) -> web.StreamResponse:
        """GET /events."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        await response.prepare(request)
        client = _Client()
        self._clients.add(client)
        try:
            await self._write(response, "fleet", self.snapshot(), prefix=b"retry: 2000\n\n")
            while True:
                await client.wake.wait()
                client.wake.clear()
                changed, client.dirty = client.dirty, set()
                await self._write(response, "update", self.message(changed))
        except TimeoutError:
            drop_stalled(request, "a fleet page", self.write_timeout_s)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._clients.discard(client)
        return response

    async def _write(self, response: web.StreamResponse, event: str, data: dict[str, Any], prefix: bytes = b"") -> None:
        body = prefix + f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()
        await asyncio.wait_for(response.write(body), self.write_timeout_s)
