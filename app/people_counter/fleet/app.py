"""The fleet page's web server: the page, its SSE, the history JSON and CSV, /healthz.

The login, the security headers, TLS and the guarded listening sockets are the dashboard's
(dashboard/auth.py, app.py, listen.py); the look is its stylesheet, dashboard/static/app.css.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from people_counter.dashboard import auth, history
from people_counter.dashboard.app import STATIC_DIR as DASHBOARD_STATIC
from people_counter.dashboard.app import _notify, _ssl_context, security_headers
from people_counter.dashboard.config import read_password_hash
from people_counter.dashboard.listen import listen, runner_options
from people_counter.dashboard.login_limit import LoginLimiter
from people_counter.dashboard.revocations import RevokedSessions
from people_counter.fleet.config import FleetConfig
from people_counter.fleet.history_store import HistoryStore
from people_counter.fleet.inbox import Inbox
from people_counter.fleet.pump import Pump
from people_counter.fleet.registry import FleetRegistry
from people_counter.fleet.stream import FleetStream

STATIC_DIR = Path(__file__).with_name("static")
_DEVICE = re.compile(r"^[^/#+\s]{1,200}$")
_FILENAME = re.compile(r"[^A-Za-z0-9._-]")


class Fleet:
    """The page's parts, wired: the inbox feeds the registry and the history through the pump."""

    def __init__(self, cfg: FleetConfig) -> None:
        self.cfg = cfg
        self.inbox = Inbox(cfg.mqtt, cfg.limits.max_message_bytes)
        self.registry = FleetRegistry(cfg.stale_after_s, cfg.max_devices)
        self.history = HistoryStore(cfg.database, cfg.retention_days)
        self.stream = FleetStream(self.registry, self.broker, cfg.limits.write_timeout_s)
        self.pump = Pump(self.inbox, self.registry, self.history, self.stream)

    def broker(self) -> dict[str, object]:
        return {"connected": self.inbox.connected, "error": self.inbox.error}


FLEET_KEY = web.AppKey("fleet", Fleet)


def _range(request: web.Request) -> str:
    name = request.query.get("range", "hour")
    if name not in history.RANGES:
        raise web.HTTPBadRequest(text=f"range must be one of {', '.join(history.RANGES)}")
    return name


def _device(request: web.Request) -> str | None:
    """The `device` query: a known device id, or `all` (None: the whole fleet)."""
    fleet = request.app[FLEET_KEY]
    device = request.query.get("device", "all")
    if device == "all":
        return None
    if not _DEVICE.match(device):
        raise web.HTTPBadRequest(text="device must be a device id or all")
    if device not in fleet.registry.devices and not fleet.history.has_device(device):
        raise web.HTTPNotFound(text=f"no device {device!r}")
    return device


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "fleet.html", headers={"Cache-Control": "no-store"})


async def api_devices(request: web.Request) -> web.Response:
    return web.json_response(request.app[FLEET_KEY].stream.snapshot(), headers={"Cache-Control": "no-store"})


async def api_history(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    name, device = _range(request), _device(request)
    span_s, bucket_s = history.RANGES[name]
    end = int(time.time() // bucket_s + 1) * bucket_s
    start = end - span_s
    buckets = await asyncio.to_thread(fleet.history.buckets, device, start, end, bucket_s)
    body = {
        "range": name,
        "device": device or "all",
        "bucket_s": bucket_s,
        "points": history.filled(buckets, start, span_s, bucket_s),
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def api_history_csv(request: web.Request) -> web.Response:
    fleet = request.app[FLEET_KEY]
    name, device = _range(request), _device(request)
    span_s, _ = history.RANGES[name]
    now = time.time()
    text = await asyncio.to_thread(fleet.history.csv_text, device, now - span_s, now + 60)
    filename = f"people-{_FILENAME.sub('_', device or 'fleet')}-{name}.csv"
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def healthz(request: web.Request) -> web.Response:
    """200 while the page is subscribed to the central broker."""
    fleet = request.app[FLEET_KEY]
    totals = fleet.registry.totals()
    body = {
        "status": "ok" if fleet.inbox.connected else "broker unreachable",
        "broker": fleet.broker(),
        "devices": totals["devices"],
        "online": totals["online"],
        "received_messages": fleet.inbox.received,
        "ignored_messages": fleet.inbox.ignored,
        "dropped_messages": fleet.inbox.dropped,
        "refused_devices": fleet.registry.refused_devices,
    }
    return web.json_response(body, status=200 if fleet.inbox.connected else 503, headers={"Cache-Control": "no-store"})


def build_app(cfg: FleetConfig) -> web.Application:
    app = web.Application(middlewares=[auth.same_origin_posts, auth.require_login], client_max_size=16 * 1024)
    app.on_response_prepare.append(security_headers)
    secret = auth.load_or_create_secret(cfg.auth.session_secret_file)
    revoked = RevokedSessions(cfg.auth.session_secret_file.with_name("ended-sessions.json"))
    app[auth.SESSIONS_KEY] = auth.Sessions(
        read_password_hash(cfg),  # type: ignore[arg-type]  # reads cfg.auth alone
        secret,
        cfg.auth.session_max_age_s,
        secure=cfg.tls is not None,
        revoked=revoked,
    )
    app[auth.LIMITER_KEY] = LoginLimiter()
    app[auth.BODY_TIMEOUT_KEY] = cfg.limits.body_timeout_s
    fleet = app[FLEET_KEY] = Fleet(cfg)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        fleet.inbox.start()
        tasks = [
            asyncio.create_task(fleet.pump.run(cfg.push_interval_s)),
            asyncio.create_task(fleet.pump.flush_every(cfg.flush_interval_s)),
        ]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        fleet.inbox.stop()
        fleet.pump.step()
        await fleet.pump.flush()
        fleet.history.close()

    app.cleanup_ctx.append(lifecycle)
    get_login, post_login, post_logout = auth.make_login_handlers(DASHBOARD_STATIC)
    app.router.add_get("/", index)
    app.router.add_get("/login", get_login)
    app.router.add_post("/login", post_login)
    app.router.add_post("/logout", post_logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/events", fleet.stream.handler)
    app.router.add_get("/api/devices", api_devices)
    app.router.add_get("/api/history", api_history)
    app.router.add_get("/api/history.csv", api_history_csv)
    app.router.add_static("/static", DASHBOARD_STATIC)
    app.router.add_static("/fleet-static", STATIC_DIR)
    return app


async def serve(cfg: FleetConfig) -> None:
    app = build_app(cfg)
    context = _ssl_context(cfg)  # type: ignore[arg-type]  # reads cfg.tls alone
    runner = web.AppRunner(app, **runner_options(cfg))  # type: ignore[arg-type]  # cfg.limits alone
    await runner.setup()
    listening = await listen(runner, cfg, context)  # type: ignore[arg-type]  # cfg.listen and cfg.limits
    _notify("READY=1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _notify("STOPPING=1")
    await listening.close()
    await runner.cleanup()
