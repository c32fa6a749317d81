"""The connection guard: what aiohttp leaves unbounded before a request reaches it.

It is the listening socket's protocol, in front of aiohttp's RequestHandler:

- at accept, a connection over the cap for its address, or over the total cap, is aborted at
  once (counted; logging_setup's RepeatFilter keeps its warning to one line in 10 s);
- the TLS handshake (when HTTPS is on) and a complete request head must arrive within
  `head_timeout_s`, else the connection is aborted; a head over `max_head_bytes` gets 431;
- then aiohttp gets the connection and every byte read so far, and the guard only passes
  the transport's calls on (and gives the address's place back when it closes).

aiohttp's own keep-alive timeout bounds the wait for a later request on the same connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("people_counter.dashboard.guard")

_HEAD_ENDS = (b"\r\n\r\n", b"\n\n")
_TOO_LARGE = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass(frozen=True)
class GuardLimits:
    head_timeout_s: float = 10.0
    max_connections: int = 512
    max_per_address: int = 32
    max_head_bytes: int = 32 * 1024


class ConnectionGuard:
    """Counts open connections per address; makes a GuardedProtocol for each accepted one."""

    def __init__(
        self,
        inner: Callable[[], asyncio.Protocol],
        limits: GuardLimits,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.inner = inner
        self.limits = limits
        self.ssl_context = ssl_context
        self.open: collections.Counter[str] = collections.Counter()

    def __call__(self) -> GuardedProtocol:
        return GuardedProtocol(self)

    def admit(self, address: str) -> bool:
        if self.open[address] >= self.limits.max_per_address or self.open.total() >= self.limits.max_connections:
            log.warning(
                "refused a connection from %s: %d open from it, %d in all (caps %d and %d)",
                address,
                self.open[address],
                self.open.total(),
                self.limits.max_per_address,
                self.limits.max_connections,
            )
            return False
        self.open[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


class GuardedProtocol(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.admitted = False
        self.inner: asyncio.Protocol | None = None
        self._head = bytearray()
        self._scanned = 0
        self._tls_pending = False
        self._timer: asyncio.TimerHandle | None = None
        self._tls_task: asyncio.Task[None] | None = None

    # -- before aiohttp has the connection ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        if not self.guard.admit(self.address):
            transport.abort()
            return
        self.admitted = True
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.guard.limits.head_timeout_s, self._expire)
        if self.guard.ssl_context is not None:
            self._tls_pending = True
            self._tls_task = loop.create_task(self._start_tls(transport, self.guard.ssl_context))

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw, self, context, server_side=True, ssl_handshake_timeout=self.guard.limits.head_timeout_s
            )
        except (OSError, TimeoutError):
            tls = None  # a failed or abandoned handshake: start_tls has closed the connection
        if not isinstance(tls, asyncio.Transport):
            # Also None: the connection was aborted mid-handshake (at the head timeout).
            self._release()
            return
        self.transport = tls
        self._tls_pending = False
        self._check_head()

    def _expire(self) -> None:
        self._timer = None
        if self.inner is None and self.transport is not None:
            limit = self.guard.limits.head_timeout_s
            log.warning("closed a connection from %s: no complete request head in %.0f s", self.address, limit)
            self.transport.abort()

    def _check_head(self) -> None:
        if self._tls_pending or self.transport is None or self.transport.is_closing():
            return
        # Only the new bytes (and the 3 before them) are searched: a head sent a byte at a time
        # costs no more than one sent at once.
        start, self._scanned = max(0, self._scanned - 3), len(self._head)
        if any(self._head.find(end, start) >= 0 for end in _HEAD_ENDS):
            self._hand_over(self.transport)
        elif len(self._head) > self.guard.limits.max_head_bytes:
            self.transport.write(_TOO_LARGE)
            self.transport.close()

    def _hand_over(self, transport: asyncio.Transport) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.inner = self.guard.inner()
        self.inner.connection_made(transport)
        head, self._head = bytes(self._head), bytearray()
        self.inner.data_received(head)

    def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.guard.release(self.address)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- the transport's calls, passed on once aiohttp has the connection --------------------

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.inner.data_received(data)
            return
        self._head += data
        self._check_head()

    def eof_received(self) -> bool | None:
        if self.inner is not None:
            return self.inner.eof_received()
        return False  # closed before a whole request: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self.inner is not None:
            self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()
