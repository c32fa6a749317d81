"""The counting line editor's endpoints: the line shown on the live image, and a new one saved.

GET /api/line is the line the counter counts by (the saved override, else the counter config's
counting.line), with the session's CSRF token. POST /api/line takes {"line": [[x1, y1], [x2, y2]]}
in fractions of the frame, checked by the counter's own rules (counting/line_override.py), and
writes it atomically to `line_editor.override_file`, which the counter follows within a second.
A POST must carry the token in X-CSRF-Token: a page of another site can make the browser send the
cookie, but can neither read the token nor set the header; auth.same_origin_posts also refuses a
POST whose Origin is another site.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging

from aiohttp import web

from people_counter.config import CountingConfig, load_config
from people_counter.counting.line_override import Line, parse_line_override, read_line_override, write_line_override
from people_counter.dashboard import auth
from people_counter.dashboard.config import LineEditorConfig
from people_counter.errors import ConfigError

log = logging.getLogger("people_counter.dashboard.line_editor")

EDITOR_KEY = web.AppKey("line_editor", LineEditorConfig)
CSRF_HEADER = "X-CSRF-Token"


def csrf_token(request: web.Request) -> str:
    """The session's token: derived from its cookie, which a cross-site page cannot read."""
    session = request.cookies.get(auth.COOKIE, "")
    return hmac.new(session.encode(), b"people-counter line editor", hashlib.sha256).hexdigest()


def _json(data: object, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})


def current_line(editor: LineEditorConfig) -> dict[str, object]:
    """The line the counter counts by, where it comes from, and what may keep a saved one from applying."""
    warnings: list[str] = []
    try:
        counting = load_config(editor.counter_config).counting
        if counting.override_file != editor.override_file:
            warnings.append(f"the counter's counting.override_file is not {editor.override_file}: it ignores this line")
    except ConfigError as error:
        counting = CountingConfig()
        warnings.append(str(error))
    line: Line = counting.line
    source = "config"
    if editor.override_file.exists():
        try:
            line, source = read_line_override(editor.override_file), "dashboard"
        except ConfigError as error:
            warnings.append(f"the saved line is refused: {error}")
    return {"line": line, "source": source, "warnings": warnings}


async def get_line(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(current_line, request.app[EDITOR_KEY])
    return _json({**body, "csrf_token": csrf_token(request)})


async def post_line(request: web.Request) -> web.Response:
    if not hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), csrf_token(request).encode()):
        return _json({"error": f"refused: no valid {CSRF_HEADER} (reload the page)"}, 403)
    try:
        line = parse_line_override(await request.json(), "counting line")
    except ValueError:
        return _json({"error": 'the body must be JSON: {"line": [[x1, y1], [x2, y2]]}'}, 400)
    except ConfigError as error:
        return _json({"error": str(error)}, 400)
    path = request.app[EDITOR_KEY].override_file
    try:
        await asyncio.to_thread(write_line_override, path, line)
    except OSError as error:
        log.error("cannot save the counting line to %s: %s", path, error.strerror or error)
        return _json({"error": f"cannot save the line: {error.strerror or error}"}, 500)
    log.info("counting line saved from %s: %s -> %s", request.remote, *line)
    return _json({"line": line, "source": "dashboard"})


def add_routes(app: web.Application, editor: LineEditorConfig | None) -> None:
    """The editor's endpoints, when the config has a line_editor section (404 without: the page hides it)."""
    if editor is None:
        return
    app[EDITOR_KEY] = editor
    app.router.add_get("/api/line", get_line)
    app.router.add_post("/api/line", post_line)
