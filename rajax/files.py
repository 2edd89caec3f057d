"""Writing a file so that a reader, or a run killed halfway, never sees half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process's umask (read by setting it and putting it back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode ``open()`` or ``mkdir()`` would give a new file or folder under the umask.

    ``tempfile.mkstemp`` and ``mkdtemp`` make private files (0600) and folders (0700) whatever the
    umask; what rajax writes through them is renamed into place, so it gets this mode instead and
    others can read a shared feature store or weights folder as the umask allows.
    """
    return (0o777 if directory else 0o666) & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """``write(binary file)`` into a temporary file beside ``path``, synced, then renamed over it:
    a reader sees the old file or the whole new one. Missing folders are created; the file gets the
    mode the umask gives new files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, default_mode())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as UTF-8, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def atomic_savefig(figure, path: str | os.PathLike, dpi: int) -> Path:
    """A matplotlib figure saved atomically, in the format of the file's suffix."""
    path = Path(path)
    file_format = path.suffix.lstrip(".") or None
    return atomic_write(path, lambda handle: figure.savefig(handle, dpi=dpi, format=file_format))
