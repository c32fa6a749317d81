"""A camera's user and password come from their own file, go into the URL only to open it (any
character, percent-encoded), and never show in a label, a log line or a repr."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from people_counter.errors import ConfigError, InputError
from people_counter.vision.camera_credentials import (
    CameraCredentials,
    read_credentials,
    redacted,
    with_credentials,
)
from people_counter.vision.source import FrameReader, parse_input

HARD_PASSWORD = "p@ss:w/rd %41#?x"


def test_the_file_s_first_line_is_user_colon_password(tmp_path: Path) -> None:
    path = tmp_path / "camera"
    path.write_text(f"admin:{HARD_PASSWORD}\nignored\n", encoding="utf-8")
    assert read_credentials(path) == CameraCredentials("admin", HARD_PASSWORD)
    assert HARD_PASSWORD not in repr(read_credentials(path))


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("no-colon\n", "user:password"), (":nouser\n", "user:password"), ("", "user:password")],
)
def test_a_bad_credentials_file_is_one_line_naming_the_key(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "camera"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"input\.credentials_file: .*{message}"):
        read_credentials(path)


def test_any_character_is_percent_encoded_into_the_url() -> None:
    url = with_credentials("rtsp://192.0.2.5:554/stream1?ch=1", CameraCredentials("ad min", HARD_PASSWORD))
    assert url == "rtsp://ad%20min:p%40ss%3Aw%2Frd%20%2541%23%3Fx@192.0.2.5:554/stream1?ch=1"


def test_a_url_with_its_own_user_info_is_refused_with_a_file_too() -> None:
    with pytest.raises(ConfigError, match="not in the URL"):
        with_credentials("rtsp://admin:x@192.0.2.5/s", CameraCredentials("admin", "y"))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("rtsp://192.0.2.5/s", "rtsp://192.0.2.5/s"),
        ("rtsp://admin:secret@192.0.2.5/s", "rtsp://***@192.0.2.5/s"),
        ("rtsp://admin:p@ss@192.0.2.5/s", "rtsp://***@192.0.2.5/s"),
        ("rtsp://admin:p/w@rd@192.0.2.5:554/s?a=b@c", "rtsp://***@192.0.2.5:554/s?a=b@c"),
        ("http://u:%40x@cam.local/video.mjpg", "http://***@cam.local/video.mjpg"),
    ],
)
def test_redaction_hides_the_user_info_whatever_it_holds(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_the_stream_opens_with_them_and_its_label_has_none() -> None:
    spec = parse_input("rtsp://192.0.2.5/s", credentials=CameraCredentials("admin", HARD_PASSWORD))
    assert spec.target == "rtsp://admin:p%40ss%3Aw%2Frd%20%2541%23%3Fx@192.0.2.5/s"
    assert spec.label == "rtsp://192.0.2.5/s"
    with pytest.raises(ConfigError, match="only an rtsp or http"):
        parse_input("0", credentials=CameraCredentials("admin", "x"))


class _CameraHandler(BaseHTTPRequestHandler):
    """An HTTP camera that wants Basic auth, serving the sample video."""

    video: bytes = b""
    expected = "Basic " + base64.b64encode(f"cam:{HARD_PASSWORD}".encode()).decode()

    def do_GET(self) -> None:
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/x-msvideo")
        self.send_header("Content-Length", str(len(self.video)))
        self.end_headers()
        self.wfile.write(self.video)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # OpenCV hangs up as soon as it has what it wants: a broken pipe is no news


@pytest.fixture
def camera(sample_video: Path) -> Iterator[str]:
    _CameraHandler.video = sample_video.read_bytes()
    server = _QuietServer(("127.0.0.1", 0), _CameraHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.avi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_camera_that_wants_a_password_gets_it_from_the_file(camera: str, tmp_path: Path) -> None:
    path = tmp_path / "camera"
    path.write_text(f"cam:{HARD_PASSWORD}\n", encoding="utf-8")
    reader = FrameReader(
        parse_input(camera, credentials=read_credentials(path)),
        loop=False,
        realtime=False,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.1,
    )
    try:
        assert reader.frame_size == (768, 576)
    finally:
        reader.stop()


def test_a_wrong_password_is_refused_and_not_shown(camera: str, tmp_path: Path) -> None:
    path = tmp_path / "camera"
    path.write_text("cam:wrong-s3cret\n", encoding="utf-8")
    with pytest.raises(InputError) as refused:
        FrameReader(
            parse_input(camera, credentials=read_credentials(path)),
            loop=False,
            realtime=False,
            reconnect_initial_s=0.05,
            reconnect_max_s=0.1,
        )
    assert camera in str(refused.value) and "s3cret" not in str(refused.value)
