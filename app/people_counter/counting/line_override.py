"""The counting line placed on the dashboard: a small file that wins over config.yml's counting.line.

The dashboard writes it (`write_line_override`, atomically: a reader sees the old file or the new
one, never half of one) and the counter reads it (`LineOverride`): at start, and again whenever
its stat changes, so a line placed on the live image applies within a second, through the same
`PeopleCounter.reconfigure` as a SIGHUP reload (counts and people in view kept). Both sides
validate with the config's own `CountingConfig` rules, so the file takes exactly the lines the
YAML takes. The file lives in the state directory, which Ansible does not template, so it
outlasts restarts and re-provisioning; deleting it gives the YAML's line back.

    line: [[0.5, 0.0], [0.5, 1.0]]   # p1, p2 as fractions of the frame, as counting.line
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

from people_counter.config import CountingConfig, Point, read_yaml, validate_document
from people_counter.errors import ConfigError

log = logging.getLogger("people_counter.line_override")

Line = tuple[Point, Point]
HEADER = "# The counting line placed on the dashboard; it wins over config.yml. Delete it to go back.\n"


def parse_line_override(data: object, origin: str) -> Line:
    """The override document's line, by the config's rules; a ConfigError naming the problem."""
    if not isinstance(data, dict) or set(data) != {"line"}:
        raise ConfigError(f"{origin}: must hold one key, line: [[x1, y1], [x2, y2]]")
    return validate_document(CountingConfig, data, origin).line


def read_line_override(path: Path) -> Line:
    return parse_line_override(read_yaml(path), str(path))


def write_line_override(path: Path, line: Line) -> None:
    """Replace the file in one rename (mode 0640: the counter reads it through the shared group)."""
    text = HEADER + yaml.safe_dump({"line": [list(point) for point in line]}, default_flow_style=None)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LineOverride:
    """The override file as the counter follows it: re-read when its inode, mtime or size change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.line: Line | None = None
        """The line in force from the file; None: the config's own."""
        self._seen: tuple[int, int, int] | None = None

    def poll(self) -> bool:
        """Look at the file (a stat, cheap enough once a second); True when the line in force changed.

        A bad file is refused with one warning, once per version of it, and the line stays.
        """
        if self.path is None:
            return False
        try:
            stat = self.path.stat()
            seen: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            seen = None
        except OSError as error:
            seen = (-1, -1, error.errno or 0)
        if seen == self._seen:
            return False
        self._seen = seen
        if seen is None:
            if self.line is None:
                return False
            log.info("%s is gone: the counting line is the config's again", self.path)
            self.line = None
            return True
        try:
            line = read_line_override(self.path)
        except ConfigError as error:
            log.warning("counting line override refused, the line stays as it was: %s", error)
            return False
        if line == self.line:
            return False
        self.line = line
        log.info("counting line from %s: %s -> %s", self.path, *line)
        return True

    def applied_to(self, counting: CountingConfig) -> CountingConfig:
        """The counting section with the override's line, if there is one."""
        return counting if self.line is None else counting.model_copy(update={"line": self.line})
