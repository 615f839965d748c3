"""Reading and writing files with clear failures: an error, or a signal the program turns into an exception (as the
``encodec`` command does), never leaves half of an output (write beside the target, then rename over it), and an
input that cannot be read says why in words."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

MISSING = "does not exist"
#: What an OS error on opening a file means for the user; libsndfile reports most of them as "System error."
_REASONS = {
    errno.ENOENT: MISSING,
    errno.ELOOP: "is a symlink loop (a link that leads back to itself)",
    errno.EACCES: "cannot be read: permission denied",
    errno.EPERM: "cannot be read: operation not permitted",
    errno.ENOTDIR: "does not exist (a part of its path is not a folder)",
    errno.ENAMETOOLONG: "has a name too long for the file system",
}


def why_unreadable(path: Union[str, Path]) -> Optional[str]:
    """Why ``path`` cannot be read as a regular file, in words ("does not exist", "is a symlink loop", "cannot be
    read: permission denied", "is a folder", ...), or None when it can. Asks the OS first, because audio libraries
    turn these causes into vaguer messages. Opens the file only when it is a regular file (a FIFO would block)."""
    path = Path(path)
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return "is a folder, not a file"
        if not stat.S_ISREG(info.st_mode):
            return "is not a regular file (a device, FIFO or socket)"
        with open(path, "rb"):
            pass
    except OSError as exc:
        if exc.errno == errno.ENOENT and path.is_symlink():
            return f"is a broken symlink (to {os.readlink(path)}, which does not exist)"
        return reason_of(exc)
    return None


def reason_of(exc: OSError) -> str:
    """An OS error on a path in words a user acts on, to follow the path: "cannot be read: permission denied"."""
    return _REASONS.get(exc.errno, f"cannot be read ({exc.strerror or exc})")


@contextmanager
def replacing(target: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds, so a failed or interrupted run
    never leaves a half-written file nor destroys the previous one (the block must let exceptions, including
    ``KeyboardInterrupt``, run through). The target's folder is created if missing.

    The new file gets the permissions of the file it replaces, or those of any new file under the process umask
    (``tempfile`` would make it 0600, unreadable to the group and others whatever the umask says).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = _new_file_beside(target)
    try:
        yield part
        try:
            os.chmod(part, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass  # nothing replaced: the mode the umask gave at creation stays
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _new_file_beside(target: Path) -> Path:
    """Create an empty hidden file with a fresh name beside ``target``, mode 0666 less the umask (as ``open`` does)."""
    while True:
        part = target.with_name(f".{target.name}.{secrets.token_hex(4)}{target.suffix}")
        try:
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return part
        except FileExistsError:
            continue  # 2^32 names: another run took this one; draw again


@dataclass(frozen=True)
class SkippedPath:
    """A path under a searched folder that gave no files, and why (a folder that cannot be listed, a symlink loop,
    a dangling link)."""

    path: str
    why: str


def find_files(root: Union[str, Path], suffixes: tuple[str, ...]) -> tuple[list[Path], list[SkippedPath]]:
    """The files under ``root`` whose suffix (any case) is one of ``suffixes``, sorted, following symlinks but never
    round a loop; and every path that could not be looked into, with why, so that a caller can say what it left
    out instead of skipping it silently (``Path.rglob`` would). The root itself must be listable (an OSError
    otherwise)."""
    root = Path(root)
    files: list[Path] = []
    skipped: list[SkippedPath] = []
    seen: set[tuple[int, int]] = set()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            status = folder.stat()
            identity = (status.st_dev, status.st_ino)
            if identity in seen:
                skipped.append(SkippedPath(str(folder), "is a symlink loop (leads to a folder already read)"))
                continue
            seen.add(identity)
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as exc:
            if folder == root:
                raise
            skipped.append(SkippedPath(str(folder), reason_of(exc)))
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                target = path.stat()  # follows symlinks: a loop or a dangling link raises here
            except OSError as exc:
                skipped.append(SkippedPath(str(path), reason_of(exc)))
                continue
            if stat.S_ISDIR(target.st_mode):
                pending.append(path)
            elif path.suffix.lower() in suffixes:
                files.append(path)
    return sorted(files), skipped


def listed_paths(manifest: Union[str, Path], names: Sequence[str]) -> list[Path]:
    """The files a manifest lists, by the one rule of every command that reads manifests (``encodec-bench --data``,
    ``encodec-tokenize``): an absolute path is taken as it is, a relative one is read from the manifest's folder
    (``..`` included), and a file listed twice is an error (``ValueError`` naming it)."""
    folder = Path(manifest).absolute().parent
    paths = [Path(os.path.normpath(folder / name)) for name in names]
    seen: set[Path] = set()
    repeated = [str(p) for p in paths if p in seen or seen.add(p)]
    if repeated:
        raise ValueError(f"{manifest}: lists these files more than once: {', '.join(sorted(set(repeated))[:5])}")
    return paths
