"""The one way llmlab writes a file: the old file stays whole until the new one is complete.

``Path.write_text`` truncates first and writes second, so a failure in between (text that
cannot be encoded, a full disk, Ctrl-C, a crash) leaves the user's file empty or cut. Every
file llmlab saves (result pages, reports, executed notebooks, the coverage table, cache
manifests) goes through :func:`write_text` / :func:`write_bytes` / :func:`replacing` here
instead: the bytes go to a temporary file in the same folder, are flushed to disk (fsync),
and only then take the target's name with ``os.replace`` (atomic on POSIX and Windows).
Text is encoded so that it always can be: a lone surrogate (a served model's broken UTF-16,
a notebook variable) becomes U+FFFD instead of failing the write.

Why by hand: the standard library has no atomic write, and the packages that do
(``atomicwrites``, archived in 2022) are unmaintained; the whole recipe is a dozen lines.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from llmlab.errors import LabError

__all__ = ["FileWriteError", "replacing", "safe_text", "write_bytes", "write_text"]


class FileWriteError(LabError, OSError):
    """A file could not be written; the file that was there (if any) is unchanged.

    A :class:`LabError` (one line for the user) and an :class:`OSError` (callers that treat a
    write as optional keep catching what they caught)."""


def safe_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (valid pairs are joined into
    their character), so that it encodes as UTF-8."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Through UTF-16 with surrogatepass: pairs become one character, lone halves U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see the module doc); returns the path."""
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = safe_text(text).encode(encoding, "replace")
    return write_bytes(path, data)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module doc); returns the path."""
    with replacing(path) as f:
        f.write(data)
    return Path(path)


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` only when the
    block ends without an exception (else ``path`` is untouched and the partial file removed).

    A symbolic link keeps pointing where it did: its target is replaced. A new file gets the
    usual permissions (0666 less the umask); a replaced one keeps its own.
    """
    target = Path(os.path.realpath(path))
    shown = os.fspath(path)
    if target.is_dir():
        raise FileWriteError(f"cannot write {shown}: it is a folder")
    if not target.parent.is_dir():
        raise FileWriteError(f"cannot write {shown}: the folder {target.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as err:
        raise FileWriteError(f"cannot write {shown}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(target))
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, FileWriteError):
            raise FileWriteError(f"cannot write {shown}: {err.strerror or err}") from err
        raise
    _sync_folder(target.parent)


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~_umask()


def _umask() -> int:
    # os.umask() can only be read by setting it, which races other threads creating files;
    # Linux shows it in /proc. Elsewhere assume the common 022.
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def _sync_folder(folder: Path) -> None:
    """Flush the rename itself to disk (POSIX); a no-op where folders cannot be opened."""
    if os.name != "posix":
        return
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
