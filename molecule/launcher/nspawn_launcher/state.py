"""The state file: every resource a run holds, written after each step."""

from __future__ import annotations

import dataclasses
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .common import LauncherError, log, write_json

STATE_VERSION = 1
STATE_FILE = "state.json"


@dataclass
class Overlay:
    lower: str
    upper: str
    work: str
    merged: str


@dataclass
class HostRecord:
    name: str
    release: str
    machine: str
    subnet: str
    address: str
    gateway: str
    subnet_reservation: str
    overlay: Overlay
    cgroups: list[str]
    console_log: str
    ssh_key: str
    veth: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    status: str = "new"


@dataclass
class RunState:
    prefix: str
    state_dir: str
    ssh_key: str
    nft_table: str
    prefix_claim: str
    cgroup_parents: list[str]
    version: int = STATE_VERSION
    hosts: list[HostRecord] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return Path(self.state_dir) / STATE_FILE

    def save(self) -> None:
        write_json(self.path, dataclasses.asdict(self))

    def host(self, name: str) -> HostRecord:
        for record in self.hosts:
            if record.name == name:
                return record
        known = ", ".join(r.name for r in self.hosts) or "none"
        raise LauncherError(f"no host {name!r} in {self.path} (hosts: {known})")


def host_from_dict(data: dict[str, object]) -> HostRecord:
    values = dict(data)
    values["overlay"] = Overlay(**values["overlay"])  # type: ignore[arg-type]
    return HostRecord(**values)  # type: ignore[arg-type]


def load(state_dir: Path) -> RunState | None:
    path = state_dir / STATE_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != STATE_VERSION:
            raise LauncherError(
                f"{path}: unsupported state version {data.get('version')}"
            )
        hosts = [host_from_dict(h) for h in data.pop("hosts")]
        return RunState(**data, hosts=hosts)
    except (ValueError, TypeError, KeyError) as exc:
        raise LauncherError(f"{path}: unreadable state file ({exc})") from exc


def require(state_dir: Path) -> RunState:
    run_state = load(state_dir)
    if run_state is None:
        raise LauncherError(f"no state file in {state_dir} (nothing was started there)")
    return run_state


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """One launcher command at a time per state directory; others wait their turn."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / ".lock", "w", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"waiting for another launcher command on {state_dir}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
