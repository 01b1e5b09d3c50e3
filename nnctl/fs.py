"""Files nnctl writes: atomically, with the user's umask, signals held back meanwhile, one run per checkpoint.

- ``atomic_write(path, write)``: ``write(tmp)`` fills ``.<name>.<pid>.tmp`` beside ``path``, which gets the
  mode the umask gives a new file (0644 under umask 022), is fsynced and renamed over ``path``. SIGINT,
  SIGTERM and SIGUSR1 arriving meanwhile are delivered after the rename, so an interrupt never loses
  a finished write nor leaves half of one. On any failure (a full disk included) the temp is removed,
  the old file is untouched and the error is one ``OutputError`` naming the path.
- Temps left by a killed process (``.<name>.<pid>.tmp`` whose pid is gone) are removed by the next write.
- ``run_lock(path)``: an advisory ``fcntl.flock`` on ``.<name>.lock`` beside a checkpoint for a whole
  training run (the lock cannot sit on the checkpoint itself: each write renames a new file over it).
- ``check_output_file`` / ``check_output_dir``: type and writability of an output, tested before the work.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import signal
import threading

from nnctl.errors import OutputError

DEFERRED_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, n))
_deferring = False


@contextlib.contextmanager
def deferred_signals():
    """Hold SIGINT, SIGTERM and SIGUSR1 until the block ends, then deliver each one that arrived (once)."""
    global _deferring
    if _deferring or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {}
    _deferring = True
    try:
        for sig in DEFERRED_SIGNALS:
            old[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        _deferring = False
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)  # the previous handler runs now: KeyboardInterrupt, a flag, or exit


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0o644 under umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def temp_path(path: pathlib.Path) -> pathlib.Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(path: pathlib.Path) -> list[pathlib.Path]:
    """Delete ``.<name>.<pid>.tmp`` files beside ``path`` whose process is gone; returns what was removed."""
    prefix, removed = f".{path.name}.", list[pathlib.Path]()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        pid = entry.name[len(prefix) : -4] if entry.name.startswith(prefix) and entry.name.endswith(".tmp") else ""
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(pathlib.Path(entry.path))
    return removed


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC or "No space left" in str(exc) or "errno = 28" in str(exc):
        return "no space left on device"
    return exc.strerror or str(exc).split("\n")[0][:120]


def _make_parent(path: pathlib.Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot create the folder ({_reason(exc)})") from None


def atomic_write(path: str | pathlib.Path, write) -> None:
    """Call ``write(tmp_path)``, then give the temp the umask's mode, fsync it and rename it over ``path``."""
    path = pathlib.Path(path)
    _make_parent(path)
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; expected a file path")
    remove_stale_temps(path)
    tmp = temp_path(path)
    existed = path.exists()
    with deferred_signals():
        try:
            tmp.unlink(missing_ok=True)
            write(str(tmp))
            os.chmod(tmp, new_file_mode())
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                kept = "the previous file is unchanged" if existed else "nothing was written"
                raise OutputError(f"{path}: cannot write ({_reason(exc)}); {kept}") from None
            raise
        with contextlib.suppress(OSError):  # make the rename itself durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)


@contextlib.contextmanager
def run_lock(path: str | pathlib.Path, what: str = "checkpoint"):
    """Hold an exclusive advisory lock for ``path`` while the block runs; a second holder is refused at once."""
    import fcntl

    path = pathlib.Path(path)
    _make_parent(path)
    lock = path.with_name(f".{path.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create its lock file {lock.name} ({_reason(exc)})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 20, 0).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise OutputError(
                f"{path}: another nnctl run{who} is writing this {what}; wait for it to finish or choose another --out"
            ) from None
        try:  # the holder before us may have removed the file between our open and our lock: retry
            if os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        with contextlib.suppress(OSError):  # the pid is only for the other run's message (a full disk is fine)
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)  # while still locked, so no one can lock the old file after us
        os.close(fd)


def _writable_folder(folder: pathlib.Path, for_what: str) -> None:
    """The nearest existing ancestor of ``folder`` must be a folder in which a file can be created."""
    probe_dir = folder
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise OutputError(f"{probe_dir}: is not a folder, so {for_what} cannot be created")
    probe = probe_dir / f".nnctl-probe.{os.getpid()}.tmp"
    try:  # a real create: os.access says yes to root on read-only or immutable folders
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(f"{probe_dir}: cannot create {for_what} there ({_reason(exc)})") from None


def check_output_file(path: str | pathlib.Path, what: str) -> None:
    """``path`` can be written as a file: not a folder or device, and its folder accepts new files."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise OutputError(f"{path}: {what} path is a folder; expected a file path")
    if path.exists() and not path.is_file():
        raise OutputError(f"{path}: {what} path is not a regular file")
    _writable_folder(path.parent, f"the {what}")


def check_output_dir(path: str | pathlib.Path, what: str) -> None:
    """``path`` is (or can be made) a folder that accepts new files."""
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"{path}: exists as a file; the {what} must be a folder")
    _writable_folder(path, f"the {what}")
