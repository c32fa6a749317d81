"""The counting line placed on the dashboard: the override file's rules, the editor's endpoints
(validation, CSRF refusal, atomic write) and the counter following the file (counts kept, a bad
file refused with the line kept)."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from counter_process import make_state_dir, write_config

from people_counter.config import CountingConfig, load_config
from people_counter.counting import line_override
from people_counter.counting.line_override import LineOverride, parse_line_override, read_line_override
from people_counter.counting_loop import CountingLoop, RunOptions
from people_counter.dashboard import line_editor
from people_counter.dashboard.config import LineEditorConfig
from people_counter.errors import ConfigError
from people_counter.stage_data import PersonTrack, TrackerOutput
from testsupport.live_stack import DashboardProcess

VERTICAL = ((0.5, 0.0), (0.5, 1.0))
COOKIE = {"pc_session": "a-session-cookie"}


# --- the file's rules: those of counting.line ---------------------------------------------------


def test_the_override_takes_what_counting_line_takes() -> None:
    assert parse_line_override({"line": [[0.5, 0], [0.5, 1]]}, "f") == VERTICAL
    assert CountingConfig(line=VERTICAL).line == VERTICAL


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"line": [[1.5, 0], [0.5, 1]]}, "f: line.0.0: Input should be less than or equal to 1"),
        ({"line": [[0.5, 0.5], [0.5, 0.5]]}, "the two points must differ"),
        ({"line": [[0.5, 0.5]]}, "f: line.1: Field required"),
        ({"line": VERTICAL, "occupancy_max": 3}, "f: must hold one key, line"),
        ([[0.5, 0], [0.5, 1]], "f: must hold one key, line"),
    ],
)
def test_a_bad_override_is_refused_naming_the_problem(document: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        parse_line_override(document, "f")


# --- the endpoints -------------------------------------------------------------------------------


@pytest.fixture
def editor(tmp_path: Path) -> LineEditorConfig:
    counter_config = write_config(
        tmp_path / "config.yml",
        {"counting": {"line": [[0.0, 0.25], [1.0, 0.25]], "override_file": str(tmp_path / "line" / "line.yml")}},
    )
    (tmp_path / "line").mkdir()
    return LineEditorConfig(override_file=tmp_path / "line" / "line.yml", counter_config=counter_config)


Call = Callable[..., Awaitable[tuple[int, Any]]]


def with_client(editor: LineEditorConfig | None, body: Callable[[Call], Awaitable[None]]) -> None:
    """Runs `body` with a call(method, path, json=None, headers=None) -> (status, JSON) on the routes."""

    async def main() -> None:
        app = web.Application()
        line_editor.add_routes(app, editor)
        async with TestClient(TestServer(app), cookies=COOKIE) as client:

            async def call(method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
                response = await client.request(method, path, **kwargs)
                is_json = response.content_type == "application/json"
                return response.status, await response.json() if is_json else await response.text()

            await body(call)

    asyncio.run(main())


def token() -> dict[str, str]:
    request = type("R", (), {"cookies": COOKIE})()
    return {"X-CSRF-Token": line_editor.csrf_token(request)}  # type: ignore[arg-type]


def test_get_shows_the_counter_configs_line_until_one_is_saved(editor: LineEditorConfig) -> None:
    async def body(call: Call) -> None:
        status, answer = await call("GET", "/api/line")
        assert status == 200
        assert answer == {
            "line": [[0.0, 0.25], [1.0, 0.25]],
            "source": "config",
            "warnings": [],
            "csrf_token": token()["X-CSRF-Token"],
        }
        status, answer = await call("POST", "/api/line", json={"line": VERTICAL}, headers=token())
        assert (status, answer) == (200, {"line": [[0.5, 0.0], [0.5, 1.0]], "source": "dashboard"})
        status, answer = await call("GET", "/api/line")
        assert (answer["line"], answer["source"]) == ([[0.5, 0.0], [0.5, 1.0]], "dashboard")

    with_client(editor, body)
    assert read_line_override(editor.override_file) == VERTICAL
    assert editor.override_file.stat().st_mode & 0o777 == 0o640


def test_get_warns_when_the_counter_does_not_read_the_file(editor: LineEditorConfig, tmp_path: Path) -> None:
    write_config(editor.counter_config, {"counting": {"line": [[0.0, 0.25], [1.0, 0.25]]}})

    async def body(call: Call) -> None:
        _, answer = await call("GET", "/api/line")
        assert answer["warnings"] == [
            f"the counter's counting.override_file is not {editor.override_file}: it ignores this line"
        ]

    with_client(editor, body)


@pytest.mark.parametrize(
    ("headers", "document"),
    [
        ({}, {"line": VERTICAL}),  # no token
        ({"X-CSRF-Token": "0" * 64}, {"line": VERTICAL}),  # another session's, or a guess
        ({"X-CSRF-Token": "é"}, {"line": VERTICAL}),
    ],
)
def test_a_post_without_the_sessions_token_is_refused(
    editor: LineEditorConfig, headers: dict[str, str], document: object
) -> None:
    async def body(call: Call) -> None:
        status, answer = await call("POST", "/api/line", json=document, headers=headers)
        assert status == 403
        assert "X-CSRF-Token" in answer["error"]

    with_client(editor, body)
    assert not editor.override_file.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ('{"line": [[0.5, -0.1], [0.5, 1]]}', "counting line: line.0.1: Input should be greater than or equal to 0"),
        ('{"line": [[0.5, 0.5], [0.5, 0.5]]}', "the two points must differ"),
        ('{"line": "top"}', "counting line: line: "),
        ('{"line": [[0.5, 0], [0.5, 1]], "occupancy_max": 1}', "counting line: must hold one key, line"),
        ("line: [[0.5, 0], [0.5, 1]]", "the body must be JSON"),
    ],
)
def test_a_bad_line_gets_400_naming_the_problem_and_nothing_is_written(
    editor: LineEditorConfig, data: str, message: str
) -> None:
    async def body(call: Call) -> None:
        status, answer = await call(
            "POST", "/api/line", data=data, headers={**token(), "Content-Type": "application/json"}
        )
        assert status == 400
        assert message in answer["error"]

    with_client(editor, body)
    assert not editor.override_file.exists()


def test_the_save_replaces_the_file_in_one_rename(editor: LineEditorConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter sees the old file or the new one: a new inode each save, and a failed save leaves
    the old file whole and no temporary file behind."""
    line_override.write_line_override(editor.override_file, ((0.1, 0.1), (0.9, 0.1)))
    before = editor.override_file.stat().st_ino
    old_text = editor.override_file.read_text()

    async def save(call: Call) -> None:
        status, _ = await call("POST", "/api/line", json={"line": VERTICAL}, headers=token())
        assert status == 200

    with_client(editor, save)
    assert editor.override_file.stat().st_ino != before
    assert read_line_override(editor.override_file) == VERTICAL

    line_override.write_line_override(editor.override_file, ((0.1, 0.1), (0.9, 0.1)))

    def no_rename(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(line_override.os, "replace", no_rename)

    async def failed_save(call: Call) -> None:
        status, answer = await call("POST", "/api/line", json={"line": VERTICAL}, headers=token())
        assert (status, answer) == (500, {"error": "cannot save the line: No space left on device"})

    with_client(editor, failed_save)
    assert editor.override_file.read_text() == old_text
    assert os.listdir(editor.override_file.parent) == [editor.override_file.name]


def test_no_line_editor_section_no_endpoints() -> None:
    async def body(call: Call) -> None:
        status, _ = await call("GET", "/api/line")
        assert status == 404
        status, _ = await call("POST", "/api/line", json={"line": VERTICAL}, headers=token())
        assert status in (404, 405)

    with_client(None, body)


# --- the counter following the file --------------------------------------------------------------


def test_the_watcher_follows_the_file_and_keeps_the_line_on_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "line.yml"
    watcher = LineOverride(path)
    yaml_counting = CountingConfig()
    assert not watcher.poll()
    assert watcher.applied_to(yaml_counting) is yaml_counting

    line_override.write_line_override(path, VERTICAL)
    assert watcher.poll()
    assert watcher.applied_to(yaml_counting).line == VERTICAL
    assert not watcher.poll()  # unchanged: not re-read

    caplog.set_level(logging.INFO, "people_counter.line_override")
    caplog.clear()
    path.write_text("line: [[0.5, 0], [2, 1]]\n")
    assert not watcher.poll()
    assert not watcher.poll()  # the same bad file: no second warning
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        f"counting line override refused, the line stays as it was: {path}: line.1.0: "
        "Input should be less than or equal to 1"
    ]
    assert watcher.applied_to(yaml_counting).line == VERTICAL

    path.unlink()
    assert watcher.poll()
    assert watcher.applied_to(yaml_counting) is yaml_counting


