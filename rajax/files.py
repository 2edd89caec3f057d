"""Writing a file so that a reader, or a run killed halfway, never sees half of it."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """``write(binary file)`` into a temporary file beside ``path``, synced, then renamed over it:
    a reader sees the old file or the whole new one. Missing folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
