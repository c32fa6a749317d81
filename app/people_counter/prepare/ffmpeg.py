"""The pinned ffmpeg: the static FFmpeg build carried by PyPI's imageio-ffmpeg wheel (pins.yml).

One exact build across the fleet, whatever Debian release a device runs: the wheel is
fetched with pip (PyPI is reachable where apt is), its sha256 checked against the pin,
and only the one binary extracted into the cache. `python -m people_counter.prepare.ffmpeg`
prints the binary's path, so that the Makefile, the tests and the devices share it.
"""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import UserError
from people_counter.pins import pins

FFMPEG_VERSION = pins().ffmpeg.version
WHEEL_VERSION = pins().ffmpeg.wheel_version
WHEEL_SHA256 = pins().ffmpeg.wheel_sha256
DEVICE_FFMPEG = pins().ffmpeg.device_path
"""Where the ffmpeg role links the build on a device."""
ENV_FFMPEG = "PEOPLE_COUNTER_FFMPEG"


class FfmpegPinError(UserError):
    """The pinned ffmpeg could not be fetched, failed its checksum or is not the pinned version."""


def machine_arch() -> str:
    arch = platform.machine().lower()
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch, arch)
    if arch not in WHEEL_SHA256:
        raise FfmpegPinError(f"no pinned ffmpeg for the architecture {arch!r} (only x86_64, aarch64)")
    return arch


def wheel_name(arch: str) -> str:
    return f"imageio_ffmpeg-{WHEEL_VERSION}-py3-none-manylinux_2_28_{arch}.whl"


def cached_binary(cache: Path | None = None) -> Path:
    return (cache or paths.cache_dir()) / f"ffmpeg-{FFMPEG_VERSION}" / "ffmpeg"


def binary_version(binary: Path) -> str | None:
    """The version word of `ffmpeg -version`, or None when it does not run."""
    try:
        proc = subprocess.run(
            [str(binary), "-hide_banner", "-version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    words = proc.stdout.split()
    # "ffmpeg version n<version> Copyright ..." (git-tag style) -> "<version>"
    if proc.returncode != 0 or len(words) < 3 or words[:2] != ["ffmpeg", "version"]:
        return None
    return words[2].split("-")[0].removeprefix("n")


def _download_wheel(arch: str, directory: Path, wheel: Path | None) -> Path:
    if wheel is not None:
        return wheel
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        f"manylinux_2_28_{arch}",
        "--dest",
        str(directory),
        f"imageio-ffmpeg=={WHEEL_VERSION}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = directory / wheel_name(arch)
    if proc.returncode != 0 or not found.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FfmpegPinError(f"pip download imageio-ffmpeg=={WHEEL_VERSION} failed: {tail[0]}")
    return found


def ensure_ffmpeg(cache: Path | None = None, wheel: Path | None = None) -> Path:
    """Return the cached pinned binary, fetching and verifying it first if needed."""
    target = cached_binary(cache)
    if target.is_file() and binary_version(target) == FFMPEG_VERSION:
        return target
    arch = machine_arch()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FfmpegPinError(f"cannot create {target.parent}: {error.strerror}") from None
    member = f"imageio_ffmpeg/binaries/ffmpeg-linux-{arch}-v{FFMPEG_VERSION}"
    # The wheel stays in a temporary directory next to the target, so the rename below is
    # atomic (same filesystem) and a killed run never leaves a half-written binary behind.
    with tempfile.TemporaryDirectory(prefix="ffmpeg-pin-", dir=target.parent) as tmp:
        tmp_dir = Path(tmp)
        whl = _download_wheel(arch, tmp_dir, wheel)
        actual = sha256_file(whl)
        if actual != WHEEL_SHA256[arch]:
            raise FfmpegPinError(f"{whl.name}: sha256 {actual} is not the pinned {WHEEL_SHA256[arch]}")
        partial = tmp_dir / "ffmpeg"
        try:
            with zipfile.ZipFile(whl) as archive, archive.open(member) as src, partial.open("wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
        except KeyError:
            raise FfmpegPinError(f"{whl.name} has no {member}") from None
        partial.chmod(stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        version = binary_version(partial)
        if version != FFMPEG_VERSION:
            raise FfmpegPinError(f"extracted ffmpeg reports version {version!r}, not {FFMPEG_VERSION}")
        os.replace(partial, target)
    return target


def resolve_ffmpeg(configured: Path | None = None) -> Path:
    """The binary the stream runs: env, then config, then the device path, then the cache."""
    env = os.environ.get(ENV_FFMPEG)
    if env:
        return Path(env)
    if configured is not None:
        return configured
    if DEVICE_FFMPEG.is_file():
        return DEVICE_FFMPEG
    cached = cached_binary()
    if cached.is_file():
        return cached
    raise FfmpegPinError(
        f"no ffmpeg: set {ENV_FFMPEG}, stream.ffmpeg, install {DEVICE_FFMPEG}, "
        "or run `python -m people_counter.prepare.ffmpeg` to fetch the pinned build"
    )


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m people_counter.prepare.ffmpeg",
        description="Fetch the pinned ffmpeg into the cache and print its path.",
    )
    parser.add_argument("--cache", type=Path, help="cache directory (default $PEOPLE_COUNTER_CACHE)")
    parser.add_argument("--wheel", type=Path, help="an imageio-ffmpeg wheel already on disk")
    args = parser.parse_args(argv)
    try:
        print(ensure_ffmpeg(args.cache, args.wheel))
    except UserError as error:
        print(f"ffmpeg_pin: {error}", file=sys.stderr)
        return error.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
