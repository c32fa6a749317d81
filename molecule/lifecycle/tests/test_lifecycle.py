"""Releases, upgrades, rollback and removal on one device, in order (each test starts where the
one before left the device).

converge provisioned release A (the checkout's app/). Then: an upgrade to B (a copy with a
bumped version) carries the totals over; an upgrade to C (a copy whose counter migrates the
store to a schema of its own and exits at start) rolls back to B with the store restored and
the totals intact; remove.yml leaves nothing of the appliance but its data, site.yml provisions
it again on those data, and remove.yml with people_counter_remove_data removes the data too.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_playbook
from fleet_conftest import (
    COUNTER,
    COUNTER_USER,
    PROJECT_DIR,
    WEB_USER,
    Node,
    node_now,
    state_after,
)

OPT = "/opt/people-counter"
STATE_DIR = "/var/lib/people-counter"
STORE = f"{STATE_DIR}/counts.sqlite3"
ROLLBACK_WITHIN_S = 60.0
"""The issue's bound: back on the previous release, counting, within 60 s of the failed check."""

BROKEN_MIGRATION = (
    "MIGRATIONS: Sequence[Migration] = (_v1_initial, _v2_live_tracks)",
    (
        "MIGRATIONS: Sequence[Migration] = (_v1_initial, _v2_live_tracks, "
        "lambda db: db.execute('CREATE TABLE lifecycle_test (x INTEGER)'))"
    ),
)
"""C's store gains a schema version of its own (3)..."""
BROKEN_START = (
    "    def run(self) -> int:\n",
    (
        "    def run(self) -> int:\n"
        "        self.notifier.ready('lifecycle test: a deliberately broken release')\n"
        "        raise SystemExit('lifecycle test: a deliberately broken release')\n"
    ),
)
"""...and C's counter, its store open (migrated), tells systemd it is ready and exits (status 1,
so systemd restarts it over and over) before it counts or publishes anything. The unit starts,
and the dashboard's /healthz may still answer 200 on B's last state: only a fresh state counts."""


def _app_copy(dest: Path, version_label: str, *patches: tuple[str, str, str]) -> Path:
    """A copy of app/ whose version has a local label (a new release), with (file, old, new) patches."""
    shutil.copytree(
        PROJECT_DIR / "app",
        dest,
        ignore=shutil.ignore_patterns(
            "__pycache__",
            "*.egg-info",
            ".pytest_cache",
            ".ruff_cache",
            "build",
            "dist",
            "tests",
            "mutants",
        ),
    )
    edits = [
        ("pyproject.toml", 'version = "0.1.0"', f'version = "0.1.0+{version_label}"'),
        *patches,
    ]
    for file, old, new in edits:
        path = dest / file
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{file} no longer has {old!r}: update this test's patch"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def release_b(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _app_copy(tmp_path_factory.mktemp("release") / "b", "b")


@pytest.fixture(scope="module")
def release_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _app_copy(
        tmp_path_factory.mktemp("release") / "c",
        "c",
        ("people_counter/outputs/store.py", *BROKEN_MIGRATION),
        ("people_counter/counting_loop.py", *BROKEN_START),
    )


def _current(device: Node) -> str:
    return Path(device.check(f"readlink {OPT}/current").strip()).name


def _releases(device: Node) -> set[str]:
    return set(device.check(f"ls {OPT}/releases").split())


def _schema(device: Node, path: str) -> int:
    query = (
        "import sqlite3, sys; print(sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True)"
        ".execute('SELECT version FROM schema_version').fetchone()[0])"
    )
    return int(
        device.check(
            f"runuser -u {COUNTER_USER} -- python3 -c {shlex.quote(query)} {path}"
        )
    )


def _total(device: Node) -> int:
    """The total of a state the counter made from now on (the retained state on the device)."""
    return int(state_after(device, node_now(device), 60)["total"])


