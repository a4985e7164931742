"""Writing files atomically: a temporary file in the same folder, then a rename, so a reader
never sees half a file and an interrupted run leaves the previous file in place. The file gets
the permissions a plain ``open(..., "w")`` would give it (0666 less the umask)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call ``write`` with a temporary path next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda p: Path(p).write_text(text, encoding="utf-8"))


def atomic_copy(src: Path, dest: Path) -> None:
    atomic_write(dest, lambda p: shutil.copyfile(src, p))
