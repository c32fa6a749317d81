"""The encoder program (people-counter-stream): annotated frames in, MJPEG out, through the pinned ffmpeg."""
