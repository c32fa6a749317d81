"""The per-frame results file: one JSON line per frame, for analysing recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from people_counter.stage_data import CounterState, TrackerOutput


class ResultsWriter:
    """`frame_size` is the size the boxes are measured in (the frames as counted, after any
    scaling); `media_ts` of a line is the frame's position in a recorded file, in seconds (None
    for a live source). With both, a results file can be scored against ground truth made for
    another copy of the same video (another size or frame rate)."""

    def __init__(self, path: Path, frame_size: tuple[int, int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered: a results file can be followed (tail -f) while the counter runs.
        self._file: TextIO = path.open("w", encoding="utf-8", buffering=1)
        self._frame_size = list(frame_size)

    def write(
        self,
        frame_index: int,
        state: CounterState,
        tracks: TrackerOutput,
        latency_ms: float,
        media_ts: float | None = None,
    ) -> None:
        line = {
            "frame": frame_index,
            "ts": round(tracks.ts, 3),
            "media_ts": None if media_ts is None else round(media_ts, 4),
            "frame_size": self._frame_size,
            "count": state.count,
            "total": state.total,
            "in": state.in_count,
            "out": state.out_count,
            "tracks": [
                {"id": t.track_id, "box": [round(v, 1) for v in t.box], "missed": t.missed} for t in tracks.visible
            ],
            "latency_ms": round(latency_ms, 2),
        }
        self._file.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()
