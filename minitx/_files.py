"""Atomic file writes: nothing the user made is ever left half-written.

The data goes to a temporary file in the target's folder, which is flushed, synced and then
renamed over the target. A rename within one file system is atomic, so readers see either the
old file or the complete new one, and a failed write leaves the old file untouched.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _default_mode() -> int:
    """Return the permission bits a plain ``open(path, "w")`` would give under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path, write) -> Path:
    """Call ``write(file_object)`` on a temporary file beside ``path``, then rename it to ``path``.

    The file gets the usual permissions for a new file, not the 0600 of ``mkstemp``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"Cannot write {str(path)!r}: it is a directory. Choose a file path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
