"""The people in view, carried across a restart so that they are not counted again.

The counter saves a LiveSnapshot with its totals (outputs.store): the tracker's confirmed tracks
and the counter's per-track state (line sides, loitering alerts). On the first frame after a
start, the snapshot is put back on the new run's clock:

- a camera or stream is matched by the wall clock: the tracks are as old as the time the counter
  was down, and the tracker's own rules (its gap allowance, the re-identification window) decide
  whether each is still there;
- a recorded file is matched by its own clock, the frame's position in the file: replayed from a
  later frame (`run --start-frame`), the tracks are as old as the frames skipped.

A snapshot that cannot be continued (taken from a later point of the file than the first frame
now, or from another kind of input) ends its tracks at once, with their own times, so each visit
is recorded once.
"""

from __future__ import annotations

import logging

from people_counter.counting.counter import PeopleCounter
from people_counter.stage_data import EndedTrack, LiveSnapshot, TrackerOutput
from people_counter.vision.tracker import PersonTracker

log = logging.getLogger(__name__)


def take_snapshot(
    tracker: PersonTracker, counter: PeopleCounter, clock_ts: float, media_ts: float | None
) -> LiveSnapshot:
    return LiveSnapshot(
        clock_ts=clock_ts,
        media_ts=media_ts,
        tracks=tracker.snapshot(),
        line_sides=counter.line.sides(),
        loitering_alerted=counter.loitering_alerted,
    )


def carry_over(
    saved: LiveSnapshot, tracker: PersonTracker, counter: PeopleCounter, ts: float, media_ts: float | None
) -> TrackerOutput | None:
    """Put the saved people in view back, before the first frame at `ts` (`media_ts` in a file).

    Returns the tracks ended at once, for the counter to record, or None when they carry on."""
    if not saved.tracks:
        return None
    if saved.media_ts is None and media_ts is None:
        elapsed_s = ts - saved.clock_ts
    elif saved.media_ts is not None and media_ts is not None:
        elapsed_s = media_ts - saved.media_ts
    else:
        elapsed_s = -1.0
    if elapsed_s < 0.0:
        log.info("%d people in view at the last stop end there: the input is not where it was", len(saved.tracks))
        ended = tuple(
            EndedTrack(track_id=t.track_id, first_seen_ts=t.first_seen_ts, last_seen_ts=t.last_seen_ts)
            for t in saved.tracks
        )
        return TrackerOutput(ts=ts, visible=(), ended=ended)
    shift_s = ts - elapsed_s - saved.clock_ts
    tracker.restore(saved.tracks, shift_s=shift_s, clock_ts=saved.clock_ts + shift_s)
    counter.restore(saved.line_sides, saved.loitering_alerted)
    log.info("carried on with %d people in view at the last stop, %.1f s ago", len(saved.tracks), elapsed_s)
    return None
