"""A network camera's user and password, kept out of the config: read from their own file (on a
device, a systemd credential) and put into the stream's URL only when the stream is opened."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from people_counter.errors import ConfigError

KEY = "input.credentials_file"


@dataclass(frozen=True, slots=True)
class CameraCredentials:
    user: str
    password: str

    def __repr__(self) -> str:  # never the password, not even in a traceback's locals
        return f"CameraCredentials(user={self.user!r}, password=***)"


def read_credentials(path: Path) -> CameraCredentials:
    """The file's first line, `user:password` (the password may hold any character but a newline)."""
    try:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
    except FileNotFoundError:
        raise ConfigError(f"{KEY}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"{KEY}: {path}: {reason}") from None
    user, sep, password = (first[0] if first else "").partition(":")
    if not sep or not user:
        raise ConfigError(f"{KEY}: {path}: the first line must be user:password")
    return CameraCredentials(user, password)


def authority_end(url: str) -> int:
    """Where the URL's authority (user info, host, port) ends: its first '/', '?' or '#' after '://'."""
    start = url.index("://") + 3
    ends = [i for i in (url.find(c, start) for c in "/?#") if i >= 0]
    return min(ends, default=len(url))


def has_user_info(url: str) -> bool:
    return "@" in url[url.index("://") + 3 : authority_end(url)]


def with_credentials(url: str, credentials: CameraCredentials, key: str = "input.source") -> str:
    """The URL (of config `key`) with the user and password percent-encoded in, whatever characters they hold."""
    if has_user_info(url):
        raise ConfigError(f"{key}: give the camera's user and password in {KEY} only, not in the URL")
    scheme_end = url.index("://") + 3
    user_info = f"{quote(credentials.user, safe='')}:{quote(credentials.password, safe='')}@"
    return url[:scheme_end] + user_info + url[scheme_end:]


def redacted(url: str) -> str:
    """The URL with everything up to its last '@' (before any query) replaced by ***, for logs and
    the published state: a password typed into the URL unencoded, '/' and '@' included, is hidden."""
    if "://" not in url:
        return url
    start = url.index("://") + 3
    rest = url[start:]
    at = rest.split("?", 1)[0].split("#", 1)[0].rfind("@")
    return url if at < 0 else f"{url[:start]}***@{rest[at + 1 :]}"
