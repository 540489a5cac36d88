"""Which part of a spool directory a writer process owns, so that processes sharing one never collide.

Every writer (every worker of ``gunicorn --workers N``, all on the same ``$LLM_LEDGER_HOME/spool``) journals
in a subdirectory ``writer-<unique>`` of the spool directory that it holds for its lifetime with an
exclusive ``flock`` on the ``lock`` file in it. The kernel releases that lock when the process ends, even
SIGKILLed, so a subdirectory whose lock can be taken is an orphan: the process that wrote it is gone,
and what it left is a previous run's to replay. A subdirectory whose lock is held is live: it is never
read, replayed or removed by anyone else.

At its start a writer adopts one orphan (replays it and journals there, numbering on) or, when there is
none, makes a new subdirectory: under a name no other writer looks at (``.new-<unique>``), locked, then
renamed into place, so that no other writer ever sees it unlocked. It also takes every other orphan it
can lock, to replay and remove, so that nothing waits for the same number of workers to come back. The
segments of the flat layout of earlier versions (directly in the spool directory) are replayed once,
under a lock of their own (``legacy.lock``).

A lock is taken on an open file: if the file was unlinked between its opening and the lock (its owner
removing the subdirectory), the lock guards nothing. So a lock counts only if the path still names the
file that was locked.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("llm_ledger.store")

LOCK_FILE = "lock"
LEGACY_LOCK_FILE = "legacy.lock"
SUBDIRECTORY_PREFIX = "writer-"
_NEW_PREFIX = ".new-"
_REMOVABLE = {LOCK_FILE, "spool.state"}
"""What a replayed orphan may hold and still be removed (anything else, a ``.torn`` file, is evidence)."""


@dataclass(slots=True)
class Lease:
    """A part of the spool directory held by this process (its lock file open and locked)."""

    directory: Path
    lock_path: Path
    _fd: int | None
    _guard: threading.Lock = field(default_factory=threading.Lock)  # release (close) and removal (storer)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Give the part back (the next writer to start may adopt or replay it)."""
        with self._guard:
            self._release()

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        """Remove a replayed subdirectory, unless it keeps evidence (set-aside damaged bytes), then release
        it. The lock file goes last but one and the directory only if empty: a writer that opened the lock
        file before it was unlinked finds its lock guards a file no longer there and leaves it alone."""
        with self._guard:
            if self._fd is None:
                return  # released already (the writer closed): it may be someone else's by now
            self._remove()

    def _remove(self) -> None:
        try:
            left = {path.name for path in self.directory.iterdir()}
            if left - _REMOVABLE:
                log.warning(
                    "llm-ledger: the replayed spool %s is kept: it holds set-aside evidence (%s)",
                    self.directory,
                    ", ".join(sorted(left - _REMOVABLE)),
                )
                return
            (self.directory / "spool.state").unlink(missing_ok=True)
            self.lock_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # a writer recreated the lock file meanwhile: the directory is its
                self.directory.rmdir()
        finally:
            self._release()


def take(lock_path: Path) -> Lease | None:
    """The lease of ``lock_path``'s directory if no process holds it (None if one does, or it vanished)."""
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except (FileNotFoundError, NotADirectoryError):
        return None  # the directory was removed meanwhile
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    try:
        still = os.stat(lock_path)
    except FileNotFoundError:
        still = None
    mine = os.fstat(fd)
    if still is None or (still.st_dev, still.st_ino) != (mine.st_dev, mine.st_ino):
        os.close(fd)  # the file locked was unlinked by its owner before the lock: it guards nothing
        return None
    return Lease(lock_path.parent, lock_path, fd)


@dataclass(slots=True)
class Claim:
    """What a writer takes at its start: its own subdirectory (adopted or new), the other orphans to
    replay and remove, and the flat layout's lease if it has segments to replay."""

    own: Lease
    adopted: bool
    orphans: list[Lease]
    legacy: Lease | None


def claim(root: Path) -> Claim:
    """Take a subdirectory of the spool directory ``root`` for this process, and every orphan in it."""
    root.mkdir(parents=True, exist_ok=True)
    orphans: list[Lease] = []
    for path in sorted(root.iterdir()):
        # (A ``.new-`` directory left by a writer killed before naming it holds an empty lock file only.)
        if path.name.startswith(SUBDIRECTORY_PREFIX) and path.is_dir():
            lease = take(path / LOCK_FILE)
            if lease is not None:
                orphans.append(lease)
    adopted = bool(orphans)
    own = orphans.pop(0) if orphans else _new(root)
    return Claim(own, adopted, orphans, _legacy(root))


def _new(root: Path) -> Lease:
    name = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    hidden = root / f"{_NEW_PREFIX}{name}"
    hidden.mkdir(mode=0o700)
    lease = take(hidden / LOCK_FILE)
    if lease is None:  # pragma: no cover - no other writer opens a .new- directory's lock
        raise OSError(f"could not lock the new spool subdirectory {hidden}")
    final = root / f"{SUBDIRECTORY_PREFIX}{name}"
    hidden.rename(final)
    _fsync_directory(root)
    return Lease(final, final / LOCK_FILE, lease._fd)  # the same locked file, under its final name


def _legacy(root: Path) -> Lease | None:
    """The flat layout's lease, if segments or a state file of an earlier version are in ``root``."""
    if not any(root.glob("spool-*.log")) and not (root / "spool.state").exists():
        return None
    lease = take(root / LEGACY_LOCK_FILE)
    if lease is None:
        return None  # another writer is replaying them
    if not any(root.glob("spool-*.log")) and not (root / "spool.state").exists():
        lease.release()  # it replayed them before we locked
        return None
    return lease


def retire_legacy(lease: Lease) -> None:
    """The flat layout's segments are replayed: its state file goes (they are not replayed again)."""
    try:
        (lease.directory / "spool.state").unlink(missing_ok=True)
    finally:
        lease.release()


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
