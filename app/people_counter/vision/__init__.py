"""The vision stages: frames in (source), people found (detector), people followed (tracker)."""
