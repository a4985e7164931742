"""Writing files atomically: a temporary file in the same folder, then a rename, so a reader
never sees half a file and an interrupted run leaves the previous file in place. The file gets
the permissions a plain ``open(..., "w")`` would give it (0666 less the umask). A run's folder
of outputs is written the same way, whole (:func:`atomic_folder`)."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from llmsim.errors import ConfigError


def _file_mode() -> int:
    return 0o666 & ~_umask()


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


_PARTIAL = ".partial-"
_OLD = ".old-"


def check_writable_folder(path: Path, field: str = "--out") -> None:
    """Refuse, before any work, an output folder that cannot be created or written: a path
    that is a file, one below a file, or one in a folder without write permission."""
    if path.exists() and not path.is_dir():
        raise ConfigError(
            "is a file, not a folder; give a folder for the outputs", source=str(path), field=field
        )
    parent = _existing_parent(path, field)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot write in '{parent}' (permission denied)", source=str(path), field=field
        )


def check_folder(path: Path, owned: Iterable[str], field: str = "--out") -> None:
    """Refuse an output folder that a run cannot replace whole: one that cannot be written
    (:func:`check_writable_folder`), or a folder holding files other than ``owned`` (a
    previous run's), which the swap would drop."""
    check_writable_folder(path, field)
    if path.is_dir():
        try:
            foreign = sorted(p.name for p in path.iterdir() if p.name not in set(owned))
        except OSError as exc:
            raise ConfigError(
                f"cannot read the folder ({exc.strerror})", source=str(path), field=field
            ) from None
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(
                f"holds files a run does not write ({shown}); the run replaces the whole "
                "folder, so give a new or empty folder, or a previous run's",
                source=str(path),
                field=field,
            )


def _existing_parent(path: Path, field: str) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"'{p}' is a file, not a folder", source=str(path), field=field)
    return p


def atomic_folder(path: Path, write: Callable[[Path], object], owned: Iterable[str]) -> None:
    """Fill a new folder with ``write`` and swap it in place of ``path`` in one rename, so a
    reader sees the previous outputs or the new ones, never a mix; an interrupted write leaves
    ``path`` as it was. Hidden partial folders of writers that died are removed first."""
    owned = set(owned)
    check_folder(path, owned)
    parent = path.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the folder ({exc.strerror})", source=str(path), field="--out"
        ) from None
    _remove_stale(parent, path.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{_PARTIAL}{os.getpid()}-", dir=parent))
    old: Path | None = None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        write(tmp)
        if path.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}{_OLD}{os.getpid()}-", dir=parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not path.exists() and (old / path.name).exists():
            os.replace(old / path.name, path)  # put the previous outputs back
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_stale(parent: Path, name: str) -> None:
    """Remove ``.<name>.partial-<pid>-*`` and ``.<name>.old-<pid>-*`` folders whose writer
    process is gone (killed mid-save)."""
    for kind in (_PARTIAL, _OLD):
        for p in parent.glob(f".{glob.escape(name)}{kind}*"):
            pid = p.name[len(name) + 1 + len(kind) :].split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)) and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
