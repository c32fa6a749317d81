"""Build and cache one Debian root filesystem per release, atomically."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .common import LauncherError, log, mounts_under, remove_tree, run, write_text

RELEASES = ("bookworm", "trixie")
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "iproute2",
    "iputils-ping",
    "ca-certificates",
    "procps",
)
# Bump when the customisation below changes, so that caches are rebuilt.
RECIPE_VERSION = "1"
DEFAULT_CACHE_DIR = "/var/cache/people-counter-test"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"

SSHD_DROP_IN = """\
# Test host: key-only root login; per-host keys are generated at first start.
HostKey /etc/ssh/ssh_host_ed25519_key
HostKey /etc/ssh/ssh_host_ecdsa_key
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
"""


def cache_dir() -> Path:
    return Path(os.environ.get("PC_CACHE_DIR", DEFAULT_CACHE_DIR))


def mirrors() -> tuple[str, str]:
    main = os.environ.get("PC_DEBIAN_MIRROR", DEFAULT_MIRROR)
    security = os.environ.get("PC_DEBIAN_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
    return main, security


def extra_packages() -> list[str]:
    raw = os.environ.get("PC_TEMPLATE_EXTRA_PACKAGES", "")
    names = [name for name in re.split(r"[\s,]+", raw) if name]
    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9+.-]*", name):
            raise LauncherError(
                f"PC_TEMPLATE_EXTRA_PACKAGES: bad package name {name!r}"
            )
    return names


def package_list() -> list[str]:
    return sorted(set(PACKAGES) | set(extra_packages()))


def template_key(release: str) -> str:
    """A digest of everything that shapes the root filesystem."""
    recipe = {
        "release": release,
        "packages": package_list(),
        "mirrors": mirrors(),
        "recipe": RECIPE_VERSION,
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    return f"{release}-{digest[:12]}"


def template_dir(release: str) -> Path:
    return cache_dir() / template_key(release)


def rootfs_of(release: str) -> Path:
    return template_dir(release) / "rootfs"


@contextmanager
def build_lock(key: str) -> Iterator[None]:
    """Serialise builds of one template across concurrent launchers."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    lock_path = cache_dir() / f".{key}.lock"
    with open(lock_path, "w", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def discard_stale_builds(key: str) -> None:
    """Remove half-built trees left by an interrupted build (we hold the lock)."""
    for stale in cache_dir().glob(f".build-{key}-*"):
        for point in mounts_under(stale):
            run(["umount", "--lazy", point], check=False)
        log(f"removing interrupted build {stale}")
        remove_tree(stale)


def ensure_template(release: str) -> Path:
    """Return the cached root filesystem for release, building it if missing."""
    if release not in RELEASES:
        raise LauncherError(
            f"unknown release {release!r} (choose from {', '.join(RELEASES)})"
        )
    key = template_key(release)
    final = template_dir(release)
    if (final / "rootfs").is_dir():
        return final / "rootfs"
    with build_lock(key):
        if (final / "rootfs").is_dir():
            return final / "rootfs"
        discard_stale_builds(key)
        build = cache_dir() / f".build-{key}-{os.getpid()}"
        build.mkdir(parents=True)
        started = time.monotonic()
        log(f"building {release} template in {build} (a few minutes, once)")
        bootstrap(release, build / "rootfs", build / "debootstrap.log")
        customise(release, build / "rootfs")
        info = {
            "key": key,
            "release": release,
            "packages": package_list(),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(time.monotonic() - started, 1),
        }
        write_text(build / "template.json", json.dumps(info, indent=2) + "\n")
        os.rename(build, final)
        log(f"{release} template ready in {info['seconds']}s: {final}")
    return final / "rootfs"


def bootstrap(release: str, rootfs: Path, logfile: Path) -> None:
    main, _ = mirrors()
    args = [
        "debootstrap",
        "--variant=minbase",
        f"--include={','.join(package_list())}",
        "--components=main",
        release,
        str(rootfs),
        main,
    ]
    with open(logfile, "w", encoding="utf-8") as out:
        proc = subprocess.run(args, stdout=out, stderr=out, check=False)
    if proc.returncode != 0:
        tail = logfile.read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        raise LauncherError(
            f"debootstrap {release} failed (exit {proc.returncode}): "
            f"{' | '.join(tail)} (full log: {logfile})"
        )


def sources_list(release: str) -> str:
    main, security = mirrors()
    return (
        f"deb {main} {release} main\n"
        f"deb {main} {release}-updates main\n"
        f"deb {security} {release}-security main\n"
    )


def customise(release: str, rootfs: Path) -> None:
    """Turn a debootstrap tree into a bootable, host-neutral template."""
    write_text(rootfs / "etc/apt/sources.list", sources_list(release))
    write_text(rootfs / "etc/machine-id", "", 0o444)
    dbus_id = rootfs / "var/lib/dbus/machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write_text(rootfs / "etc/ssh/sshd_config.d/10-test-host.conf", SSHD_DROP_IN)
    write_text(
        rootfs / "etc/hosts", "127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n"
    )
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).unlink(missing_ok=True)
    run(
        [
            "systemctl",
            f"--root={rootfs}",
            "enable",
            "systemd-networkd.service",
            "ssh.service",
        ]
    )
    for pattern in (
        "var/lib/apt/lists/*",
        "var/cache/apt/*.bin",
        "var/cache/apt/archives/*.deb",
        "var/log/*.log",
    ):
        for path in rootfs.glob(pattern):
            if path.is_file():
                path.unlink()


def prune() -> list[Path]:
    """Delete cached templates the current recipe no longer uses, unless mounted."""
    root = cache_dir()
    if not root.is_dir():
        return []
    current = {template_key(release) for release in RELEASES}
    mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8")
    removed = []
    for path in sorted(root.iterdir()):
        if path.name.startswith(".") or path.name in current or not path.is_dir():
            continue
        if f"lowerdir={path / 'rootfs'}" in mountinfo:
            log(f"keeping {path}: a running host still uses it")
            continue
        remove_tree(path)
        (root / f".{path.name}.lock").unlink(missing_ok=True)
        removed.append(path)
    return removed
