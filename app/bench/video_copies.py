"""Copies of the sample video as other cameras would send it, made once with the pinned ffmpeg."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from people_counter.paths import sample_video_path
from people_counter.prepare.ffmpeg import ensure_ffmpeg


@dataclass(frozen=True, slots=True)
class VideoCopy:
    name: str
    filters: str
    """ffmpeg's -vf: the size and frame rate of the copy (H.264, veryfast, CRF 23)."""
    mirrored: bool = False
    """Flipped left to right: its ground truth is flipped the same way."""

    @property
    def rescaled(self) -> bool:
        """Of another size or frame rate than the ground truth: scored on the ground truth's frames."""
        return "scale=" in self.filters or "fps=" in self.filters


CAMERA_1080P25 = VideoCopy("1080p25", "scale=1920:1080,fps=25")
ENCODINGS = (
    VideoCopy("mirrored", "hflip", mirrored=True),
    VideoCopy("576p25", "fps=25"),
    VideoCopy("720p25", "scale=1280:720,fps=25"),
    VideoCopy("1080p10", "scale=1920:1080"),
    CAMERA_1080P25,
    VideoCopy("1080p30", "scale=1920:1080,fps=30"),
)
"""The sample video re-encoded as cameras send it; the original is 768x576 at 10 fps (MPEG-4)."""


def video_copy(copy: VideoCopy, cache: Path | None = None) -> Path:
    """The copy's file, made now if the cache does not have it yet."""
    source = sample_video_path()
    path = (cache or source.parent) / f"vtest-{copy.name}.mp4"
    if not path.exists():
        partial = path.with_suffix(".part.mp4")
        command = [str(ensure_ffmpeg()), "-loglevel", "error", "-y", "-i", str(source), "-vf", copy.filters]
        command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", str(partial)]
        subprocess.run(command, check=True)
        partial.rename(path)
    return path


def mirrored_ground_truth(ground_truth: Path, width: int, out: Path) -> Path:
    """The MOT ground truth of a video flipped left to right: each box's left edge mirrored."""
    lines = []
    for line in ground_truth.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        fields = line.split(",")
        left, box_width = float(fields[2]), float(fields[4])
        fields[2] = f"{width - left - box_width:.3f}"
        lines.append(",".join(fields))
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out
