"""Files published all or nothing: written beside their destination, then renamed onto it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dubber.errors import OutputError


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it (and put it back)
    os.umask(mask)
    return mask


def temp_beside(path: Path, suffix: str = "") -> Path:
    """A new, empty, hidden file in ``path``'s folder, for writing what will be renamed onto
    ``path`` (the same filesystem, so the rename is atomic).

    It has the permissions any new file there gets (0666 less the umask), not the owner-only
    0600 of :func:`tempfile.mkstemp`, so the published file is as readable as one written in
    place.

    Raises:
        OSError: the folder cannot be written.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return Path(name)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path once symlinks are resolved, or
    (both existing) the same inode, a hard link."""
    if Path(a).resolve() == Path(b).resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def file_key(path: str | os.PathLike) -> tuple:
    """A key equal for two paths exactly when :func:`same_file` says they name one file
    (for comparing many paths at once): the inode of an existing file, else the resolved
    path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", str(Path(path).resolve()))
    return ("inode", st.st_dev, st.st_ino)


def check_replaceable(path: Path, force: bool) -> None:
    """Refuse an output path that is a folder, or an existing file without ``force``.
    Raises OutputError."""
    if path.is_dir():
        raise OutputError(f"{path} is a folder: give a file name with -o")
    if path.exists() and not force:
        raise OutputError(f"{path} already exists: add --force to replace it")
