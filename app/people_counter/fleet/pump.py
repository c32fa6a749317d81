"""The fleet page's beat: what the inbox received goes to the device table, the history and the browsers.

Every `push_interval_s`: drain the inbox, apply each message to the registry (and a state or an
event to the history batch), let the registry notice what time alone changed, and tell the
browsers which devices changed. Every `flush_interval_s`: write the history batch from a worker
thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from people_counter.fleet.history_store import HistoryStore
from people_counter.fleet.inbox import Inbox
from people_counter.fleet.registry import FleetRegistry
from people_counter.fleet.stream import FleetStream

log = logging.getLogger("people_counter.fleet.pump")


class Pump:
    def __init__(
        self,
        inbox: Inbox,
        registry: FleetRegistry,
        history: HistoryStore,
        stream: FleetStream,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.inbox = inbox
        self.registry = registry
        self.history = history
        self.stream = stream
        self.clock = clock
        self._broker_seen: tuple[bool, str] = (False, "")

    def step(self) -> None:
        for message in self.inbox.drain():
            if not self.registry.apply(message):
                continue
            if message.kind == "state":
                self.history.add_state(message.device, message.data)
            elif message.kind == "event":
                self.history.add_event(message.device, message.data)
        self.registry.sweep(self.clock())
        broker = (self.inbox.connected, self.inbox.error)
        self.stream.publish(self.registry.take_changed(), wake=broker != self._broker_seen)
        self._broker_seen = broker

    async def run(self, push_interval_s: float) -> None:
        while True:
            self.step()
            await asyncio.sleep(push_interval_s)

    async def flush_every(self, flush_interval_s: float) -> None:
        while True:
            await asyncio.sleep(flush_interval_s)
            await self.flush()

    async def flush(self) -> None:
        try:
            await asyncio.to_thread(self.history.write, *self.history.take_batch())
        except Exception as error:  # a full or read-only disk: the live page goes on
            log.warning("cannot write the fleet history to %s: %s", self.history.path, error)
