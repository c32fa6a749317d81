"""Shared helpers: the expected-failure exception, command runner, file writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

TOOLS: dict[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nft": "nftables",
    "ip": "iproute2",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "mount": "mount",
    "umount": "mount",
    "nsenter": "util-linux",
    "systemctl": "systemd",
}


class LauncherError(Exception):
    """An expected failure: printed as one line, without a traceback."""


def log(message: str) -> None:
    print(f"nspawn-hosts: {message}", file=sys.stderr, flush=True)


def require_root() -> None:
    if os.geteuid() != 0:
        raise LauncherError("must run as root (it mounts overlays and creates links)")


def require_tools(names: list[str]) -> None:
    for name in names:
        if shutil.which(name) is None:
            package = TOOLS.get(name, name)
            raise LauncherError(f"{name} not installed (apt-get install {package})")


def run(
    args: list[str],
    *,
    check: bool = True,
    input_text: str | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise a LauncherError naming it and its stderr."""
    try:
        proc = subprocess.run(
            args,
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise LauncherError(f"{args[0]} not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LauncherError(f"timed out after {timeout}s: {' '.join(args)}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else f"exit status {proc.returncode}"
        raise LauncherError(f"{' '.join(args[:4])} failed: {last}")
    return proc


def write_text(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file atomically, with the given mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, data: Any, mode: int = 0o644) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n", mode)


def first_child(pid: int) -> int | None:
    """The oldest child of a process, from /proc (None if it has none)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(children[0]) if children else None


def mounted_paths() -> list[str]:
    """Mount points from /proc/self/mountinfo, octal escapes decoded."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            field = line.split()[4]
            points.append(field.encode().decode("unicode_escape"))
    return points


def is_mounted(path: Path) -> bool:
    return str(path) in mounted_paths()


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below path, deepest first."""
    prefix = str(path).rstrip("/")
    found = [p for p in mounted_paths() if p == prefix or p.startswith(prefix + "/")]
    return sorted(set(found), key=len, reverse=True)


def remove_tree(path: Path) -> None:
    """Delete a directory tree, refusing if anything below it is still mounted."""
    if not path.exists():
        return
    if mounts_under(path):
        raise LauncherError(f"refusing to delete {path}: something is mounted below it")
    run(["rm", "-rf", "--one-file-system", str(path)])
