"""fetch_sample: the cached video is hash-checked; a bad cache is fetched again or fails clearly.

The re-fetch tests use small .deb files built here with dpkg-deb (uncompressed, so they are
quick), holding either the real video or wrong bytes, instead of downloading 96 MB again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from people_counter import paths
from people_counter.prepare.sample import SAMPLE_MEMBER, SAMPLE_SHA256, SampleError, fetch_sample, sha256_file


def build_deb(tmp_path: Path, files: dict[str, Path | bytes], name: str = "opencv-doc") -> Path:
    root = tmp_path / f"{name}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: test <t@example.org>\n"
        "Description: test package\n",
        encoding="utf-8",
    )
    for member, content in files.items():
        target = root / member
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copyfile(content, target)
        else:
            target.write_bytes(content)
    deb = tmp_path / f"{name}.deb"
    subprocess.run(
        ["dpkg-deb", "-Znone", "--root-owner-group", "--build", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("PEOPLE_COUNTER_CACHE", str(directory))
    return directory


def test_cached_sample_is_verified(sample_video: Path) -> None:
    assert sample_video == paths.sample_video_path()
    assert sha256_file(sample_video) == SAMPLE_SHA256
    assert fetch_sample() == sample_video  # cached: no download


def test_corrupt_cache_is_fetched_again(cache: Path, tmp_path: Path, sample_video: Path) -> None:
    deb = build_deb(tmp_path, {SAMPLE_MEMBER: sample_video})
    cache.mkdir()
    (cache / "vtest.avi").write_bytes(b"truncated")
    path = fetch_sample(deb=deb)
    assert path == cache / "vtest.avi"
    assert sha256_file(path) == SAMPLE_SHA256
    assert sorted(p.name for p in cache.iterdir()) == ["vtest.avi"]  # no .deb or temp file left


def test_wrong_video_in_package_fails_and_leaves_nothing(cache: Path, tmp_path: Path) -> None:
    deb = build_deb(tmp_path, {SAMPLE_MEMBER: b"not the video"})
    with pytest.raises(SampleError, match="sha256 mismatch"):
        fetch_sample(deb=deb)
    assert list(cache.iterdir()) == []


def test_package_without_the_video(cache: Path, tmp_path: Path) -> None:
    deb = build_deb(tmp_path, {"usr/share/doc/opencv-doc/README": b"hello"})
    with pytest.raises(SampleError, match=r"vtest\.avi not found"):
        fetch_sample(deb=deb)


def test_not_a_deb(cache: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.deb"
    junk.write_bytes(os.urandom(1000))
    with pytest.raises(SampleError, match=r"junk\.deb"):
        fetch_sample(deb=junk)
    with pytest.raises(SampleError, match="no such"):
        fetch_sample(deb=tmp_path / "missing.deb")


def test_without_apt_get_the_error_says_so(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(SampleError, match="apt-get not found"):
        fetch_sample()
