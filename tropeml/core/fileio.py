"""Durable file writes: every file tropeml writes goes through here.

- :func:`atomic_write_bytes` / :func:`atomic_write_text`: temporary file in the same folder,
  fsync, rename; an interrupted write leaves the old file intact.
- :func:`append_line`: one line appended and fsynced before returning, so a confirmed
  record survives a kill; a torn last line from an earlier crash is completed first.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def fsync_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (truncating it) and fsync it before returning."""
    with path.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    """Fsync a folder so a rename inside it is durable (a no-op where unsupported)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(
    path: str | Path, data: bytes, mode: int | None = None, suffix: str = ""
) -> None:
    """Write a file atomically: temporary file in the same folder, fsync, rename.

    Args:
        path: The file to write or replace.
        data: Its new bytes.
        mode: Permission bits to give it (default: the temporary file's, 0600).
        suffix: The temporary file's suffix (``.NAME.<random><suffix>``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        fsync_write(Path(tmp), data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write UTF-8 text atomically (see :func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) and fsync it before returning.

    If the file ends without a newline (a write torn by a crash), a newline is written
    first, so the torn fragment stays a line of its own and the new record stays whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "\n" in line:
        raise ValueError("append_line takes a single line")
    with path.open("ab+") as fh:
        fh.seek(0, os.SEEK_END)
        prefix = b""
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                prefix = b"\n"
        fh.write(prefix + line.encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())
