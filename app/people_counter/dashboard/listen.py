"""The dashboard's listening sockets: HTTPS (or HTTP) behind the connection guard, and an
optional plain-HTTP port that only redirects to HTTPS (listen.redirect_http_port).

Both go through guard.py, so neither can be held open by half-sent requests.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any

from aiohttp import web, web_response
from yarl import URL

from people_counter.dashboard.config import DashboardConfig
from people_counter.dashboard.guard import ConnectionGuard, GuardLimits
from people_counter.dashboard.quietlog import OneLineFilter

log = logging.getLogger("people_counter.dashboard")

# aiohttp's server log gets a traceback per bad request (a malformed line, a header too long):
# here it is one line each, a few a minute at most. Passed to aiohttp as its logger.
HTTP_LOG = logging.getLogger("people_counter.dashboard.http")
HTTP_LOG.addFilter(OneLineFilter())
_BACKLOG = 128  # connections accepted per wake-up of the loop: also the most open at once before the guard sees them

# No version banner. aiohttp's Server header names itself and Python's version, also on the
# answers it makes without the app (a malformed request's 400), which no response hook reaches.
web_response.SERVER_SOFTWARE = "people-counter"


def guard_limits(cfg: DashboardConfig) -> GuardLimits:
    return GuardLimits(
        head_timeout_s=cfg.limits.request_head_timeout_s,
        max_connections=cfg.limits.max_connections,
        max_per_address=cfg.limits.max_connections_per_address,
    )


def runner_options(cfg: DashboardConfig) -> dict[str, Any]:
    """AppRunner's keyword arguments, for the app and the redirect alike."""
    return {
        "access_log": None,
        "handle_signals": False,
        "shutdown_timeout": 2.0,
        # A viewer or SSE client that disconnects ends its handler at once.
        "handler_cancellation": True,
        "keepalive_timeout": cfg.limits.idle_timeout_s,
        "logger": HTTP_LOG,
    }


def redirect_app(https_port: int) -> web.Application:
    """Any request, to the same path on the HTTPS port (308 keeps a POST a POST)."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        target = URL.build(scheme="https", host=request.url.host or "localhost", port=https_port)
        raise web.HTTPPermanentRedirect(str(target.join(URL(request.rel_url.path_qs))))

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", redirect)
    return app


class Listening:
    """The dashboard's listening sockets, started by listen() and closed by close()."""

    def __init__(self) -> None:
        self.servers: list[asyncio.Server] = []
        self.runners: list[web.AppRunner] = []

    async def add(self, host: str, port: int, guard: ConnectionGuard) -> None:
        server = await asyncio.get_running_loop().create_server(guard, host, port, backlog=_BACKLOG, reuse_address=True)
        self.servers.append(server)

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        for runner in self.runners:
            await runner.cleanup()


async def listen(runner: web.AppRunner, cfg: DashboardConfig, ssl_context: ssl.SSLContext | None) -> Listening:
    """Serve runner's app (set up) on listen.port, and the redirect on listen.redirect_http_port if set."""
    limits = guard_limits(cfg)
    listening = Listening()
    assert runner.server is not None, "runner.setup() first"
    await listening.add(cfg.listen.host, cfg.listen.port, ConnectionGuard(runner.server, limits, ssl_context))
    log.info("dashboard on %s://%s:%d", "https" if ssl_context else "http", cfg.listen.host, cfg.listen.port)
    if cfg.listen.redirect_http_port is not None:
        redirect = web.AppRunner(redirect_app(cfg.listen.port), **runner_options(cfg))
        await redirect.setup()
        listening.runners.append(redirect)
        assert redirect.server is not None
        port = cfg.listen.redirect_http_port
        await listening.add(cfg.listen.host, port, ConnectionGuard(redirect.server, limits))
        log.info("plain HTTP on port %d redirects to HTTPS", port)
    return listening