HEIGHT = 150.0


def person(track_id: int, cx: float, feet_y: float) -> PersonTrack:
    """A detected person (60 x 150 px) with their feet at (cx, feet_y)."""
    return PersonTrack(track_id, (cx - 30.0, feet_y - HEIGHT, cx + 30.0, feet_y), first_seen_ts=100.0)


@pytest.fixture
def loop_files(tmp_path: Path, default_model_xml: Path, sample_video: Path) -> Iterator[tuple[CountingLoop, Path]]:
    """A counting loop over the sample video (768 x 576) whose config names an override file; never run."""
    override = tmp_path / "line.yml"
    config_file = write_config(
        tmp_path / "config.yml",
        {
            "device_id": "line-test",
            "state_dir": str(make_state_dir(tmp_path, default_model_xml)),
            "input": {"source": str(sample_video)},
            "stream": {"enabled": False},
            "counting": {"override_file": str(override)},
        },
    )
    line_override.write_line_override(override, ((0.0, 0.25), (1.0, 0.25)))  # y 144 px
    loop = CountingLoop(
        load_config(config_file), RunOptions(config_path=config_file, realtime=False, mqtt_enabled=False)
    )
    try:
        yield loop, override
    finally:
        loop.store.close()


@pytest.mark.model
def test_the_counter_applies_a_saved_line_and_keeps_its_counts(loop_files: tuple[CountingLoop, Path]) -> None:
    loop, override = loop_files
    # At start the file wins over the YAML's line (y 288).
    assert loop.counter.line_px == ((0.0, 144.0), (768.0, 144.0))
    a, b = person(1, 200.0, 100.0), person(2, 600.0, 400.0)
    loop._count(TrackerOutput(ts=100.0, visible=(a, b), confirmed=(a, b)))
    loop._count(TrackerOutput(ts=100.1, visible=(person(1, 200.0, 200.0), b)))  # 1 walks down across y 144
    assert (loop.counter.totals.total, loop.counter.totals.in_count) == (2, 1)

    line_override.write_line_override(override, VERTICAL)  # x 384 px, "in" is right to left
    loop._check_line_override()

    assert loop.counter.line_px == ((384.0, 0.0), (384.0, 576.0))
    # Counts and people in view kept; 2 walks left across the new line, 1 walks on down (no line there now).
    assert loop.counter.count == 2
    loop._count(TrackerOutput(ts=100.2, visible=(person(1, 200.0, 300.0), person(2, 500.0, 400.0))))
    loop._count(TrackerOutput(ts=100.3, visible=(person(1, 200.0, 350.0), person(2, 250.0, 400.0))))
    totals = loop.counter.totals
    assert (totals.total, totals.in_count, totals.out_count) == (2, 2, 0)


