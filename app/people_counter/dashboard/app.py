"""The dashboard: the on-device web page and its JSON, SSE, MJPEG and metrics endpoints.

The command (people-counter-dashboard) is cli.py; serve() here is what it runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from people_counter.dashboard import auth, health, history, line_editor
from people_counter.dashboard.config import DashboardConfig, read_password_hash
from people_counter.dashboard.listen import listen, runner_options
from people_counter.dashboard.live import LiveFeed
from people_counter.dashboard.login_limit import LoginLimiter
from people_counter.dashboard.metrics import metrics_handler
from people_counter.dashboard.mjpeg import JpegSource
from people_counter.dashboard.revocations import RevokedSessions
from people_counter.errors import ConfigError

STATIC_DIR = Path(__file__).with_name("static")
CONFIG_KEY = web.AppKey("config", DashboardConfig)
FEED_KEY = web.AppKey("feed", LiveFeed)
VIDEO_KEY = web.AppKey("video", JpegSource)
STARTED_KEY = web.AppKey("started", float)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(data), status=status, content_type="application/json", headers={"Cache-Control": "no-store"}
    )


def _range(request: web.Request) -> str:
    name = request.query.get("range", "hour")
    if name not in history.RANGES:
        raise web.HTTPBadRequest(text=f"range must be one of {', '.join(history.RANGES)}")
    return name


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-store"})


async def api_state(request: web.Request) -> web.Response:
    return web.Response(
        text=request.app[FEED_KEY].snapshot(), content_type="application/json", headers={"Cache-Control": "no-store"}
    )


async def api_history(request: web.Request) -> web.Response:
    return _json(await history.history(request.app[CONFIG_KEY].database, _range(request)))


async def api_history_csv(request: web.Request) -> web.Response:
    name = _range(request)
    text = await history.history_csv(request.app[CONFIG_KEY].database, name)
    device = request.app[CONFIG_KEY].mqtt.device_id
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="people-{device}-{name}.csv"'},
    )


async def api_alerts(request: web.Request) -> web.Response:
    """Recent alerts: those heard live over MQTT first, then older ones from the database."""
    live = list(request.app[FEED_KEY].alerts)
    stored = await history.recent_alerts(request.app[CONFIG_KEY].database, 20)
    seen = {(a.get("type"), round(float(a.get("ts", 0)), 1)) for a in live}
    merged = live + [a for a in stored if (a.get("type"), round(float(a.get("ts", 0)), 1)) not in seen]
    merged.sort(key=lambda a: float(a.get("ts", 0)), reverse=True)
    return _json(merged[:20])


async def healthz(request: web.Request) -> web.Response:
    """200 only while the counter's state is fresh, its input up and its store writing (health.py)."""
    feed = request.app[FEED_KEY]
    age = feed.state_age_s()
    verdict = health.assess(
        feed.state,
        age,
        feed.stale_after_s,
        feed.input_not_ok_for_s(),
        request.app[CONFIG_KEY].input_down_after_s,
    )
    body = {
        "status": verdict.status,
        "problems": verdict.problems,
        "state_age_s": None if age is None else round(age, 2),
        "stale_after_s": feed.stale_after_s,
        "input": feed.state.get("input"),
        "input_down_s": None if verdict.input_down_s is None else round(verdict.input_down_s, 1),
        "store": feed.state.get("store"),
        "broker_connected": feed.broker_connected,
        "encoder": request.app[VIDEO_KEY].encoder_health()["state"],
    }
    return _json(body, 200 if verdict.ok else 503)


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: also reaches streamed responses (video, SSE) before their headers go."""
    # Everything is served from this device: no CDN, no inline script, no framing.
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    # same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on its own
    # form POSTs, which the Origin check (auth.same_origin_posts) must refuse.
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")


def build_app(cfg: DashboardConfig) -> web.Application:
    # The only body read is the login form's: a few bytes.
    app = web.Application(middlewares=[auth.same_origin_posts, auth.require_login], client_max_size=16 * 1024)
    app.on_response_prepare.append(security_headers)
    secret = auth.load_or_create_secret(cfg.auth.session_secret_file)
    revoked = RevokedSessions(cfg.auth.session_secret_file.with_name("ended-sessions.json"))
    app[auth.SESSIONS_KEY] = auth.Sessions(
        read_password_hash(cfg), secret, cfg.auth.session_max_age_s, secure=cfg.tls is not None, revoked=revoked
    )
    app[auth.LIMITER_KEY] = LoginLimiter()
    app[auth.BODY_TIMEOUT_KEY] = cfg.limits.body_timeout_s
    app[CONFIG_KEY] = cfg
    app[STARTED_KEY] = time.time()
    feed = LiveFeed(cfg.mqtt, cfg.stale_after_s, cfg.limits.max_message_bytes, cfg.limits.write_timeout_s)
    video = JpegSource(cfg.jpeg_socket, cfg.max_viewers, cfg.limits.write_timeout_s)
    feed.extra_health = lambda: {
        "encoder": video.encoder_health(),
        "dashboard_uptime_s": round(time.time() - app[STARTED_KEY]),
    }
    app[FEED_KEY] = feed
    app[VIDEO_KEY] = video

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        feed.start()
        video.start()
        beat = asyncio.create_task(feed.heartbeat())
        yield
        beat.cancel()
        feed.stop()
        await video.stop()

    app.cleanup_ctx.append(lifecycle)
    get_login, post_login, post_logout = auth.make_login_handlers(STATIC_DIR)
    app.router.add_get("/", index)
    app.router.add_get("/login", get_login)
    app.router.add_post("/login", post_login)
    app.router.add_post("/logout", post_logout)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(cfg.metrics, feed, video))
    app.router.add_get("/events", feed.sse)
    app.router.add_get("/video.mjpg", video.serve)
    app.router.add_get("/snapshot.jpg", video.snapshot)
    app.router.add_get("/api/state", api_state)
    app.router.add_get("/api/history", api_history)
    app.router.add_get("/api/history.csv", api_history_csv)
    app.router.add_get("/api/alerts", api_alerts)
    line_editor.add_routes(app, cfg.line_editor)
    app.router.add_static("/static", STATIC_DIR)
    return app


def _ssl_context(cfg: DashboardConfig) -> ssl.SSLContext | None:
    if cfg.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cfg.tls.cert_file, cfg.tls.key_file)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(f"tls: cannot load the certificate or key: {error}") from None
    return context


async def serve(cfg: DashboardConfig) -> None:
    app = build_app(cfg)
    context = _ssl_context(cfg)
    runner = web.AppRunner(app, **runner_options(cfg))
    await runner.setup()
    listening = await listen(runner, cfg, context)
    _notify("READY=1")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    _notify("STOPPING=1")
    await listening.close()
    await runner.cleanup()


def _notify(message: str) -> None:
    if os.environ.get("NOTIFY_SOCKET"):
        import sdnotify

        sdnotify.SystemdNotifier().notify(message)