def _output(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


@pytest.mark.units(COUNTER)
def test_upgrade_to_a_healthy_release_carries_the_totals_over(
    device: Node, release_b: Path
) -> None:
    release_a = _current(device)
    before = _total(device)
    assert before > 0, "release A counted nobody: nothing to carry over"
    result = run_playbook("upgrade.yml", f"people_counter_app_source_dir={release_b}")
    assert result.returncode == 0, _output(result)[-4000:]

    release = _current(device)
    assert release.startswith("0.1.0+b-"), release
    version = device.check(
        f"{OPT}/current/venv/bin/python -c 'import importlib.metadata as m; print(m.version(\"people-counter\"))'"
    ).strip()
    assert version == "0.1.0+b"
    assert {release_a, release} <= _releases(device), (
        "the previous release was not kept"
    )
    assert device.check(f"cat {OPT}/releases/{release}/.previous").strip() == release_a
    assert device.host.file(f"{STATE_DIR}/backups/{release_a}.sqlite3").is_file, (
        "no store backup before the switch"
    )
    # The units run the new release, through current.
    exec_start = device.check(f"systemctl show -p ExecStart {COUNTER}")
    assert f"{OPT}/current/venv/bin/people-counter" in exec_start, exec_start
    after = _total(device)
    print(f"total before {before}, after {after}")
    assert after >= before, "the totals did not carry over to the new release"


@pytest.mark.units(COUNTER)
def test_a_broken_release_rolls_back_with_the_totals_intact(
    device: Node, release_c: Path
) -> None:
    release_b = _current(device)
    before = _total(device)
    result = run_playbook(
        "upgrade.yml",
        f"people_counter_app_source_dir={release_c}",
        # Short waits: the broken release never gets healthy.
        "people_counter_release_healthy_within_s=30",
        "people_counter_healthz_retries=10",
    )
    output = _output(result)
    assert result.returncode != 0, "the upgrade to a broken release succeeded"
    rolled_back = re.search(
        rf"rolled back: {re.escape(device.name)} back on {re.escape(release_b)}, healthy ([0-9.]+) s after "
        r"the failed check, store (\w+)",
        output,
    )
    assert rolled_back, (
        f"the failure does not name {device.name} rolled back to {release_b}:\n{output[-4000:]}"
    )
    print(rolled_back.group(0))
    assert float(rolled_back.group(1)) <= ROLLBACK_WITHIN_S
    # C migrated the store to its own schema: B got the backup back, not a schema it cannot open.
    assert rolled_back.group(2) == "restored", output[-3000:]
    assert _schema(device, STORE) == 2

    assert _current(device) == release_b
    assert any(name.startswith("0.1.0+c-") for name in _releases(device)), (
        "the failed release is gone"
    )
    assert device.show(COUNTER, "ActiveState")["ActiveState"] == "active"
    after = _total(device)
    print(f"total before {before}, after {after}")
    assert after >= before, "the rollback lost counts"


def _leftovers(device: Node) -> list[str]:
    """What of the appliance (besides its data and users) is still on the device."""
    found = []
    paths = [
        OPT, "/opt/ffmpeg", "/usr/local/bin/ffmpeg", "/etc/people-counter", "/etc/tmpfiles.d/people-counter.conf",
        "/run/people-counter", "/var/lib/people-counter-dashboard", "/var/lib/people-counter-packages",
        "/etc/mosquitto/conf.d/people-counter.conf", "/etc/mosquitto/people-counter.passwd",
        "/etc/mosquitto/people-counter.acl", "/etc/systemd/system/mosquitto.service.d/people-counter-hardening.conf",
        "/root/intel",
    ]  # fmt: skip
    found += [
        path for path in paths if device.run(f"test -e {path} -o -L {path}").rc == 0
    ]
    units = device.check("ls /etc/systemd/system").split()
    found += [f"unit {name}" for name in units if name.startswith("people-counter")]
    listed = device.run(
        "systemctl list-units --all --no-legend --plain 'people-counter*' mosquitto.service"
    ).stdout
    for unit, load, active, *_ in (
        line.split() for line in listed.splitlines() if line.strip()
    ):
        if load != "not-found" or active != "inactive":
            found.append(f"unit {unit}: {load} {active}")
    listening = device.check("ss -Hltn").split("\n")
    for port in (1883, 8443, 8080):
        found += [
            f"listening on {port}"
            for line in listening
            if re.search(rf":{port}\s", line)
        ]
    for user in (COUNTER_USER, WEB_USER, "people-counter-stream", "mosquitto"):
        if device.run(f"pgrep -u {user}").rc == 0:
            found.append(f"processes of {user}")
    for package in (
        "mosquitto",
        "mosquitto-clients",
        "python3-venv",
        "python3-packaging",
        "systemd-timesyncd",
    ):
        # The second letter: n not installed, c only its config files (Debian's own) left.
        status = device.run(
            f"dpkg-query -W -f '${{db:Status-Abbrev}}' {package}"
        ).stdout
        if status[1:2] not in ("", "n", "c"):
            found.append(f"package {package} ({status.strip()})")
    return found


def test_remove_leaves_only_the_data_and_provisioning_again_works(device: Node) -> None:
    before = _total(device)
    result = run_playbook("remove.yml")
    assert result.returncode == 0, _output(result)[-4000:]
    assert _leftovers(device) == []
    # The data stay by default, with the users that own them.
    assert device.host.file(STORE).is_file
    assert device.host.user(COUNTER_USER).exists

    result = run_playbook("site.yml")
    assert result.returncode == 0, _output(result)[-4000:]
    after = _total(device)
    print(f"total before {before}, after {after}")
    assert after >= before, (
        "provisioned again, the device did not go on from its kept counts"
    )


def test_remove_with_the_data_leaves_nothing(device: Node) -> None:
    result = run_playbook("remove.yml", "people_counter_remove_data=true")
    assert result.returncode == 0, _output(result)[-4000:]
    assert _leftovers(device) == []
    assert not device.host.file(STATE_DIR).exists
    for user in (COUNTER_USER, WEB_USER, "people-counter-stream"):
        assert not device.host.user(user).exists, f"user {user} is left"
    assert not device.host.group("people-counter").exists