@pytest.mark.model
def test_a_bad_file_leaves_the_counter_on_its_line(
    loop_files: tuple[CountingLoop, Path], caplog: pytest.LogCaptureFixture
) -> None:
    loop, override = loop_files
    caplog.set_level(logging.WARNING, "people_counter.line_override")
    override.write_text(yaml.safe_dump({"line": [[0.5, 0.5], [0.5, 0.5]]}))

    loop._check_line_override()
    loop._check_line_override()

    assert loop.counter.line_px == ((0.0, 144.0), (768.0, 144.0))
    assert len(caplog.records) == 1
    assert "the two points must differ" in caplog.records[0].getMessage()

    # A reload that changes the counting section keeps the line in force too.
    config_file = loop.options.config_path
    assert config_file is not None
    settings = yaml.safe_load(config_file.read_text())
    settings["counting"]["occupancy_max"] = 3
    write_config(config_file, settings)
    loop._reload()
    assert loop.config.counting.occupancy_max == 3
    assert loop.counter.line_px == ((0.0, 144.0), (768.0, 144.0))


# --- the whole dashboard: the login and the Origin check in front of the endpoints ---------------


def request(url: str, method: str, path: str, body: str = "", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    host = url.split("/", 3)[2]
    conn = http.client.HTTPConnection(host, timeout=10)
    try:
        conn.request(method, path, body or None, headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, json.loads(data) if data.startswith(b"{") else data
    finally:
        conn.close()


def test_the_dashboard_wants_the_login_and_this_sites_origin(editor: LineEditorConfig, tmp_path: Path) -> None:
    extra = {"line_editor": {"override_file": str(editor.override_file), "counter_config": str(editor.counter_config)}}
    with DashboardProcess(tmp_path, None, tmp_path / "mjpeg.sock", extra=extra) as dashboard:
        body = json.dumps({"line": VERTICAL})
        assert request(dashboard.url, "GET", "/api/line")[0] == 401
        assert request(dashboard.url, "POST", "/api/line", body, {"Content-Type": "application/json"})[0] == 401

        _, cookie = dashboard.login()
        status, answer = request(dashboard.url, "GET", "/api/line", headers={"Cookie": cookie})
        assert status == 200
        headers = {"Cookie": cookie, "Content-Type": "application/json", "X-CSRF-Token": answer["csrf_token"]}
        status, _ = request(dashboard.url, "POST", "/api/line", body, {**headers, "Origin": "http://evil.example"})
        assert status == 403
        assert not editor.override_file.exists()

        status, _ = request(dashboard.url, "POST", "/api/line", body, {**headers, "Origin": dashboard.url})
        assert status == 200
        assert read_line_override(editor.override_file) == VERTICAL
