"""The per-frame results file: one JSON line per frame, for analysing recordings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from people_counter.stage_data import CounterState, TrackerOutput


class ResultsWriter:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered: a results file can be followed (tail -f) while the counter runs.
        self._file: TextIO = path.open("w", encoding="utf-8", buffering=1)

    def write(self, frame_index: int, state: CounterState, tracks: TrackerOutput, latency_ms: float) -> None:
        line = {
            "frame": frame_index,
            "ts": round(tracks.ts, 3),
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
