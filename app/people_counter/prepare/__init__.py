"""The preparation commands: the model, the sample video and the pinned ffmpeg, each fetched and sha256-checked."""
