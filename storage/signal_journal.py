"""The exit-signal journal: every exit signal is on disk before its message goes out, in a write of its own.

Storing a signal in the database means queuing behind whatever the database is doing: the group commit,
a batch of live PnL numbers, another instance's transaction. An exit signal must not wait for any of
that. So the signal is first appended to this journal (one `write(2)` of one line to a file only exit
signals use, from the event loop's own thread: nothing else can hold it up), its message is sent, and
the database row is written meanwhile. Readers of the signal wait for that row (`ExitSignals`), and a
crash before the row lands loses nothing: the next start writes what the journal holds (`recover`).

Each process holds one journal file, `<base>.<n>`, under an exclusive lock; several instances on one
machine each take their own. A file no live process holds is a crashed run's, replayed at start.
Once every row written through the journal is in the database, the file is emptied.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Journals of crashed instances looked at (and own-journal slots tried) at start: far more than instances.
MAX_SLOTS = 64


class SignalJournal:
    """An append-only file of exit-signal rows (JSON lines), held under an exclusive lock."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    @classmethod
    def open(cls, base: Path) -> tuple[SignalJournal, list[dict[str, Any]]]:
        """Take a journal slot beside `base`; returns it with the rows left in every journal no live process
        holds (its own slot's included), which the caller writes to the database before clearing the journal."""
        base.parent.mkdir(parents=True, exist_ok=True)
        own: SignalJournal | None = None
        left: list[dict[str, Any]] = []
        for slot in range(MAX_SLOTS):
            path = Path(f"{base}.{slot}")
            if not path.exists() and own is not None:
                continue
            fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live instance's journal
                continue
            if not _still_named(fd, path):
                os.close(fd)  # another instance starting now adopted and removed it meanwhile
                continue
            os.fchmod(fd, 0o600)
            rows = _read(fd, path)
            left.extend(rows)
            if own is None:
                own = cls(fd, path)
                continue
            # a crashed instance's rows now travel in ours until they are written
            for row in rows:
                own.append(row)
            with contextlib.suppress(OSError):
                path.unlink()  # while still locked: nobody can take it as their own in between
            os.close(fd)
        if own is None:
            raise RuntimeError(f"no free exit-signal journal slot beside {base} ({MAX_SLOTS} taken)")
        return own, left

    def append(self, row: dict[str, Any]) -> None:
        """One line, one write: on disk (in the page cache) when this returns, whatever the database is doing."""
        if self._fd is None:
            raise OSError("the exit-signal journal is closed")
        line = memoryview((json.dumps(row, separators=(",", ":")) + "\n").encode())
        while line:  # a short write (a full disk) is finished, or raises: never half a line and the next glued on
            line = line[os.write(self._fd, line):]

    def clear(self) -> None:
        """Every row written through the journal is in the database: start the file afresh."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _read(fd: int, path: Path) -> list[dict[str, Any]]:
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0) if size else b""
    rows = []
    for number, line in enumerate(data.splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            # the last line of a crash can be cut short; a row is complete or it is not there at all
            log.warning("%s line %d is not a complete row; skipped", path, number)
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
