"""The login: a scrypt password hash from the config and a signed, expiring session cookie.

The password hash is passwords.py's. The session cookie is `<id>.<expiry>.<hmac>`; its HMAC
key mixes the session secret with the password hash, so changing the password logs
everybody out. A logout ends its session on the server (revocations.py), so the old cookie
is refused at once, after a restart too. The cookie is HttpOnly, SameSite=Strict, and
Secure when HTTPS is on. Guessing is slowed per address (login_limit.py), and a POST
from another site's page (its Origin) is refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler

from people_counter.dashboard.login_limit import LoginLimiter
from people_counter.dashboard.passwords import verify_password
from people_counter.dashboard.revocations import RevokedSessions

COOKIE = "pc_session"

# Reachable without a session: health probes, metrics scrapers, and the login page itself.
PUBLIC_PATHS = frozenset({"/healthz", "/metrics", "/login", "/static/login.css", "/static/favicon.svg"})


def load_or_create_secret(path: Path) -> bytes:
    """The session secret; created (0600) on first start so that sessions survive restarts."""
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    data = secrets.token_bytes(32)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
    return data


class Sessions:
    def __init__(
        self, password_hash: str, secret: bytes, max_age_s: int, secure: bool, revoked: RevokedSessions
    ) -> None:
        self.password_hash = password_hash.strip()
        self._key = hmac.new(secret, self.password_hash.encode(), hashlib.sha256).digest()
        self.max_age_s = max_age_s
        self.secure = secure
        self.revoked = revoked

    def _sign(self, session_id: str, expiry: int) -> str:
        return hmac.new(self._key, f"{session_id}.{expiry}".encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        session_id = secrets.token_urlsafe(12)  # no "." in it
        expiry = int(time.time()) + self.max_age_s
        return f"{session_id}.{expiry}.{self._sign(session_id, expiry)}"

    def _parse(self, token: str | None) -> tuple[str, int] | None:
        """(session id, expiry) of a token this device signed and that has not expired."""
        parts = (token or "").split(".")
        if len(parts) != 3 or not parts[1].isdigit() or int(parts[1]) < time.time():
            return None
        session_id, expiry = parts[0], int(parts[1])
        if not hmac.compare_digest(parts[2], self._sign(session_id, expiry)):
            return None
        return session_id, expiry

    def valid(self, token: str | None) -> bool:
        parsed = self._parse(token)
        return parsed is not None and parsed[0] not in self.revoked

    def end(self, token: str | None) -> None:
        parsed = self._parse(token)
        if parsed is not None:
            self.revoked.add(*parsed)

    def set_cookie(self, response: web.StreamResponse) -> None:
        response.set_cookie(
            COOKIE,
            self.issue(),
            max_age=self.max_age_s,
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure,
        )

    def clear_cookie(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict", secure=self.secure)


SESSIONS_KEY = web.AppKey("sessions", Sessions)
LIMITER_KEY = web.AppKey("login_limiter", LoginLimiter)
BODY_TIMEOUT_KEY = web.AppKey("body_timeout_s", float)


@web.middleware
async def same_origin_posts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A state-changing request sent by another site's page (its Origin says so) gets 403.

    Browsers send Origin with every POST; a client without one (curl, a script) is no
    cross-site forgery, so it may go on.
    """
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            raise web.HTTPForbidden(text='{"error": "cross-origin request refused"}', content_type="application/json")
    response: web.StreamResponse = await handler(request)
    return response


@web.middleware
async def require_login(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC_PATHS or request.app[SESSIONS_KEY].valid(request.cookies.get(COOKIE)):
        response: web.StreamResponse = await handler(request)
        return response
    # A person is sent to the login page; a script or the video gets a plain 401.
    if request.method == "GET" and request.path == "/":
        raise web.HTTPSeeOther("/login")
    raise web.HTTPUnauthorized(text='{"error": "login required"}', content_type="application/json")


def login_page(static_dir: Path, error: str = "") -> str:
    html = (static_dir / "login.html").read_text(encoding="utf-8")
    note = f'<p class="error" role="alert">{error}</p>' if error else ""
    return html.replace("<!--error-->", note)


def make_login_handlers(static_dir: Path) -> tuple[Handler, Handler, Handler]:
    async def get_login(request: web.Request) -> web.Response:
        if request.app[SESSIONS_KEY].valid(request.cookies.get(COOKIE)):
            raise web.HTTPSeeOther("/")
        return web.Response(text=login_page(static_dir), content_type="text/html")

    async def post_login(request: web.Request) -> web.Response:
        sessions = request.app[SESSIONS_KEY]
        address = request.remote or "?"
        wait_s = request.app[LIMITER_KEY].attempt(address)
        if wait_s:
            # Refused before the form is read or the password hashed: guessing costs nothing here.
            return web.Response(
                status=429,
                text=login_page(static_dir, f"Too many wrong passwords: wait {wait_s} s."),
                content_type="text/html",
                headers={"Retry-After": str(wait_s)},
            )
        try:
            async with asyncio.timeout(request.app[BODY_TIMEOUT_KEY]):
                form = await request.post()
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="the form did not arrive in time") from None
        password = str(form.get("password", ""))
        # scrypt takes ~50 ms of CPU: keep it off the event loop that feeds the video.
        ok = await asyncio.to_thread(verify_password, password, sessions.password_hash)
        if not ok:
            return web.Response(status=401, text=login_page(static_dir, "Wrong password."), content_type="text/html")
        request.app[LIMITER_KEY].succeeded(address)
        response = web.HTTPSeeOther("/")
        sessions.set_cookie(response)
        raise response

    async def post_logout(request: web.Request) -> web.Response:
        sessions = request.app[SESSIONS_KEY]
        sessions.end(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        sessions.clear_cookie(response)
        raise response

    return get_login, post_login, post_logout
