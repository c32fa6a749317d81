"""The login: a scrypt password hash from the config and a signed, expiring session cookie.

The password hash is passwords.py's. The session cookie is `<expiry>.<hmac>`; its HMAC key
mixes the session secret with the password hash, so changing the password logs
everybody out. The cookie is HttpOnly, SameSite=Strict, and Secure when HTTPS is on.
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

from people_counter.dashboard.passwords import verify_password

COOKIE = "pc_session"
_FAILED_LOGIN_DELAY_S = 0.5  # slows password guessing without a lockout to manage

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
    def __init__(self, password_hash: str, secret: bytes, max_age_s: int, secure: bool) -> None:
        self.password_hash = password_hash.strip()
        self._key = hmac.new(secret, self.password_hash.encode(), hashlib.sha256).digest()
        self.max_age_s = max_age_s
        self.secure = secure

    def _sign(self, expiry: int) -> str:
        return hmac.new(self._key, str(expiry).encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        expiry = int(time.time()) + self.max_age_s
        return f"{expiry}.{self._sign(expiry)}"

    def valid(self, token: str | None) -> bool:
        if not token or "." not in token:
            return False
        expiry_text, signature = token.split(".", 1)
        if not expiry_text.isdigit() or int(expiry_text) < time.time():
            return False
        return hmac.compare_digest(signature, self._sign(int(expiry_text)))

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


SESSIONS_KEY = web.AppKey("sessions", Sessions)


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
        form = await request.post()
        password = str(form.get("password", ""))
        # scrypt takes ~50 ms of CPU: keep it off the event loop that feeds the video.
        ok = await asyncio.to_thread(verify_password, password, sessions.password_hash)
        if not ok:
            await asyncio.sleep(_FAILED_LOGIN_DELAY_S)
            return web.Response(status=401, text=login_page(static_dir, "Wrong password."), content_type="text/html")
        response = web.HTTPSeeOther("/")
        sessions.set_cookie(response)
        raise response

    async def post_logout(request: web.Request) -> web.Response:
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    return get_login, post_login, post_logout
