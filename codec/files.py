"""Reading and writing files with clear failures: an error, or a signal the program turns into an exception (as the
``encodec`` command does), never leaves half of an output (write beside the target, then rename over it), and an
input that cannot be read says why in words."""

from __future__ import annotations

import contextlib
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


#: What a failed write means for the user, by errno.
_WRITE_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EFBIG: "file too large for the file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class WriteError(OSError):
    """An output that could not be written: the message names the output (never its hidden temporary file) and why
    in words, so that a command prints it as its one line."""

    def __init__(self, target: Union[str, Path], reason: str, code: Optional[int] = None) -> None:
        super().__init__(code, reason)
        self.target = Path(target)
        self.reason = reason

    def __str__(self) -> str:
        return f"cannot write {self.target}: {self.reason}"


def write_failure(target: Union[str, Path], exc: BaseException) -> Optional[WriteError]:
    """The WriteError that ``exc``, raised while writing ``target`` (or its temporary file), stands for, or None
    when it is not a failure to write: an OSError of a writing kind (a full disk, no permission, a read-only file
    system), or libsndfile's "System error." (its write errors carry no errno; the disk is asked whether it is
    full, and the folder whether it may be written)."""
    target = Path(target)
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _WRITE_REASONS:
        return WriteError(target, _WRITE_REASONS[exc.errno], exc.errno)
    if type(exc).__name__ == "LibsndfileError":
        try:
            full = os.statvfs(target.parent).f_bavail == 0
        except OSError:
            full = False
        if full:
            return WriteError(target, _WRITE_REASONS[errno.ENOSPC], errno.ENOSPC)
        if not os.access(target.parent, os.W_OK):
            return WriteError(target, _WRITE_REASONS[errno.EACCES], errno.EACCES)
        return WriteError(target, f"libsndfile: {getattr(exc, 'error_string', exc)}")
    return None


@contextmanager
def replacing(target: Union[str, Path]) -> Iterator[Path]:
    """A temporary path beside ``target`` that replaces it only if the block succeeds, so a failed or interrupted run
    never leaves a half-written file nor destroys the previous one (the block must let exceptions, including
    ``KeyboardInterrupt``, run through). The target's folder is created if missing.

    The new file gets the permissions of the file it replaces, or those of any new file under the process umask
    (``tempfile`` would make it 0600, unreadable to the group and others whatever the umask says). A failure to write
    (``write_failure``) comes out as a WriteError naming ``target``. The temporary name carries the process id, so
    that one left by a process killed with SIGKILL, which could not remove it, is removed by the next run that writes
    the same target on this machine (``_remove_stale_parts``).
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_parts(target)
        part = _new_file_beside(target)
    except OSError as exc:
        raise (write_failure(target, exc) or exc) from exc
    try:
        yield part
        try:
            os.chmod(part, stat.S_IMODE(os.stat(target).st_mode))
        except FileNotFoundError:
            pass  # nothing replaced: the mode the umask gave at creation stays
        os.replace(part, target)
    except Exception as exc:
        failure = write_failure(target, exc)
        if failure is None or failure is exc:
            raise
        raise failure from exc
    finally:
        part.unlink(missing_ok=True)


def _part_prefix(target: Path) -> str:
    return f".{target.name}."


def _new_file_beside(target: Path) -> Path:
    """Create an empty hidden file with a fresh name beside ``target``, ``.NAME.PID-RANDOM.SUFFIX``, mode 0666 less
    the umask (as ``open`` does)."""
    while True:
        part = target.with_name(f"{_part_prefix(target)}{os.getpid()}-{secrets.token_hex(4)}{target.suffix}")
        try:
            os.close(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return part
        except FileExistsError:
            continue  # 2^32 names: another run took this one; draw again


def _remove_stale_parts(target: Path) -> None:
    """Remove the temporary files of ``target`` (and the files named after them, such as a decoder's float copy)
    whose process is gone: ``kill -9`` or a power cut leaves them, and nothing else ever would."""
    prefix = _part_prefix(target)
    try:
        entries = [entry.name for entry in os.scandir(target.parent) if entry.name.startswith(prefix)]
    except OSError:
        return
    for name in entries:
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                (target.parent / name).unlink()


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
                skipped.append(SkippedPath(str(path), why_unreadable(path) or reason_of(exc)))
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
