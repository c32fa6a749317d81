"""One cgroup directory per host, in every hierarchy nspawn uses.

On a cgroup v1 machine without systemd as PID 1, nspawn needs the named
systemd hierarchy and, for a unified-hierarchy payload, the cgroup2 mount.
nspawn creates payload/ and supervisor/ inside the cgroup it starts in, so
each host must start in a cgroup of its own.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

from .common import LauncherError, is_mounted, run

CGROUP_ROOT = Path("/sys/fs/cgroup")
NAMED_SYSTEMD = CGROUP_ROOT / "systemd"
UNIFIED = CGROUP_ROOT / "unified"
TOP = "people-counter-test"


def root_fstype() -> str:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(CGROUP_ROOT):
                return right.split()[0]
    return ""


def pure_cgroup2() -> bool:
    return root_fstype() == "cgroup2"


def ensure_hierarchies() -> list[Path]:
    """Mount the hierarchies nspawn needs if absent; return their roots."""
    if pure_cgroup2():
        return [CGROUP_ROOT]
    if not is_mounted(NAMED_SYSTEMD):
        NAMED_SYSTEMD.mkdir(exist_ok=True)
        run(
            [
                "mount",
                "-t",
                "cgroup",
                "-o",
                "none,name=systemd",
                "cgroup",
                str(NAMED_SYSTEMD),
            ]
        )
    if not is_mounted(UNIFIED):
        UNIFIED.mkdir(exist_ok=True)
        run(["mount", "-t", "cgroup2", "cgroup2", str(UNIFIED)])
    return [NAMED_SYSTEMD, UNIFIED]


def nspawn_environment() -> dict[str, str]:
    """Ask for a unified-hierarchy payload on a hybrid (v1 + cgroup2) machine."""
    env = dict(os.environ)
    if not pure_cgroup2():
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    return env


def prefix_dirs(prefix: str) -> list[Path]:
    return [root / TOP / prefix for root in ensure_hierarchies()]


def host_dirs(prefix: str, host: str) -> list[Path]:
    return [path / host for path in prefix_dirs(prefix)]


def create(paths: list[Path]) -> None:
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)


def pids_below(path: Path) -> set[int]:
    pids: set[int] = set()
    if not path.is_dir():
        return pids
    for directory, _dirs, files in os.walk(path):
        if "cgroup.procs" in files:
            try:
                text = (Path(directory) / "cgroup.procs").read_text()
            except OSError:
                continue
            pids.update(int(token) for token in text.split())
    return pids


def kill_leftovers(paths: list[Path]) -> None:
    """SIGKILL any process still inside these cgroups (exact PIDs, nothing else)."""
    for path in paths:
        for pid in pids_below(path):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def remove(paths: list[Path], timeout: float = 10.0) -> None:
    """Remove cgroup trees deepest first, killing stragglers, until gone or timeout."""
    deadline = time.monotonic() + timeout
    for path in paths:
        while path.exists():
            kill_leftovers([path])
            busy = remove_once(path)
            if not busy:
                break
            if time.monotonic() > deadline:
                raise LauncherError(f"cannot remove cgroup {path}: still busy")
            time.sleep(0.2)


def remove_once(path: Path) -> bool:
    """One bottom-up pass of rmdir; True if something is still busy."""
    busy = False
    for directory, _dirs, _files in os.walk(path, topdown=False):
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            busy = True
    return busy


def remove_if_empty(path: Path) -> None:
    """rmdir a shared parent; another run may still be using it, which is fine."""
    try:
        os.rmdir(path)
    except OSError:
        pass
