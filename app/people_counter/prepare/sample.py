"""The sample video, vtest.avi, taken from Debian's opencv-doc package and cached.

The .deb is 96 MB, the video 8 MB: the package's data archive is streamed
through `dpkg-deb --fsys-tarfile` and only the one member is written to disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from people_counter import paths
from people_counter.checksums import sha256_file
from people_counter.errors import UserError
from people_counter.pins import pins

log = logging.getLogger(__name__)

SAMPLE_PACKAGE = pins().sample.package
SAMPLE_MEMBER = pins().sample.member
SAMPLE_SHA256 = pins().sample.sha256
_CHUNK = 1 << 20


class SampleError(UserError):
    """The sample video could not be obtained or failed its checksum."""


def fetch_sample(deb: Path | None = None) -> Path:
    """Return the cached, hash-checked vtest.avi; fetch it from opencv-doc if needed."""
    target = paths.sample_video_path()
    if target.is_file():
        if sha256_file(target) == SAMPLE_SHA256:
            return target
        # A truncated or altered cache is never trusted: fetch it again.
        log.warning("%s: sha256 mismatch, fetching the sample again", target)
    _make_cache_dir(target.parent)
    if deb is not None:
        _extract_sample(deb, target)
    else:
        # The .deb lives in a temporary directory so it never stays in the cache.
        with tempfile.TemporaryDirectory(prefix="opencv-doc-", dir=target.parent) as tmp:
            _extract_sample(_download_deb(Path(tmp)), target)
    return target


def _make_cache_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SampleError(f"cannot create the cache directory {directory}: {error.strerror}") from None


def _download_deb(directory: Path) -> Path:
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise SampleError(f"apt-get not found: download the {SAMPLE_PACKAGE} .deb elsewhere and pass it with --deb")
    # apt's _apt sandbox user cannot write to a private temp dir; as root it warns and
    # downloads anyway, so the warning is kept out of the user's way.
    proc = subprocess.run(
        [apt_get, "download", "-q", SAMPLE_PACKAGE],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )
    debs = sorted(directory.glob(f"{SAMPLE_PACKAGE}_*.deb"))
    if proc.returncode != 0 or not debs:
        detail = _last_line(proc.stderr) or f"exit status {proc.returncode}"
        raise SampleError(
            f"cannot download {SAMPLE_PACKAGE} with apt-get ({detail}); run `apt-get update`, or pass a .deb with --deb"
        )
    return debs[-1]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("W:")]
    return lines[-1] if lines else ""


def _extract_sample(deb: Path, target: Path) -> None:
    if not deb.is_file():
        raise SampleError(f"{deb}: no such .deb file")
    if shutil.which("dpkg-deb") is None:
        raise SampleError("dpkg-deb not found: it is needed to unpack the sample from the .deb")
    with _fsys_tar(deb) as stream, tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            if member.name.lstrip("./") == SAMPLE_MEMBER and member.isfile():
                source = tar.extractfile(member)
                if source is not None:
                    _write_checked(source, target)
                    return
    raise SampleError(f"{deb}: {SAMPLE_MEMBER} not found in the package")


@contextmanager
def _fsys_tar(deb: Path) -> Iterator[IO[bytes]]:
    """The .deb's data archive as a stream, whatever its compression (dpkg-deb knows them all)."""
    # Its own session, so that the decompressor dpkg-deb forks can be stopped with it.
    proc = subprocess.Popen(
        ["dpkg-deb", "--fsys-tarfile", str(deb)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None
    try:
        yield proc.stdout
    except tarfile.TarError as error:
        detail = _last_line(_stop(proc))
        raise SampleError(f"{deb}: not a readable .deb ({detail or error})") from None
    finally:
        # Stop early once the member is found: the rest of the archive is not needed.
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> str:
    """End dpkg-deb and its children (idempotent); return what it said on stderr."""
    assert proc.stdout is not None and proc.stderr is not None
    if proc.stderr.closed:
        return ""
    proc.stdout.close()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    said = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    return said


def _write_checked(source: IO[bytes], target: Path) -> None:
    """Write to a temp file beside the target, check the hash, then rename: never a half file."""
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=".vtest-", suffix=".tmp", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in iter(lambda: source.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != SAMPLE_SHA256:
            raise SampleError(f"vtest.avi sha256 mismatch: got {digest.hexdigest()}, expected {SAMPLE_SHA256}")
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
