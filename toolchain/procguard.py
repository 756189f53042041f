"""Child processes that do not outlive their parent, and output folders that one process renders at a time.

Two mechanisms end a child when its parent dies, however it dies (``kill -9`` included):

* Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` in the child, so the kernel kills it with its parent;
* everywhere on POSIX: a daemon thread in the child that polls ``os.getppid()`` and exits when the
  child has been re-parented (the parent is gone). External engines, which are not our code, get the
  first mechanism plus end of file on their stdin (the protocol asks them to exit then).

``FolderLock`` is an ``flock`` on a lock file inside the folder, holding the owner's pid, so a rerun
refuses to write into a folder that another live process is still writing to.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import signal
import sys
import threading
import time
from pathlib import Path

from .errors import AvatarToolError

_PR_SET_PDEATHSIG = 1
_libc = None


def _prctl_libc():
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        try:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        except OSError:
            _libc = False
    return _libc or None


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only; returns whether
    it could). Safe to call between fork and exec (``Popen(preexec_fn=...)``): no allocation, no locks.

    The "parent" is the thread that started this process; callers only use it for children started
    from a process's main thread, which lives as long as the process."""
    libc = _prctl_libc()
    return bool(libc) and libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0


def popen_guard():
    """A ``preexec_fn`` for ``subprocess.Popen`` that makes the child die with this process, or None
    where that is not possible or not safe (non-Linux; a non-main thread, whose exit would fire it)."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    _prctl_libc()  # load libc now: the preexec function must not import or allocate much after fork
    return die_with_parent


def start_parent_watchdog(parent_pid: int, interval_s: float = 0.25) -> None:
    """In a child process: exit at once (no cleanup, like SIGKILL) when ``parent_pid`` is no longer our
    parent. Also sets the Linux parent-death signal; the thread is the portable fallback."""
    die_with_parent()
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(interval_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FolderLock:
    """Exclusive hold on an output folder for one run (``flock`` on ``<folder>/.render.lock``).

    The lock file records the holder's pid for the error message. The kernel drops the lock when the
    holder dies, so a stale file never blocks a rerun. ``share_with_workers()`` turns the hold into a
    shared one that worker processes join (``join``), so a folder stays locked while any process of
    the run is alive.
    """

    NAME = ".render.lock"

    def __init__(self, folder: str | Path, what: str = "render"):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self.what = what
        self._fd: int | None = None

    def _busy(self, fd: int) -> AvatarToolError:
        try:
            text = os.pread(fd, 64, 0).decode(errors="replace").strip()
            pid = int(text.split()[0])
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is None:
            who = "another process"
        elif _pid_alive(pid):
            who = f"another process (pid {pid})"
        else:
            who = f"worker processes of a run whose main process (pid {pid}) has exited"
        return AvatarToolError(f"{self.folder} is being written by {who}; wait for it to finish or stop it "
                               f"{'(kill ' + str(pid) + ') ' if pid else ''}before rerunning, or choose another --out folder")

    def acquire(self, shared: bool = False) -> "FolderLock":
        """Take the hold; ``shared``: one of several processes of one run filling the folder together (the
        ranks of a distributed render), which exclude any other run but not each other."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._shared = shared
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return self
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as exc:
                err = self._busy(fd) if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES) else exc
                os.close(fd)
                raise err from None
            # The previous holder may have unlinked the file between our open and our lock: then we
            # hold a lock nobody else can see, so try again on the file that is there now.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        if not shared:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def share_with_workers(self) -> None:
        """Downgrade to a shared hold that ``join`` can share. flock's conversion is not atomic, so if
        another run slipped in meanwhile we find out here and stop."""
        if self._fd is None:
            return
        import fcntl
        try:
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise self._busy(self._fd) from None

    @staticmethod
    def join(path: str | Path) -> int | None:
        """In a worker: take a shared hold on the run's lock file; returns the fd to keep open (the hold
        lasts as long as the process)."""
        try:
            import fcntl
            fd = os.open(path, os.O_RDWR)
        except (ImportError, OSError):
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return fd
        except OSError:
            os.close(fd)
            return None

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            if not getattr(self, "_shared", False):   # a shared holder leaves the file to the others
                self.path.unlink(missing_ok=True)  # keep finished folders clean; see the inode check above
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
